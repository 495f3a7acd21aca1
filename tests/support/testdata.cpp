#include "support/testdata.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace hearth::test {

std::string testdata_dir() {
    if (const char* env = std::getenv("HEARTH_TESTDATA"); env && *env) {
        if (std::filesystem::is_directory(env)) return std::filesystem::absolute(env).string();
        return {};
    }
    std::filesystem::path def = HEARTH_DEFAULT_TESTDATA;
    if (std::filesystem::is_directory(def)) return std::filesystem::canonical(def).string();
    return {};
}

std::string testdata_path(const std::string& rel) {
    std::string root = testdata_dir();
    if (root.empty()) {
        ADD_FAILURE() << "shared test data not found: set HEARTH_TESTDATA or place it at "
                      << HEARTH_DEFAULT_TESTDATA;
        return rel;
    }
    return root + "/" + rel;
}

bool read_file(const std::string& path, std::vector<uint8_t>& out) {
    std::ifstream f(path, std::ios::binary);
    if (!f) return false;
    out.assign(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
    return true;
}

bool read_gzip_file(const std::string& path, std::vector<uint8_t>& out) {
    gzFile gz = gzopen(path.c_str(), "rb");
    if (!gz) return false;
    out.clear();
    std::vector<uint8_t> buf(1 << 20);
    for (;;) {
        int n = gzread(gz, buf.data(), (unsigned)buf.size());
        if (n < 0) { gzclose(gz); return false; }
        if (n == 0) break;
        out.insert(out.end(), buf.begin(), buf.begin() + n);
    }
    gzclose(gz);
    return true;
}

std::vector<float> read_f32_file(const std::string& path) {
    std::vector<uint8_t> bytes;
    if (!read_file(path, bytes)) return {};
    std::vector<float> v(bytes.size() / 4);
    std::memcpy(v.data(), bytes.data(), v.size() * 4);
    return v;
}

std::string read_text_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

}  // namespace hearth::test
