// Python's str operations on UTF-8 strings, as templates observe them: lengths and indices count
// code points, whitespace is Unicode whitespace, float repr is the shortest round trip.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace hearth::chat::jinja::py {

std::u32string decode(std::string_view s);  // invalid bytes decode as U+FFFD
std::string encode(std::u32string_view s);
void append_utf8(std::string& out, char32_t c);
bool is_ascii(std::string_view s);
size_t length(std::string_view s);  // code points

bool is_space(char32_t c);      // str.isspace()
bool is_printable(char32_t c);  // str.isprintable(), for repr()
char32_t to_upper(char32_t c);
char32_t to_lower(char32_t c);
bool is_alpha(char32_t c);
bool is_digit(char32_t c);
bool is_alnum(char32_t c);
bool is_upper(char32_t c);
bool is_lower(char32_t c);

std::string repr_str(std::string_view s);  // 'it''s' -> "it's", \n -> \\n, ...
std::string repr_float(double f);          // 3.0, 1e-05, 1.5e+20, inf, nan
std::string format_int(int64_t i);

// strip/lstrip/rstrip: `chars` unset strips whitespace.
std::string strip(std::string_view s, const std::optional<std::string>& chars, bool left, bool right);
// str.split(sep, maxsplit) / rsplit; sep unset splits on whitespace runs.
std::vector<std::string> split(std::string_view s, const std::optional<std::string>& sep, int64_t maxsplit,
                               bool from_right);
std::vector<std::string> splitlines(std::string_view s, bool keepends);
std::string replace(std::string_view s, std::string_view old, std::string_view repl, int64_t count);
std::string upper(std::string_view s);
std::string lower(std::string_view s);
std::string title(std::string_view s);       // str.title()
std::string capitalize(std::string_view s);  // str.capitalize()
int64_t count(std::string_view s, std::string_view sub);
int64_t find(std::string_view s, std::string_view sub, bool from_right);  // code point index or -1

// Python slice semantics over n items: normalizes start/stop/step (step != 0) and returns the
// selected indices.
std::vector<int64_t> slice_indices(int64_t n, std::optional<int64_t> start, std::optional<int64_t> stop,
                                   std::optional<int64_t> step);

// markupsafe.escape: & < > ' " as HTML entities.
std::string html_escape(std::string_view s);

}  // namespace hearth::chat::jinja::py
