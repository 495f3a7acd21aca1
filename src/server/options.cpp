#include "server/options.h"

#include <cmath>
#include <set>

namespace hearth::server {
namespace {

Status type_error(const std::string& key, const char* type) {
    return error(StatusCode::invalid_argument, "option \"" + key + "\" must be of type " + type);
}

Status get_int(const std::string& key, const nlohmann::json& v, int64_t& out) {
    if (!v.is_number()) return type_error(key, "integer");
    const double d = v.get<double>();
    if (!std::isfinite(d) || d > 9.2e18 || d < -9.2e18) return type_error(key, "integer");
    out = v.is_number_float() ? (int64_t)d : v.get<int64_t>();
    return {};
}

Status get_float(const std::string& key, const nlohmann::json& v, float& out) {
    if (!v.is_number()) return type_error(key, "number");
    out = (float)v.get<double>();
    return {};
}

}  // namespace

Status apply_options(const nlohmann::json& options, RequestOptions& o) {
    if (options.is_null()) return {};
    if (!options.is_object()) return error(StatusCode::invalid_argument, "options must be an object");
    // Accepted, type-checked and unused here (see options.h).
    static const std::set<std::string> kUnusedInts = {"main_gpu", "mirostat", "num_gqa", "rope_frequency_base"};
    static const std::set<std::string> kUnusedFloats = {"mirostat_tau", "mirostat_eta", "tfs_z", "rope_frequency_scale"};
    static const std::set<std::string> kUnusedBools = {"use_mmap", "numa", "low_vram", "f16_kv",
                                                       "vocab_only", "logits_all", "penalize_newline", "embedding_only"};
    for (const auto& [key, v] : options.items()) {
        runtime::SamplingOptions& s = o.sampling;
        int64_t i = 0;
        if (v.is_null()) continue;  // Ollama skips nulls
        if (key == "temperature") {
            HEARTH_TRY(get_float(key, v, s.temperature));
        } else if (key == "top_k") {
            HEARTH_TRY(get_int(key, v, i));
            s.top_k = (int32_t)std::clamp<int64_t>(i, INT32_MIN, INT32_MAX);
        } else if (key == "top_p") {
            HEARTH_TRY(get_float(key, v, s.top_p));
        } else if (key == "min_p") {
            HEARTH_TRY(get_float(key, v, s.min_p));
        } else if (key == "typical_p") {
            HEARTH_TRY(get_float(key, v, s.typical_p));
        } else if (key == "repeat_penalty") {
            HEARTH_TRY(get_float(key, v, s.repeat_penalty));
        } else if (key == "repeat_last_n") {
            HEARTH_TRY(get_int(key, v, i));
            s.repeat_last_n = (int32_t)std::clamp<int64_t>(i, INT32_MIN, INT32_MAX);
        } else if (key == "presence_penalty") {
            HEARTH_TRY(get_float(key, v, s.presence_penalty));
        } else if (key == "frequency_penalty") {
            HEARTH_TRY(get_float(key, v, s.frequency_penalty));
        } else if (key == "seed") {
            HEARTH_TRY(get_int(key, v, s.seed));
        } else if (key == "num_predict") {
            HEARTH_TRY(get_int(key, v, o.num_predict));
        } else if (key == "num_keep") {
            HEARTH_TRY(get_int(key, v, i));
            o.num_keep = i;
        } else if (key == "num_ctx") {
            HEARTH_TRY(get_int(key, v, i));
            o.num_ctx = i;
        } else if (key == "num_batch") {
            HEARTH_TRY(get_int(key, v, i));
            o.num_batch = i;
        } else if (key == "num_thread") {
            HEARTH_TRY(get_int(key, v, i));
            o.num_thread = i;
        } else if (key == "num_gpu") {
            HEARTH_TRY(get_int(key, v, i));
            o.num_gpu = i;
        } else if (key == "use_mlock") {
            if (!v.is_boolean()) return type_error(key, "boolean");
            o.use_mlock = v.get<bool>();
        } else if (key == "stop") {
            if (!v.is_array()) return type_error(key, "array of strings");
            o.stop.clear();
            for (const auto& e : v) {
                if (!e.is_string()) return type_error(key, "array of strings");
                o.stop.push_back(e.get<std::string>());
            }
        } else if (kUnusedInts.count(key)) {
            HEARTH_TRY(get_int(key, v, i));
        } else if (kUnusedFloats.count(key)) {
            float f;
            HEARTH_TRY(get_float(key, v, f));
        } else if (kUnusedBools.count(key)) {
            if (!v.is_boolean()) return type_error(key, "boolean");
        } else {
            o.ignored.push_back(key);
        }
    }
    return {};
}

Status validate_options(const RequestOptions& o) {
    if (Status s = o.sampling.validate(); !s.ok()) return s;
    if (o.num_predict < -2)
        return error(StatusCode::invalid_argument, strformat("num_predict must be -1, -2 or >= 0, got %lld", (long long)o.num_predict));
    if (o.num_ctx && (*o.num_ctx < 1 || *o.num_ctx > (int64_t{1} << 24)))
        return error(StatusCode::invalid_argument, strformat("num_ctx must be in [1, 16777216], got %lld", (long long)*o.num_ctx));
    if (o.num_batch && (*o.num_batch < 1 || *o.num_batch > (int64_t{1} << 20)))
        return error(StatusCode::invalid_argument, strformat("num_batch must be in [1, 1048576], got %lld", (long long)*o.num_batch));
    if (o.num_thread && (*o.num_thread < 0 || *o.num_thread > 4096))
        return error(StatusCode::invalid_argument, strformat("num_thread must be in [0, 4096], got %lld", (long long)*o.num_thread));
    if (o.num_keep && *o.num_keep < -1)
        return error(StatusCode::invalid_argument, strformat("num_keep must be >= -1, got %lld", (long long)*o.num_keep));
    return {};
}

}  // namespace hearth::server
