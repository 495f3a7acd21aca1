// How the CLI writes sizes, times and tables: Ollama's formats (its format/bytes.go and
// format/time.go, and the tablewriter settings of `ollama list`), so output that people and
// scripts know from `ollama list` / `ollama ps` reads the same here.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace hearth::cli {

using WallTime = std::chrono::system_clock::time_point;

// Decimal units, one decimal: 1300000000 -> "1.3 GB", 2500 -> "2.5 KB", 999 -> "999 B".
std::string human_bytes(int64_t bytes);

// "3 days ago", "4 minutes from now", "Less than a second ago"; "Forever" for a time more than
// 20 years ahead (how the daemon writes keep_alive -1); `zero` for an unset time (at or before
// the epoch, e.g. Go's zero time).
std::string human_time(WallTime t, WallTime now, const std::string& zero = "Never");

// RFC 3339 with optional fraction and a Z or ±hh:mm offset ("2024-05-01T12:34:56.123456789Z",
// "2024-05-01T05:34:56-07:00"). nullopt when it does not parse.
std::optional<WallTime> parse_rfc3339(std::string_view text);

// A duration as Go prints one (Ollama's --verbose timings): "1.234567891s", "12.5ms", "850µs",
// "2m3.5s", "0s".
std::string go_duration(int64_t ns);

// Left-aligned columns, each as wide as its widest cell, separated by `gap` spaces; no trailing
// spaces. Widths count UTF-8 code points, not bytes.
std::string render_table(const std::vector<std::vector<std::string>>& rows, int gap = 4, const std::string& indent = "");

}  // namespace hearth::cli
