#include "base/sysinfo.h"

#include <cmath>
#include <fstream>
#include <sstream>

namespace hearth {

Result<int64_t> parse_mem_available(std::string_view meminfo) {
    std::istringstream in{std::string(meminfo)};
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind("MemAvailable:", 0) != 0) continue;
        std::istringstream fields(line.substr(13));
        int64_t kib = -1;
        std::string unit;
        fields >> kib >> unit;
        if (kib < 0 || unit != "kB")
            return error(StatusCode::corrupt, "meminfo: cannot read the MemAvailable line \"" + line + "\"");
        return kib * 1024;
    }
    return error(StatusCode::not_found, "meminfo: no MemAvailable line");
}

Result<int64_t> read_mem_available(const std::string& path) {
    std::ifstream f(path);
    if (!f) return error(StatusCode::io_error, "cannot read " + path);
    std::stringstream ss;
    ss << f.rdbuf();
    Result<int64_t> r = parse_mem_available(ss.str());
    if (!r.ok()) return r.status().with_context(path);
    return r;
}

std::string format_bytes(int64_t bytes) {
    static const char* kUnits[] = {"KiB", "MiB", "GiB", "TiB"};
    if (bytes < 1024 && bytes > -1024) return std::to_string(bytes) + " B";
    double v = static_cast<double>(bytes);
    int u = -1;
    do {
        v /= 1024;
        ++u;
    } while (std::fabs(v) >= 1024 && u < 3);
    return strformat("%.2f %s", v, kUnits[u]);
}

}  // namespace hearth
