#include "cli/format.h"

#include <cmath>
#include <ctime>
#include <limits>

#include "base/status.h"

namespace hearth::cli {
namespace {

// v / unit as a decimal with the fraction's trailing zeros dropped (Go's fmtFrac).
std::string decimal(int64_t v, int64_t unit) {
    std::string s = std::to_string(v / unit);
    int64_t rem = v % unit;
    if (rem == 0) return s;
    int digits = 0;
    for (int64_t u = unit; u > 1; u /= 10) ++digits;
    std::string f = std::to_string(rem);
    f = std::string((size_t)digits - f.size(), '0').append(f);
    while (!f.empty() && f.back() == '0') f.pop_back();
    return s.append(".").append(f);
}

// Ollama's humanDuration.
std::string human_duration(std::chrono::nanoseconds d) {
    const double secs_f = (double)d.count() / 1e9;
    const int64_t seconds = (int64_t)secs_f;
    if (seconds < 1) return "Less than a second";
    if (seconds == 1) return "1 second";
    if (seconds < 60) return strformat("%lld seconds", (long long)seconds);
    const int64_t minutes = (int64_t)(secs_f / 60);
    if (minutes == 1) return "About a minute";
    if (minutes < 60) return strformat("%lld minutes", (long long)minutes);
    const int64_t hours = (int64_t)std::llround(secs_f / 3600);
    if (hours == 1) return "About an hour";
    if (hours < 48) return strformat("%lld hours", (long long)hours);
    if (hours < 24 * 7 * 2) return strformat("%lld days", (long long)(hours / 24));
    if (hours < 24 * 30 * 2) return strformat("%lld weeks", (long long)(hours / 24 / 7));
    if (hours < 24 * 365 * 2) return strformat("%lld months", (long long)(hours / 24 / 30));
    return strformat("%lld years", (long long)(hours / 24 / 365));
}

size_t display_width(const std::string& s) {
    size_t n = 0;
    for (unsigned char c : s) n += (c & 0xC0) != 0x80;
    return n;
}

bool digits(std::string_view s, size_t pos, size_t n, int& out) {
    if (pos + n > s.size()) return false;
    out = 0;
    for (size_t i = pos; i < pos + n; ++i) {
        if (s[i] < '0' || s[i] > '9') return false;
        out = out * 10 + (s[i] - '0');
    }
    return true;
}

}  // namespace

std::string human_bytes(int64_t b) {
    constexpr double kKB = 1000, kMB = kKB * 1000, kGB = kMB * 1000;
    if (b > kGB) return strformat("%.1f GB", (double)b / kGB);
    if (b > kMB) return strformat("%.1f MB", (double)b / kMB);
    if (b > kKB) return strformat("%.1f KB", (double)b / kKB);
    return strformat("%lld B", (long long)b);
}

std::string human_time(WallTime t, WallTime now, const std::string& zero) {
    if (t <= WallTime{}) return zero;  // unset (the epoch, or Go's zero time in year 1)
    const auto delta = std::chrono::duration_cast<std::chrono::nanoseconds>(now - t);
    const int64_t hours = (int64_t)((double)delta.count() / 3.6e12);
    if (hours / 24 / 365 < -20) return "Forever";
    if (delta.count() < 0) return human_duration(-delta) + " from now";
    return human_duration(delta) + " ago";
}

std::optional<WallTime> parse_rfc3339(std::string_view s) {
    std::tm tm{};
    int v = 0;
    if (!digits(s, 0, 4, v) || s.size() < 20 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
        s[13] != ':' || s[16] != ':')
        return std::nullopt;
    tm.tm_year = v - 1900;
    if (!digits(s, 5, 2, v)) return std::nullopt;
    tm.tm_mon = v - 1;
    if (!digits(s, 8, 2, v)) return std::nullopt;
    tm.tm_mday = v;
    if (!digits(s, 11, 2, v)) return std::nullopt;
    tm.tm_hour = v;
    if (!digits(s, 14, 2, v)) return std::nullopt;
    tm.tm_min = v;
    if (!digits(s, 17, 2, v)) return std::nullopt;
    tm.tm_sec = v;
    size_t p = 19;
    int64_t frac_ns = 0;
    if (p < s.size() && s[p] == '.') {
        int64_t scale = 100000000;
        for (++p; p < s.size() && s[p] >= '0' && s[p] <= '9'; ++p, scale /= 10) frac_ns += (s[p] - '0') * scale;
    }
    int64_t offset_s = 0;
    if (p < s.size() && (s[p] == 'Z' || s[p] == 'z')) {
        ++p;
    } else if (p < s.size() && (s[p] == '+' || s[p] == '-')) {
        int oh = 0, om = 0;
        if (!digits(s, p + 1, 2, oh) || p + 3 >= s.size() || s[p + 3] != ':' || !digits(s, p + 4, 2, om)) return std::nullopt;
        offset_s = (s[p] == '-' ? -1 : 1) * (oh * 3600 + om * 60);
        p += 6;
    } else {
        return std::nullopt;
    }
    if (p != s.size()) return std::nullopt;
    const int64_t secs = (int64_t)timegm(&tm) - offset_s;
    // Nanosecond time points end in 2262; Go's "never" (Ollama's and hearth's keep_alive -1)
    // is ~292 years ahead. Later times are all "forever" anyway.
    constexpr int64_t kLastSecond = std::numeric_limits<int64_t>::max() / 1000000000 - 1;
    if (secs >= kLastSecond) return WallTime::max();
    return WallTime(std::chrono::duration_cast<WallTime::duration>(std::chrono::seconds(secs) + std::chrono::nanoseconds(frac_ns)));
}

std::string go_duration(int64_t ns) {
    if (ns == 0) return "0s";
    if (ns < 0) {
        std::string neg = "-";
        return neg.append(go_duration(-ns));
    }
    if (ns < 1000) return std::to_string(ns) + "ns";
    if (ns < 1000000) return decimal(ns, 1000) + "µs";
    if (ns < 1000000000) return decimal(ns, 1000000) + "ms";
    std::string out;
    const int64_t h = ns / 3600000000000, m = ns / 60000000000 % 60;
    if (h > 0) out += std::to_string(h) + "h";
    if (h > 0 || m > 0) out += std::to_string(m) + "m";
    return out + decimal(ns % 60000000000, 1000000000) + "s";
}

std::string render_table(const std::vector<std::vector<std::string>>& rows, int gap, const std::string& indent) {
    std::vector<size_t> width;
    for (const auto& r : rows)
        for (size_t i = 0; i < r.size(); ++i) {
            if (width.size() <= i) width.resize(i + 1, 0);
            width[i] = std::max(width[i], display_width(r[i]));
        }
    std::string out;
    for (const auto& r : rows) {
        std::string line = indent;
        for (size_t i = 0; i < r.size(); ++i) {
            line += r[i];
            if (i + 1 < r.size()) line.append(width[i] - display_width(r[i]) + (size_t)gap, ' ');
        }
        while (!line.empty() && line.back() == ' ') line.pop_back();
        out += line + "\n";
    }
    return out;
}

}  // namespace hearth::cli
