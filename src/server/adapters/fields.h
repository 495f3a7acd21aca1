// Reading request fields the same way in every protocol adapter: a field that is absent or
// null is "not given"; a field of the wrong type is invalid_argument naming it
// ("field \"temperature\" must be a number").
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "base/status.h"

namespace hearth::server::fields {

using json = nlohmann::ordered_json;

inline Status type_error(const std::string& field, const char* type) {
    return error(StatusCode::invalid_argument, "field \"" + field + "\" must be " + type);
}

inline Status invalid(const std::string& message) { return error(StatusCode::invalid_argument, message); }

inline bool present(const json& obj, const char* field) {
    auto it = obj.find(field);
    return it != obj.end() && !it->is_null();
}

// `where` names the field in errors (a path such as "messages[2].content"); default: `field`.
inline Status get_string(const json& obj, const char* field, const std::string& where, std::string& out) {
    if (!present(obj, field)) return {};
    if (!obj[field].is_string()) return type_error(where, "a string");
    out = obj[field].get<std::string>();
    return {};
}
inline Status get_string(const json& obj, const char* field, std::string& out) {
    return get_string(obj, field, field, out);
}

inline Status get_bool(const json& obj, const char* field, bool& out) {
    if (!present(obj, field)) return {};
    if (!obj[field].is_boolean()) return type_error(field, "a boolean");
    out = obj[field].get<bool>();
    return {};
}

}  // namespace hearth::server::fields
