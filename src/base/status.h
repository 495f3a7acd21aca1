// Errors as values. A Status is ok or carries a code, a message and an optional context
// ("tensor blk.3.attn_q.weight: ..."). Result<T> is a value or a Status. Nothing here throws.
#pragma once

#include <cstdio>
#include <string>
#include <utility>
#include <variant>

namespace hearth {

enum class StatusCode {
    ok = 0,
    invalid_argument,  // the caller passed something malformed (request, flag, prompt)
    not_found,         // file, key, tensor or model missing
    corrupt,           // a file is damaged, truncated or hostile
    unsupported,       // valid input we cannot run (architecture, tensor type)
    out_of_range,      // e.g. prompt longer than the context
    io_error,          // the OS said no (open, read, write, rename, disk full)
    resource_exhausted,// memory or cache capacity
    internal,          // our own bug surfaced as a value
};

const char* status_code_name(StatusCode code);

class [[nodiscard]] Status {
public:
    Status() = default;
    Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

    static Status ok_status() { return {}; }
    bool ok() const { return code_ == StatusCode::ok; }
    StatusCode code() const { return code_; }
    const std::string& message() const { return message_; }

    // Prefixes the message with where it happened: "tensor x: shape ...".
    Status with_context(const std::string& where) const {
        if (ok()) return *this;
        return Status(code_, where + ": " + message_);
    }

private:
    StatusCode code_ = StatusCode::ok;
    std::string message_;
};

inline Status error(StatusCode code, std::string message) { return Status(code, std::move(message)); }

// printf-style message formatting for error paths.
template <typename... Args>
std::string strformat(const char* fmt, Args... args) {
    int n = std::snprintf(nullptr, 0, fmt, args...);
    if (n <= 0) return {};
    std::string s(static_cast<size_t>(n) + 1, '\0');
    std::snprintf(s.data(), s.size(), fmt, args...);
    s.resize(static_cast<size_t>(n));
    return s;
}

template <typename T>
class [[nodiscard]] Result {
public:
    Result(T value) : v_(std::move(value)) {}                     // NOLINT: implicit by design
    Result(Status status) : v_(std::move(status)) {}              // NOLINT: must not be ok
    bool ok() const { return std::holds_alternative<T>(v_); }
    const Status& status() const {
        static const Status kOk;
        return ok() ? kOk : std::get<Status>(v_);
    }
    T& value() & { return std::get<T>(v_); }
    const T& value() const& { return std::get<T>(v_); }
    T&& value() && { return std::get<T>(std::move(v_)); }
    T* operator->() { return &value(); }
    const T* operator->() const { return &value(); }
    T& operator*() & { return value(); }
    const T& operator*() const& { return value(); }

private:
    std::variant<T, Status> v_;
};

}  // namespace hearth

#define HEARTH_CONCAT_INNER(a, b) a##b
#define HEARTH_CONCAT(a, b) HEARTH_CONCAT_INNER(a, b)

// Returns the Status from the enclosing function if `expr` (a Status) is not ok.
#define HEARTH_TRY(expr)                                  \
    do {                                                  \
        ::hearth::Status hearth_try_status_ = (expr);     \
        if (!hearth_try_status_.ok()) return hearth_try_status_; \
    } while (0)

// HEARTH_ASSIGN(auto x, expr_returning_result): unwraps or returns the error.
#define HEARTH_ASSIGN(lhs, rexpr) HEARTH_ASSIGN_IMPL(HEARTH_CONCAT(hearth_res_, __LINE__), lhs, rexpr)
#define HEARTH_ASSIGN_IMPL(tmp, lhs, rexpr) \
    auto tmp = (rexpr);                     \
    if (!tmp.ok()) return tmp.status();     \
    lhs = std::move(tmp).value()
