// Test helper: finds the shared reference data ($HEARTH_TESTDATA, else ../shared/testdata next
// to the repository) and reads its files. A missing directory fails the test with a message
// saying where it looked, rather than silently skipping.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace hearth::test {

// Absolute path of the testdata root; empty when it cannot be found.
std::string testdata_dir();
// testdata_dir() + "/" + rel. Fails the current test (ADD_FAILURE) if the root is missing.
std::string testdata_path(const std::string& rel);
bool read_file(const std::string& path, std::vector<uint8_t>& out);
// Reads a .gz file (e.g. the tokenizer vocabularies) into memory through zlib.
bool read_gzip_file(const std::string& path, std::vector<uint8_t>& out);
std::vector<float> read_f32_file(const std::string& path);
std::string read_text_file(const std::string& path);

}  // namespace hearth::test
