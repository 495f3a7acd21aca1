// What the machine has: memory available to new allocations, and byte counts for messages.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "base/status.h"

namespace hearth {

// MemAvailable from /proc/meminfo text, in bytes; not_found when the line is missing.
Result<int64_t> parse_mem_available(std::string_view meminfo);
// The same from a file (default /proc/meminfo); io_error when it cannot be read.
Result<int64_t> read_mem_available(const std::string& path = "/proc/meminfo");
// "1.50 GiB", "512.0 MiB", "100 B": for messages.
std::string format_bytes(int64_t bytes);

}  // namespace hearth
