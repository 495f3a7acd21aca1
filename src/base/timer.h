// Monotonic wall-clock timing.
#pragma once

#include <chrono>
#include <cstdint>

namespace hearth {

inline int64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace hearth
