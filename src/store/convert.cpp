// Hugging Face checkpoint -> GGUF, following llama.cpp's convert_hf_to_gguf.py (LlamaModel,
// Qwen2Model, Qwen3Model, Qwen2MoeModel/Qwen3MoeModel and TextModel.set_gguf_parameters):
// config.json gives the hyper-parameters, the safetensors tensors are renamed to GGUF names,
// checked against the shapes the config implies, and streamed into the output one tensor at a
// time (converted to the output type on the fly, rows permuted or experts stacked as needed).
#include "store/convert.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <numbers>
#include <optional>
#include <sstream>
#include <tuple>

#include <nlohmann/json.hpp>

#include "base/fp16.h"
#include "gguf/gguf.h"
#include "quant/types.h"
#include "store/hf_tokenizer.h"
#include "store/safetensors.h"

namespace hearth::store {
namespace fs = std::filesystem;
using nlohmann::json;
using quant::QuantType;

namespace {

struct ArchSpec {
    const char* hf;    // config.json architectures[0]
    const char* gguf;  // general.architecture
    bool permute_qk;   // llama: HF rotate-half rows -> GGUF interleaved pairs
    bool qk_norm;      // per-head RMS norms of q and k
    bool moe;          // experts required
};

constexpr ArchSpec kArchs[] = {
    {"LlamaForCausalLM", "llama", true, false, false},
    {"MistralForCausalLM", "llama", true, false, false},
    {"MixtralForCausalLM", "llama", true, false, true},
    {"Qwen2ForCausalLM", "qwen2", false, false, false},
    {"Qwen3ForCausalLM", "qwen3", false, true, false},
    {"Qwen3MoeForCausalLM", "qwen3moe", false, true, true},
};

std::string supported_list() {
    std::string s;
    for (const ArchSpec& a : kArchs) s += (s.empty() ? "" : ", ") + std::string(a.hf);
    return s;
}

Result<std::string> read_text(const fs::path& p) {
    std::error_code ec;
    if (!fs::exists(p, ec)) return error(StatusCode::not_found, p.string() + ": missing");
    std::ifstream f(p, std::ios::binary);
    if (!f) return error(StatusCode::io_error, p.string() + ": cannot open");
    std::stringstream ss;
    ss << f.rdbuf();
    if (f.bad()) return error(StatusCode::io_error, p.string() + ": read error");
    return ss.str();
}

// config.json, with typed getters whose errors name the field.
class Config {
public:
    explicit Config(json j) : j_(std::move(j)) {}
    const json& raw() const { return j_; }
    const json* find(const char* key) const {
        auto it = j_.find(key);
        return it == j_.end() || it->is_null() ? nullptr : &*it;
    }
    // The first of `keys` present, as a positive integer (bounded: a size, not a file offset).
    Result<std::optional<int64_t>> opt_int(std::initializer_list<const char*> keys) const {
        for (const char* k : keys) {
            const json* v = find(k);
            if (!v) continue;
            if (!v->is_number_integer() || v->get<int64_t>() < 1 || v->get<int64_t>() > (int64_t(1) << 40))
                return error(StatusCode::corrupt, std::string("config.json: ") + k + " is not a positive integer");
            return std::optional<int64_t>(v->get<int64_t>());
        }
        return std::optional<int64_t>();
    }
    Result<int64_t> req_int(const char* key) const {
        HEARTH_ASSIGN(std::optional<int64_t> v, opt_int({key}));
        if (!v) return error(StatusCode::corrupt, std::string("config.json: ") + key + " is missing");
        return *v;
    }
    Result<std::optional<double>> opt_float(const json& obj, const char* key) const {
        auto it = obj.find(key);
        if (it == obj.end() || it->is_null()) return std::optional<double>();
        if (!it->is_number() || !std::isfinite(it->get<double>()))
            return error(StatusCode::corrupt, std::string("config.json: ") + key + " is not a number");
        return std::optional<double>(it->get<double>());
    }
    Result<std::optional<double>> opt_float(const char* key) const { return opt_float(j_, key); }

private:
    json j_;
};

struct HfParams {
    const ArchSpec* arch = nullptr;
    int64_t n_layer = 0, n_embd = 0, n_head = 0, n_head_kv = 0, head_dim = 0;
    bool has_head_dim = false;
    std::optional<int64_t> n_ff, n_ctx, vocab_size;
    std::optional<double> eps, rope_theta;
    int64_t n_expert = 0, n_expert_used = 0, n_ff_exp = 0;
    bool tied = false;
    json rope;              // rope_parameters / rope_scaling, with rope_theta mirrored in
    std::string torch_dtype;
};

Result<HfParams> read_params(const Config& c) {
    HfParams p;
    const json* archs = c.find("architectures");
    if (!archs || !archs->is_array() || archs->empty() || !(*archs)[0].is_string())
        return error(StatusCode::corrupt, "config.json: architectures is missing (supported: " + supported_list() + ")");
    const std::string hf = (*archs)[0].get<std::string>();
    for (const ArchSpec& a : kArchs)
        if (hf == a.hf) p.arch = &a;
    if (!p.arch)
        return error(StatusCode::unsupported,
                     "config.json: architecture " + hf + " is not supported (supported: " + supported_list() + ")");

    HEARTH_ASSIGN(p.n_layer, c.req_int("num_hidden_layers"));
    HEARTH_ASSIGN(p.n_embd, c.req_int("hidden_size"));
    HEARTH_ASSIGN(p.n_head, c.req_int("num_attention_heads"));
    HEARTH_ASSIGN(std::optional<int64_t> kv, c.opt_int({"num_key_value_heads"}));
    p.n_head_kv = kv.value_or(p.n_head);
    HEARTH_ASSIGN(std::optional<int64_t> hd, c.opt_int({"head_dim"}));
    p.has_head_dim = hd.has_value();
    p.head_dim = hd.value_or(p.n_embd / p.n_head);
    // Bounds far above any real model keep every product of sizes below far from overflowing.
    for (const auto& [v, key, max] : {std::tuple{p.n_layer, "num_hidden_layers", 4096}, std::tuple{p.n_embd, "hidden_size", 1 << 24},
                                      std::tuple{p.n_head, "num_attention_heads", 1 << 16},
                                      std::tuple{p.n_head_kv, "num_key_value_heads", 1 << 16},
                                      std::tuple{p.head_dim, "head_dim", 1 << 16}}) {
        if (v > max) return error(StatusCode::corrupt, std::string("config.json: ") + key + " is out of range");
    }
    if (p.n_head % p.n_head_kv != 0)
        return error(StatusCode::corrupt, strformat("config.json: %lld attention heads cannot share %lld key-value heads",
                                                    (long long)p.n_head, (long long)p.n_head_kv));
    if (p.head_dim < 1) return error(StatusCode::corrupt, "config.json: head size is zero");
    if (p.arch->permute_qk && p.head_dim % 2)
        return error(StatusCode::corrupt, strformat("config.json: head size %lld is odd", (long long)p.head_dim));
    HEARTH_ASSIGN(p.n_ff, c.opt_int({"intermediate_size"}));
    if (p.n_ff && *p.n_ff > (1 << 26)) return error(StatusCode::corrupt, "config.json: intermediate_size is out of range");
    HEARTH_ASSIGN(p.n_ctx, c.opt_int({"max_position_embeddings"}));
    HEARTH_ASSIGN(p.vocab_size, c.opt_int({"vocab_size"}));
    HEARTH_ASSIGN(p.eps, c.opt_float("rms_norm_eps"));

    HEARTH_ASSIGN(std::optional<int64_t> n_exp, c.opt_int({"num_local_experts", "num_experts"}));
    HEARTH_ASSIGN(std::optional<int64_t> n_used, c.opt_int({"num_experts_per_tok"}));
    HEARTH_ASSIGN(std::optional<int64_t> ff_exp, c.opt_int({"moe_intermediate_size"}));
    if (p.arch->moe) {
        if (!n_exp || !n_used)
            return error(StatusCode::corrupt, std::string("config.json: ") + (n_exp ? "num_experts_per_tok" : "the expert count") +
                                                  " is missing for " + p.arch->hf);
        if (*n_used > *n_exp || *n_exp > (1 << 16))
            return error(StatusCode::corrupt, "config.json: expert counts out of range");
        p.n_expert = *n_exp;
        p.n_expert_used = *n_used;
        p.n_ff_exp = ff_exp ? *ff_exp : p.n_ff.value_or(0);
        if (p.n_ff_exp < 1 || p.n_ff_exp > (1 << 26))
            return error(StatusCode::corrupt, "config.json: the experts' intermediate size is missing or out of range");
        if (const json* m = c.find("mlp_only_layers"); m && m->is_array() && !m->empty())
            return error(StatusCode::unsupported, "config.json: mlp_only_layers (dense layers among MoE layers) is not supported");
        HEARTH_ASSIGN(std::optional<int64_t> step, c.opt_int({"decoder_sparse_step"}));
        if (step && *step != 1)
            return error(StatusCode::unsupported, "config.json: decoder_sparse_step other than 1 is not supported");
    } else if (!p.n_ff) {
        return error(StatusCode::corrupt, "config.json: intermediate_size is missing");
    }
    if (const json* t = c.find("tie_word_embeddings")) {
        if (!t->is_boolean()) return error(StatusCode::corrupt, "config.json: tie_word_embeddings is not a boolean");
        p.tied = t->get<bool>();
    }
    for (const char* k : {"torch_dtype", "dtype"})
        if (const json* t = c.find(k); t && t->is_string() && p.torch_dtype.empty()) p.torch_dtype = t->get<std::string>();

    // As TextModel.__init__: rope_parameters (transformers 5) or rope_scaling, with the
    // top-level rope_theta and the older "type" spelling mirrored in.
    p.rope = json::object();
    for (const char* k : {"rope_parameters", "rope_scaling"}) {
        const json* r = c.find(k);
        if (!r) continue;
        if (!r->is_object()) return error(StatusCode::corrupt, std::string("config.json: ") + k + " is not an object");
        p.rope = *r;
        break;
    }
    if (p.rope.contains("full_attention")) p.rope = p.rope["full_attention"];
    if (!p.rope.is_object()) return error(StatusCode::corrupt, "config.json: rope parameters are not an object");
    if (!p.rope.contains("rope_theta"))
        if (const json* t = c.find("rope_theta")) p.rope["rope_theta"] = *t;
    if (!p.rope.contains("rope_type") && p.rope.contains("type")) p.rope["rope_type"] = p.rope["type"];
    HEARTH_ASSIGN(p.rope_theta, c.opt_float(p.rope, "rope_theta"));
    return p;
}

std::string rope_type(const HfParams& p) {
    auto it = p.rope.find("rope_type");
    if (it == p.rope.end() || !it->is_string()) return "";
    std::string t = it->get<std::string>();
    for (char& ch : t) ch = (char)std::tolower((unsigned char)ch);
    return t;
}

// generate_extra_tensors of LlamaModel: per-dimension frequency divisors of Llama 3.x rope
// scaling. Computed in double and rounded once (llama.cpp's torch code rounds every step to
// float32, which moves the last bit of a few of the smoothed factors; the shared test models
// were written the double way).
Result<std::vector<float>> llama3_rope_freqs(const HfParams& p, const Config& c) {
    auto get = [&](const char* key, double def) -> Result<double> {
        HEARTH_ASSIGN(std::optional<double> v, c.opt_float(p.rope, key));
        return v.value_or(def);
    };
    HEARTH_ASSIGN(const double base, get("rope_theta", 10000.0));
    HEARTH_ASSIGN(const double factor, get("factor", 8.0));
    HEARTH_ASSIGN(const double low, get("low_freq_factor", 1.0));
    HEARTH_ASSIGN(const double high, get("high_freq_factor", 4.0));
    HEARTH_ASSIGN(const double old_ctx, get("original_max_position_embeddings", 8192.0));
    if (!(base > 0) || !(factor > 0) || !(old_ctx > 0) || !(low > 0) || !(high > 0) || high == low)
        return error(StatusCode::corrupt, "config.json: llama3 rope scaling parameters are out of range");
    const double low_wavelen = old_ctx / low, high_wavelen = old_ctx / high;
    const int64_t dim = p.head_dim;
    std::vector<float> out;
    for (int64_t i = 0; i < dim; i += 2) {
        const double freq = 1.0 / std::pow(base, (double)i / (double)dim);
        const double wavelen = 2.0 * std::numbers::pi / freq;
        if (wavelen < high_wavelen) {
            out.push_back(1.0f);
        } else if (wavelen > low_wavelen) {
            out.push_back((float)factor);
        } else {
            const double smooth = (old_ctx / wavelen - low) / (high - low);
            out.push_back((float)(1.0 / ((1.0 - smooth) / factor + smooth)));
        }
    }
    return out;
}

// ---------------------------------------------------------------------------------------
// Tensor plan

// Rows [row_begin, row_begin + n_rows) of a source tensor seen as [n_rows(), row_length()].
struct Piece {
    const StTensor* src = nullptr;
    int64_t row_begin = 0, n_rows = 0;
    int64_t permute_heads = 0;  // > 0: llama's q/k row permutation with this many heads
};

struct Planned {
    std::string name;
    int group = 0;   // 0 before the layers, 1 layers, 2 after
    int layer = -1;
    QuantType type = QuantType::f32;
    std::vector<int64_t> ne;       // ggml order
    std::vector<Piece> pieces;     // concatenated in order
    std::vector<float> generated;  // instead of pieces (rope_freqs)
};

enum class Kind { skip, plain, expert, fused_gate_up, fused_down };

struct Mapped {
    Kind kind = Kind::skip;
    int layer = -1;
    std::string name;      // plain: full GGUF name; expert: "gate"/"up"/"down"
    int64_t expert = -1;
};

bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }
bool ends_with(std::string_view s, std::string_view p) {
    return s.size() >= p.size() && s.substr(s.size() - p.size()) == p;
}

// Parses a non-negative decimal prefix of `s` up to '.', advancing past the dot.
std::optional<int64_t> take_index(std::string_view& s) {
    size_t i = 0;
    int64_t v = 0;
    while (i < s.size() && std::isdigit((unsigned char)s[i]) && i < 9) v = v * 10 + (s[i++] - '0');
    if (i == 0 || i >= s.size() || s[i] != '.') return std::nullopt;
    s.remove_prefix(i + 1);
    return v;
}

Result<Mapped> map_name(const std::string& hf_name) {
    std::string_view n = hf_name;
    if (ends_with(n, ".rotary_emb.inv_freq") || ends_with(n, ".attention.masked_bias")) return Mapped{};
    if (starts_with(n, "model.")) n.remove_prefix(6);
    if (n == "embed_tokens.weight") return Mapped{Kind::plain, -1, "token_embd.weight"};
    if (n == "norm.weight") return Mapped{Kind::plain, -1, "output_norm.weight"};
    if (n == "lm_head.weight") return Mapped{Kind::plain, -1, "output.weight"};
    if (starts_with(n, "layers.")) {
        n.remove_prefix(7);
        const std::optional<int64_t> layer = take_index(n);
        if (layer) {
            static const std::map<std::string_view, std::string_view> kLayer = {
                {"input_layernorm.weight", "attn_norm.weight"},
                {"post_attention_layernorm.weight", "ffn_norm.weight"},
                {"self_attn.q_proj.weight", "attn_q.weight"},       {"self_attn.q_proj.bias", "attn_q.bias"},
                {"self_attn.k_proj.weight", "attn_k.weight"},       {"self_attn.k_proj.bias", "attn_k.bias"},
                {"self_attn.v_proj.weight", "attn_v.weight"},       {"self_attn.v_proj.bias", "attn_v.bias"},
                {"self_attn.o_proj.weight", "attn_output.weight"},  {"self_attn.o_proj.bias", "attn_output.bias"},
                {"self_attn.q_norm.weight", "attn_q_norm.weight"},  {"self_attn.k_norm.weight", "attn_k_norm.weight"},
                {"mlp.gate_proj.weight", "ffn_gate.weight"},        {"mlp.up_proj.weight", "ffn_up.weight"},
                {"mlp.down_proj.weight", "ffn_down.weight"},
                {"mlp.gate.weight", "ffn_gate_inp.weight"},         {"block_sparse_moe.gate.weight", "ffn_gate_inp.weight"},
            };
            const int l = (int)*layer;
            auto it = kLayer.find(n);
            if (it != kLayer.end()) return Mapped{Kind::plain, l, "blk." + std::to_string(l) + "." + std::string(it->second)};
            if (n == "mlp.experts.gate_up_proj" || n == "mlp.experts.gate_up_proj.weight")
                return Mapped{Kind::fused_gate_up, l, "gate_up"};
            if (n == "mlp.experts.down_proj" || n == "mlp.experts.down_proj.weight")
                return Mapped{Kind::fused_down, l, "down"};
            for (std::string_view prefix : {"mlp.experts.", "block_sparse_moe.experts."}) {
                if (!starts_with(n, prefix)) continue;
                std::string_view rest = n.substr(prefix.size());
                const std::optional<int64_t> e = take_index(rest);
                if (!e) break;
                static const std::map<std::string_view, std::string_view> kExpert = {
                    {"gate_proj.weight", "gate"}, {"up_proj.weight", "up"}, {"down_proj.weight", "down"},
                    {"w1.weight", "gate"},        {"w3.weight", "up"},      {"w2.weight", "down"},
                };
                auto x = kExpert.find(rest);
                if (x != kExpert.end()) return Mapped{Kind::expert, l, std::string(x->second), *e};
            }
        }
    }
    return error(StatusCode::unsupported, "tensor " + hf_name + " has no GGUF equivalent in this architecture");
}

std::string shape_str(const std::vector<int64_t>& s) {
    std::string r = "[";
    for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
    return r + "]";
}

Status check_shape(const StTensor& t, const std::vector<int64_t>& want) {
    if (t.shape == want) return {};
    return error(StatusCode::corrupt, "tensor " + t.name + " (" + t.file + "): shape " + t.shape_string() + ", expected " +
                                          shape_str(want));
}

// The PyTorch-order shape a plain GGUF tensor must have; nullopt for a name these
// architectures do not have.
std::optional<std::vector<int64_t>> expected_shape(const HfParams& p, int64_t n_vocab, std::string_view gguf_name) {
    using Shape = std::vector<int64_t>;
    const int64_t d = p.n_embd, q = p.n_head * p.head_dim, kv = p.n_head_kv * p.head_dim, ff = p.n_ff.value_or(0);
    std::string_view n = gguf_name;
    if (starts_with(n, "blk.")) {
        n.remove_prefix(4);
        take_index(n);
    }
    auto is = [n](std::initializer_list<std::string_view> names) { return std::find(names.begin(), names.end(), n) != names.end(); };
    if (is({"token_embd.weight", "output.weight"})) return Shape{n_vocab, d};
    if (is({"output_norm.weight", "attn_norm.weight", "ffn_norm.weight", "attn_output.bias"})) return Shape{d};
    if (is({"attn_q.weight"})) return Shape{q, d};
    if (is({"attn_q.bias"})) return Shape{q};
    if (is({"attn_k.weight", "attn_v.weight"})) return Shape{kv, d};
    if (is({"attn_k.bias", "attn_v.bias"})) return Shape{kv};
    if (is({"attn_output.weight"})) return Shape{d, q};
    if (is({"attn_q_norm.weight", "attn_k_norm.weight"})) return Shape{p.head_dim};
    if (is({"ffn_gate.weight", "ffn_up.weight"})) return Shape{ff, d};
    if (is({"ffn_down.weight"})) return Shape{d, ff};
    if (is({"ffn_gate_inp.weight"})) return Shape{p.n_expert, d};
    return std::nullopt;
}

// Output type of a tensor, as prepare_tensors decides it: 1-D, norms and routers stay F32.
QuantType tensor_type(const std::string& name, size_t n_dims, QuantType out) {
    if (n_dims <= 1 || ends_with(name, "_norm.weight") || ends_with(name, "ffn_gate_inp.weight")) return QuantType::f32;
    return out;
}

Result<QuantType> parse_out_type(std::string t, const HfParams& p) {
    for (char& c : t) c = (char)std::tolower((unsigned char)c);
    if (t == "auto") {
        if (p.torch_dtype == "float32") return QuantType::f32;
        if (p.torch_dtype == "bfloat16") return QuantType::bf16;
        return QuantType::f16;
    }
    if (t == "f32") return QuantType::f32;
    if (t == "f16") return QuantType::f16;
    if (t == "bf16") return QuantType::bf16;
    return error(StatusCode::invalid_argument,
                 "output type '" + t + "' is not supported (f32, f16, bf16 or auto; quantize afterwards)");
}

uint32_t file_type(QuantType t) { return t == QuantType::f32 ? 0 : t == QuantType::f16 ? 1 : 32; }

// GGUF row r of a permuted q/k: HF keeps each head as [first halves | second halves] (rotate
// half); llama rotates adjacent pairs, so GGUF row (h, 2i + j) is HF row (h, j * hd/2 + i).
int64_t permuted_row(int64_t r, int64_t n_rows, int64_t n_heads) {
    const int64_t hd = n_rows / n_heads;
    const int64_t h = r / hd, k = r % hd;
    return h * hd + (k % 2) * (hd / 2) + k / 2;
}

Status fill(const Planned& p, std::span<std::byte> dst) {
    if (!p.generated.empty()) {  // only F32 tensors are generated
        std::memcpy(dst.data(), p.generated.data(), dst.size());
        return {};
    }
    const size_t out_size = quant::type_size(p.type);
    std::byte* out = dst.data();
    std::vector<float> row;  // [row_length] f32 staging of one source row
    for (const Piece& piece : p.pieces) {
        const StTensor& t = *piece.src;
        const int64_t row_len = t.row_length();
        const size_t in_size = st_dtype_size(t.dtype);
        const bool same = (t.dtype == StDtype::f32 && p.type == QuantType::f32) ||
                          (t.dtype == StDtype::f16 && p.type == QuantType::f16) ||
                          (t.dtype == StDtype::bf16 && p.type == QuantType::bf16);
        if ((size_t)(out - dst.data()) + (size_t)(piece.n_rows * row_len) * out_size > dst.size())
            return error(StatusCode::internal, "planned tensor is smaller than its sources");
        if (same && !piece.permute_heads) {  // the common case: one copy
            const size_t n = (size_t)(piece.n_rows * row_len) * in_size;
            std::memcpy(out, t.data.data() + (size_t)(piece.row_begin * row_len) * in_size, n);
            out += n;
            continue;
        }
        row.resize((size_t)row_len);
        for (int64_t r = 0; r < piece.n_rows; ++r) {
            const int64_t src_row =
                piece.row_begin + (piece.permute_heads ? permuted_row(r, piece.n_rows, piece.permute_heads) : r);
            if (same) {
                std::memcpy(out, t.data.data() + (size_t)(src_row * row_len) * in_size, (size_t)row_len * in_size);
            } else {
                HEARTH_TRY(read_rows_f32(t, src_row, 1, row));
                if (p.type == QuantType::f32) {
                    std::memcpy(out, row.data(), row.size() * 4);
                } else {
                    for (size_t i = 0; i < row.size(); ++i) {
                        const uint16_t h = p.type == QuantType::f16 ? f32_to_fp16(row[i]) : f32_to_bf16(row[i]);
                        std::memcpy(out + 2 * i, &h, 2);
                    }
                }
            }
            out += (size_t)row_len * out_size;
        }
    }
    if ((size_t)(out - dst.data()) != dst.size()) return error(StatusCode::internal, "planned tensor is larger than its sources");
    return {};
}

struct Plan {
    std::vector<Planned> tensors;
    int64_t n_vocab = 0;
};

Result<Plan> plan_tensors(const HfParams& p, const SafetensorsCheckpoint& ck, QuantType out_type, const Config& c) {
    Plan plan;
    const StTensor* embd = ck.find("model.embed_tokens.weight");
    if (!embd) embd = ck.find("embed_tokens.weight");
    if (!embd) return error(StatusCode::not_found, "tensor model.embed_tokens.weight is missing");
    if (embd->shape.size() != 2 || embd->shape[1] != p.n_embd)
        return error(StatusCode::corrupt, "tensor " + embd->name + ": shape " + embd->shape_string() +
                                              strformat(", expected [vocab, %lld]", (long long)p.n_embd));
    plan.n_vocab = embd->shape[0];
    if (p.vocab_size && *p.vocab_size != plan.n_vocab)
        return error(StatusCode::corrupt, strformat("config.json: vocab_size %lld, but %s has %lld rows", (long long)*p.vocab_size,
                                                    embd->name.c_str(), (long long)plan.n_vocab));

    std::map<std::string, Planned> plain;
    // (layer, "gate"/"up"/"down") -> [n_expert] sources
    std::map<std::pair<int, std::string>, std::vector<const StTensor*>> experts;
    for (const StTensor* t : ck.tensors()) {
        HEARTH_ASSIGN(const Mapped m, map_name(t->name));
        if (m.kind == Kind::skip) continue;
        if (m.layer >= p.n_layer)
            return error(StatusCode::corrupt, strformat("tensor %s: layer %d, but config.json has %lld layers", t->name.c_str(),
                                                        m.layer, (long long)p.n_layer));
        if (!is_st_float(t->dtype))
            return error(StatusCode::unsupported, strformat("tensor %s: dtype %s is not supported (only F32, F16 and BF16)",
                                                            t->name.c_str(), st_dtype_name(t->dtype)));
        if (m.kind != Kind::plain && p.n_expert == 0)
            return error(StatusCode::corrupt, "tensor " + t->name + ": experts, but config.json declares none");
        if (m.kind == Kind::plain) {
            if (m.name == "output.weight" && p.tied) continue;  // a redundant copy of the tied embedding
            auto shape = expected_shape(p, plan.n_vocab, m.name);
            if (!shape) return error(StatusCode::unsupported, "tensor " + t->name + " has no GGUF equivalent in this architecture");
            HEARTH_TRY(check_shape(*t, *shape));
            Planned& out = plain[m.name];
            if (!out.pieces.empty()) return error(StatusCode::corrupt, "tensor " + m.name + " comes from two tensors");
            out.name = m.name;
            out.layer = m.layer;
            out.group = m.layer >= 0 ? 1 : m.name == "token_embd.weight" ? 0 : 2;
            out.type = tensor_type(m.name, t->shape.size(), out_type);
            out.ne.assign(t->shape.rbegin(), t->shape.rend());
            Piece piece{t, 0, t->n_rows(), 0};
            if (p.arch->permute_qk && m.name.find(".attn_q.") != std::string::npos) piece.permute_heads = p.n_head;
            if (p.arch->permute_qk && m.name.find(".attn_k.") != std::string::npos) piece.permute_heads = p.n_head_kv;
            out.pieces.push_back(piece);
        } else if (m.kind == Kind::expert) {
            if (m.expert >= p.n_expert)
                return error(StatusCode::corrupt, strformat("tensor %s: expert %lld, but config.json has %lld experts",
                                                            t->name.c_str(), (long long)m.expert, (long long)p.n_expert));
            auto& slots = experts[{m.layer, m.name}];
            slots.resize((size_t)p.n_expert, nullptr);
            slots[(size_t)m.expert] = t;
            const std::vector<int64_t> want =
                m.name == "down" ? std::vector<int64_t>{p.n_embd, p.n_ff_exp} : std::vector<int64_t>{p.n_ff_exp, p.n_embd};
            HEARTH_TRY(check_shape(*t, want));
        } else {
            const bool gate_up = m.kind == Kind::fused_gate_up;
            const std::vector<int64_t> want = gate_up ? std::vector<int64_t>{p.n_expert, 2 * p.n_ff_exp, p.n_embd}
                                                      : std::vector<int64_t>{p.n_expert, p.n_embd, p.n_ff_exp};
            HEARTH_TRY(check_shape(*t, want));
            // gate_up_proj [E, 2 ff, d]: expert e's gate rows, then its up rows. down_proj [E, d, ff].
            const int64_t rows = gate_up ? p.n_ff_exp : p.n_embd;
            const std::vector<std::string> kinds = gate_up ? std::vector<std::string>{"gate", "up"} : std::vector<std::string>{"down"};
            for (const std::string& kind : kinds) {
                const std::string name = strformat("blk.%d.ffn_%s_exps.weight", m.layer, kind.c_str());
                Planned& out = plain[name];
                if (!out.pieces.empty()) return error(StatusCode::corrupt, "tensor " + name + " comes from two tensors");
                out.name = name;
                out.layer = m.layer;
                out.group = 1;
                out.type = out_type;
                out.ne = {gate_up ? p.n_embd : p.n_ff_exp, rows, p.n_expert};
                for (int64_t e = 0; e < p.n_expert; ++e) {
                    const int64_t begin = gate_up ? e * 2 * p.n_ff_exp + (kind == "up" ? p.n_ff_exp : 0) : e * p.n_embd;
                    out.pieces.push_back({t, begin, rows, 0});
                }
            }
        }
    }
    for (const auto& [key, slots] : experts) {
        const std::string name = strformat("blk.%d.ffn_%s_exps.weight", key.first, key.second.c_str());
        for (size_t e = 0; e < slots.size(); ++e)
            if (!slots[e])
                return error(StatusCode::not_found, strformat("expert %zu of layer %d (%s) is missing", e, key.first,
                                                              key.second.c_str()));
        Planned& out = plain[name];
        if (!out.pieces.empty()) return error(StatusCode::corrupt, "tensor " + name + " comes from two layouts");
        out.name = name;
        out.layer = key.first;
        out.group = 1;
        out.type = out_type;
        out.ne = {slots[0]->shape[1], slots[0]->shape[0], p.n_expert};
        for (const StTensor* s : slots) out.pieces.push_back({s, 0, s->n_rows(), 0});
    }

    // Everything the GGUF architecture needs, so a missing tensor is reported here, with its
    // HF name, rather than when the model is loaded.
    auto need = [&](const std::string& gguf, const char* hf) -> Status {
        if (plain.count(gguf)) return {};
        return error(StatusCode::not_found, std::string("tensor ") + hf + " is missing (needed for " + gguf + ")");
    };
    HEARTH_TRY(need("output_norm.weight", "model.norm.weight"));
    for (int l = 0; l < (int)p.n_layer; ++l) {
        auto blk = [l](const char* n) { return "blk." + std::to_string(l) + "." + n + ".weight"; };
        auto hf = [l](const char* n) { return "model.layers." + std::to_string(l) + "." + n + ".weight"; };
        const std::pair<const char*, const char*> common[] = {
            {"attn_norm", "input_layernorm"}, {"attn_q", "self_attn.q_proj"}, {"attn_k", "self_attn.k_proj"},
            {"attn_v", "self_attn.v_proj"},   {"attn_output", "self_attn.o_proj"}, {"ffn_norm", "post_attention_layernorm"},
        };
        for (const auto& [g, h] : common) HEARTH_TRY(need(blk(g), hf(h).c_str()));
        if (p.arch->qk_norm) {
            HEARTH_TRY(need(blk("attn_q_norm"), hf("self_attn.q_norm").c_str()));
            HEARTH_TRY(need(blk("attn_k_norm"), hf("self_attn.k_norm").c_str()));
        }
        if (p.n_expert > 0) {
            HEARTH_TRY(need(blk("ffn_gate_inp"), hf("mlp.gate").c_str()));
            for (const char* k : {"ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"})
                HEARTH_TRY(need(blk(k), hf("mlp.experts").c_str()));
        } else {
            HEARTH_TRY(need(blk("ffn_gate"), hf("mlp.gate_proj").c_str()));
            HEARTH_TRY(need(blk("ffn_up"), hf("mlp.up_proj").c_str()));
            HEARTH_TRY(need(blk("ffn_down"), hf("mlp.down_proj").c_str()));
        }
    }

    if (p.arch->permute_qk && rope_type(p) == "llama3") {
        Planned f;
        f.name = "rope_freqs.weight";
        f.type = QuantType::f32;
        HEARTH_ASSIGN(f.generated, llama3_rope_freqs(p, c));
        f.ne = {(int64_t)f.generated.size()};
        plan.tensors.push_back(std::move(f));
    }
    for (auto& [name, t] : plain) plan.tensors.push_back(std::move(t));
    // Embedding first, then layer by layer, then the head: reading the file front to back
    // follows the forward pass. Within a layer, GGUF name order.
    std::stable_sort(plan.tensors.begin(), plan.tensors.end(), [](const Planned& a, const Planned& b) {
        if (a.group != b.group) return a.group < b.group;
        if (a.layer != b.layer) return a.layer < b.layer;
        return a.name < b.name;
    });
    return plan;
}

Status add_arch_metadata(const HfParams& p, const Config& c, const Plan& plan, QuantType out_type, const std::string& name,
                         gguf::GgufWriter& w) {
    using gguf::Value;
    const std::string a = p.arch->gguf;
    auto key = [&](const char* k) { return a + "." + k; };
    w.set("general.architecture", Value::make_string(a));
    w.set("general.type", Value::make_string("model"));
    if (!name.empty()) w.set("general.name", Value::make_string(name));
    w.set("general.file_type", Value::make_u32(file_type(out_type)));
    w.set("general.quantization_version", Value::make_u32(2));
    w.set(key("block_count"), Value::make_u32((uint32_t)p.n_layer));
    if (p.n_ctx) w.set(key("context_length"), Value::make_u32((uint32_t)std::min<int64_t>(*p.n_ctx, UINT32_MAX)));
    w.set(key("embedding_length"), Value::make_u32((uint32_t)p.n_embd));
    if (p.n_ff) w.set(key("feed_forward_length"), Value::make_u32((uint32_t)*p.n_ff));
    w.set(key("attention.head_count"), Value::make_u32((uint32_t)p.n_head));
    w.set(key("attention.head_count_kv"), Value::make_u32((uint32_t)p.n_head_kv));

    const std::string rt = rope_type(p);
    auto rope_float = [&](const char* k) -> Result<std::optional<double>> { return c.opt_float(p.rope, k); };
    HEARTH_ASSIGN(const std::optional<double> factor, rope_float("factor"));
    if (rt == "linear" && factor) {
        w.set(key("rope.scaling.type"), Value::make_string("linear"));
        w.set(key("rope.scaling.factor"), Value::make_f32((float)*factor));
    } else if (rt == "yarn" && factor) {
        w.set(key("rope.scaling.type"), Value::make_string("yarn"));
        w.set(key("rope.scaling.factor"), Value::make_f32((float)*factor));
        HEARTH_ASSIGN(const std::optional<double> orig, rope_float("original_max_position_embeddings"));
        if (!orig) return error(StatusCode::corrupt, "config.json: yarn rope scaling without original_max_position_embeddings");
        w.set(key("rope.scaling.original_context_length"), Value::make_u32((uint32_t)*orig));
        const std::pair<const char*, const char*> yarn[] = {
            {"extrapolation_factor", "rope.scaling.yarn_ext_factor"}, {"attention_factor", "rope.scaling.yarn_attn_factor"},
            {"attn_factor", "rope.scaling.yarn_attn_factor"},         {"beta_fast", "rope.scaling.yarn_beta_fast"},
            {"beta_slow", "rope.scaling.yarn_beta_slow"},
        };
        for (const auto& [hf, gg] : yarn) {
            HEARTH_ASSIGN(const std::optional<double> v, rope_float(hf));
            if (v && !w.metadata().has(key(gg))) w.set(key(gg), Value::make_f32((float)*v));
        }
    } else if (!rt.empty() && rt != "default" && rt != "llama3" && rt != "dynamic") {
        return error(StatusCode::unsupported, "config.json: rope scaling type " + rt + " is not supported");
    }
    if (p.rope_theta) w.set(key("rope.freq_base"), Value::make_f32((float)*p.rope_theta));
    if (p.eps) w.set(key("attention.layer_norm_rms_epsilon"), Value::make_f32((float)*p.eps));
    if (p.n_expert > 0) {
        w.set(key("expert_count"), Value::make_u32((uint32_t)p.n_expert));
        w.set(key("expert_used_count"), Value::make_u32((uint32_t)p.n_expert_used));
        if (c.find("moe_intermediate_size")) w.set(key("expert_feed_forward_length"), Value::make_u32((uint32_t)p.n_ff_exp));
    }
    if (p.has_head_dim) {
        w.set(key("attention.key_length"), Value::make_u32((uint32_t)p.head_dim));
        w.set(key("attention.value_length"), Value::make_u32((uint32_t)p.head_dim));
    }
    if (a == "llama") {
        w.set(key("vocab_size"), Value::make_u32((uint32_t)plan.n_vocab));
        w.set(key("rope.dimension_count"), Value::make_u32((uint32_t)p.head_dim));
    }
    return {};
}

Status convert(const std::string& dir, const std::string& out_path, const ConvertOptions& opt) {
    const fs::path root(dir);
    HEARTH_ASSIGN(const std::string config_text, read_text(root / "config.json"));
    json cj = json::parse(config_text, nullptr, /*allow_exceptions=*/false);
    if (cj.is_discarded() || !cj.is_object()) return error(StatusCode::corrupt, (root / "config.json").string() + ": not a JSON object");
    if (auto tc = cj.find("text_config"); tc != cj.end() && tc->is_object()) cj.update(*tc);  // multimodal wrappers
    const Config config(std::move(cj));
    HEARTH_ASSIGN(const HfParams p, read_params(config));
    HEARTH_ASSIGN(const QuantType out_type, parse_out_type(opt.out_type, p));
    HEARTH_ASSIGN(const SafetensorsCheckpoint ck, SafetensorsCheckpoint::open_dir(dir));
    HEARTH_ASSIGN(const Plan plan, plan_tensors(p, ck, out_type, config));
    HEARTH_ASSIGN(const HfTokenizerFiles tok_files, read_hf_tokenizer_files(dir));

    gguf::GgufWriter w;
    std::string name = fs::path(dir).lexically_normal().filename().string();
    if (name.empty() || name == ".") name = fs::absolute(root).lexically_normal().parent_path().filename().string();
    HEARTH_TRY(add_arch_metadata(p, config, plan, out_type, name, w));
    Status st = add_hf_tokenizer_metadata(tok_files, plan.n_vocab, w.metadata());
    if (!st.ok()) return st.with_context(dir);

    int64_t done = 0, total = 0;
    for (const Planned& t : plan.tensors) {
        const Planned* tp = &t;
        HEARTH_TRY(w.add_tensor_lazy(t.name, t.type, t.ne, [tp, &done, &total, &opt](std::span<std::byte> dst) -> Status {
            HEARTH_TRY(fill(*tp, dst));
            done += (int64_t)dst.size();
            if (opt.progress) opt.progress(std::min(done, total), total);
            return {};
        }));
    }
    HEARTH_ASSIGN(const uint64_t size, w.file_size());
    total = (int64_t)size;
    if (opt.progress) opt.progress(0, total);
    HEARTH_TRY(w.write_file(out_path));
    if (opt.progress) opt.progress(total, total);
    return {};
}

}  // namespace

std::vector<std::string> hf_supported_architectures() {
    std::vector<std::string> out;
    for (const ArchSpec& a : kArchs) out.push_back(a.hf);
    return out;
}

bool is_hf_checkpoint(const std::string& dir) {
    std::error_code ec;
    const fs::path root(dir);
    if (!fs::is_directory(root, ec) || !fs::is_regular_file(root / "config.json", ec)) return false;
    for (const auto& e : fs::directory_iterator(root, ec)) {
        const std::string n = e.path().filename().string();
        if (ends_with(n, ".safetensors") || n == "model.safetensors.index.json") return true;
    }
    return false;
}

Status convert_hf_checkpoint(const std::string& dir, const std::string& out_path, const ConvertOptions& opt) {
    try {
        return convert(dir, out_path, opt);
    } catch (const std::exception& e) {  // nlohmann on a config shape we did not check: still a value
        return error(StatusCode::corrupt, dir + ": " + e.what());
    }
}

}  // namespace hearth::store
