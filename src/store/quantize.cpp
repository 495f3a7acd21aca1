// quantize_gguf: llama-quantize's per-tensor type rules (quantize.h lists them) over quant/'s
// reference quantizers, streamed through GgufWriter one tensor at a time.
#include "store/quantize.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>
#include <tuple>

#include "base/thread_pool.h"

namespace hearth::store {
namespace {

using quant::QuantType;

// llama.cpp's llama_ftype values for the targets hearth can produce.
enum class Ftype : uint32_t {
    all_f32 = 0, f16 = 1, q4_0 = 2, q4_1 = 3, q8_0 = 7, q5_0 = 8, q5_1 = 9, q2_k = 10,
    q3_k_s = 11, q3_k_m = 12, q3_k_l = 13, q4_k_s = 14, q4_k_m = 15, q5_k_s = 16, q5_k_m = 17,
    q6_k = 18, iq4_nl = 25, iq4_xs = 30, bf16 = 32, mxfp4_moe = 38,
};

struct TargetRow {
    const char* name;
    QuantType base;  // llama_ftype_get_default_type
    Ftype ftype;
};

// Listing order: sizes from largest to smallest, as `ollama create --help` and llama-quantize
// roughly print them. Every base type has a reference quantizer and compute kernels.
const TargetRow kTargets[] = {
    {"F32", QuantType::f32, Ftype::all_f32},      {"F16", QuantType::f16, Ftype::f16},
    {"BF16", QuantType::bf16, Ftype::bf16},       {"Q8_0", QuantType::q8_0, Ftype::q8_0},
    {"Q6_K", QuantType::q6_k, Ftype::q6_k},       {"Q5_K_M", QuantType::q5_k, Ftype::q5_k_m},
    {"Q5_K_S", QuantType::q5_k, Ftype::q5_k_s},   {"Q5_1", QuantType::q5_1, Ftype::q5_1},
    {"Q5_0", QuantType::q5_0, Ftype::q5_0},       {"Q4_K_M", QuantType::q4_k, Ftype::q4_k_m},
    {"Q4_K_S", QuantType::q4_k, Ftype::q4_k_s},   {"Q4_1", QuantType::q4_1, Ftype::q4_1},
    {"Q4_0", QuantType::q4_0, Ftype::q4_0},       {"IQ4_NL", QuantType::iq4_nl, Ftype::iq4_nl},
    {"IQ4_XS", QuantType::iq4_xs, Ftype::iq4_xs}, {"Q3_K_L", QuantType::q3_k, Ftype::q3_k_l},
    {"Q3_K_M", QuantType::q3_k, Ftype::q3_k_m},   {"Q3_K_S", QuantType::q3_k, Ftype::q3_k_s},
    {"Q2_K", QuantType::q2_k, Ftype::q2_k},       {"MXFP4_MOE", QuantType::mxfp4, Ftype::mxfp4_moe},
};

// llama-quantize's short names for the medium mixes.
const std::pair<const char*, const char*> kAliases[] = {{"Q3_K", "Q3_K_M"}, {"Q4_K", "Q4_K_M"}, {"Q5_K", "Q5_K_M"}};

std::string upper(std::string_view s) {
    std::string out(s);
    for (char& c : out) c = (char)std::toupper((unsigned char)c);
    return out;
}

std::string type_upper(QuantType t) { return upper(quant::type_name(t)); }

bool is_float_type(QuantType t) { return t == QuantType::f32 || t == QuantType::f16 || t == QuantType::bf16; }

// ---------------------------------------------------------------------------------------------
// Which tensors are converted (llama.cpp's tensor_allows_quantization).

// Names (substrings) that stay in their source type even though they are 2-D weights: tiny or
// precision-critical tensors of some architectures.
const char* const kKeepSubstrings[] = {
    "_norm.weight", "ffn_gate_inp.weight", "ffn_gate_tid2eid.weight", "altup", "laurel", "per_layer_model_proj",
    "ssm_conv1d", "shortconv.conv.weight", "indexer.k_proj.weight", "indexer.q_proj.weight",
    "time_mix_first.weight", "time_mix_w0.weight", "time_mix_w1.weight", "time_mix_w2.weight",
    "time_mix_v0.weight", "time_mix_v1.weight", "time_mix_v2.weight", "time_mix_a0.weight", "time_mix_a1.weight",
    "time_mix_a2.weight", "time_mix_g1.weight", "time_mix_g2.weight", "time_mix_decay_w1.weight",
    "time_mix_decay_w2.weight", "time_mix_lerp_fused.weight", "attn_rel_b.weight", ".position_embd",
    "sam.pos_embd", "sam.neck.", "sam.net_", ".rel_pos", ".patch_embd", ".patch_merger", "a.rvq.codebook",
    "mm.a.code_embd",
};

// ggml_n_dims: dimensions up to the last one that is not 1.
int effective_dims(const gguf::TensorInfo& t) {
    int n = 1;
    for (int d = 1; d < gguf::kMaxDims; ++d)
        if (t.ne[d] > 1) n = d + 1;
    return n;
}

bool is_convertible(const gguf::TensorInfo& t) {
    const std::string& name = t.name;
    if (effective_dims(t) < 2) return false;
    if (name.size() < 6 || name.compare(name.size() - 6, 6, "weight") != 0) return false;
    if (name == "position_embd.weight" || name == "token_types.weight") return false;  // bert
    for (const char* s : kKeepSubstrings)
        if (name.find(s) != std::string::npos) return false;
    return true;
}

// ---------------------------------------------------------------------------------------------
// The per-tensor rules (llama.cpp's llama_tensor_get_type_impl) for the targets above.

enum class Category { token_embd, output, attn_q, attn_k, attn_v, attn_output, ffn_up, ffn_gate, ffn_down, other };

// By name, first match wins (attn_qkv and MLA's attn_kv_b count as attn_v: llama.cpp's
// category_is_attn_v, which is tested before anything else attention-related).
Category category_of(const std::string& name) {
    if (name == "output.weight") return Category::output;
    if (name == "token_embd.weight" || name == "per_layer_token_embd.weight") return Category::token_embd;
    auto has = [&](const char* s) { return name.find(s) != std::string::npos; };
    if (has("attn_qkv.weight") || has("attn_kv_b.weight") || has("attn_v.weight")) return Category::attn_v;
    if (has("attn_k.weight")) return Category::attn_k;
    if (has("attn_q.weight")) return Category::attn_q;
    if (has("attn_output.weight")) return Category::attn_output;
    if (has("ffn_up")) return Category::ffn_up;
    if (has("ffn_gate")) return Category::ffn_gate;
    if (has("ffn_down")) return Category::ffn_down;
    return Category::other;
}

// "blk.12.attn_v.weight" -> 12; -1 for tensors outside the layers.
int layer_of(const std::string& name) {
    int layer = -1;
    if (std::sscanf(name.c_str(), "blk.%d.", &layer) != 1) return -1;
    return layer;
}

// What the rules read from the metadata.
struct ModelFacts {
    std::string arch;
    int n_layer = 0;      // {arch}.block_count: ffn_down's layer count
    int n_gqa = 0;        // query heads per KV head (layer 0)
    int n_expert = 0;     // {arch}.expert_count
    bool is_70b = false;  // llama.cpp's LLM_TYPE_70B (attn_v gets Q5_K instead of Q3_K/Q4_K)
    bool tied = true;     // no output.weight: token_embd is also the output matrix
    int n_attn_v = 0;     // attn_v-like tensors in the file
};

int64_t first_int(const gguf::Metadata& m, const std::string& key, int64_t def) {
    const gguf::Value* v = m.find(key);
    if (!v) return def;
    int64_t out = def;
    if (v->type == gguf::ValueType::array) {  // per-layer counts: llama.cpp's n_gqa() reads layer 0
        if (v->items.empty() || !v->items[0].to_i64(out)) return def;
        return out;
    }
    return v->to_i64(out) ? out : def;
}

ModelFacts read_facts(const gguf::GgufFile& f) {
    ModelFacts m;
    m.arch = f.architecture();
    const std::string a = m.arch + ".";
    m.n_layer = (int)first_int(f.meta, a + "block_count", 0);
    const int64_t n_head = first_int(f.meta, a + "attention.head_count", 0);
    const int64_t n_head_kv = first_int(f.meta, a + "attention.head_count_kv", n_head);
    m.n_gqa = n_head_kv > 0 ? (int)(n_head / n_head_kv) : 0;
    m.n_expert = (int)first_int(f.meta, a + "expert_count", 0);
    // The architectures whose loaders call an 80-layer (jais2: 68-layer) model "70B".
    if (m.arch == "llama") m.is_70b = m.n_expert != 8 && m.n_layer == 80 && n_head != n_head_kv;
    else if (m.arch == "qwen2" || m.arch == "olmo" || m.arch == "deci") m.is_70b = m.n_layer == 80;
    else if (m.arch == "jais2") m.is_70b = m.n_layer == 68;
    for (const auto& t : f.tensors) {
        const Category c = category_of(t.name);
        if (c == Category::output) m.tied = false;
        if (c == Category::attn_v) ++m.n_attn_v;
    }
    return m;
}

bool use_more_bits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

// Running counters: llama.cpp numbers attn_v and (dense) ffn_down tensors in the order it visits
// them, which is by layer, then by name.
struct Counters {
    int i_attn_v = 0;
    int i_ffn_down = 0;
};

QuantType mix_type(Ftype ft, QuantType t, const ModelFacts& m, Category cat, const gguf::TensorInfo& ti, Counters& k) {
    const bool falcon = m.arch == "falcon";
    if (cat == Category::output || (m.tied && cat == Category::token_embd)) {
        if (ft == Ftype::mxfp4_moe) return QuantType::q8_0;
        if (falcon || ti.ne[0] % quant::block_size(t) != 0) return QuantType::q8_0;
        return t == QuantType::q8_0 ? t : QuantType::q6_k;
    }
    if (ft == Ftype::mxfp4_moe) return ti.ne[2] > 1 ? QuantType::mxfp4 : QuantType::q8_0;
    switch (cat) {
        case Category::attn_v: {
            const int i = k.i_attn_v++;
            if (ft == Ftype::q2_k) t = m.n_gqa >= 4 ? QuantType::q4_k : QuantType::q3_k;
            else if (ft == Ftype::q3_k_m) t = i < 2 ? QuantType::q5_k : QuantType::q4_k;
            else if (ft == Ftype::q3_k_l) t = QuantType::q5_k;
            else if ((ft == Ftype::iq4_nl || ft == Ftype::iq4_xs) && m.n_gqa >= 4) t = QuantType::q5_k;
            else if ((ft == Ftype::q4_k_m || ft == Ftype::q5_k_m) && use_more_bits(i, m.n_attn_v)) t = QuantType::q6_k;
            else if (ft == Ftype::q4_k_s && i < 4) t = QuantType::q5_k;
            // 70B: 8 query heads share each attn_v, which is 8x smaller than attn_q: more bits are cheap.
            if (m.is_70b && (t == QuantType::q3_k || t == QuantType::q4_k)) t = QuantType::q5_k;
            if (m.n_expert == 8) t = QuantType::q8_0;
            return t;
        }
        case Category::attn_k:
            return m.n_expert == 8 ? QuantType::q8_0 : t;
        case Category::ffn_down: {
            // Dense models: the running count; MoE models name the layer (experts are not in order).
            int i = k.i_ffn_down++;
            if (m.n_expert > 1) {
                const int layer = layer_of(ti.name);
                if (layer >= 0) i = layer;
            }
            const int n = m.n_layer;
            if (ft == Ftype::q2_k) t = QuantType::q3_k;
            else if (ft == Ftype::q3_k_m)
                t = i < n / 16 ? QuantType::q5_k : (!falcon || use_more_bits(i, n)) ? QuantType::q4_k : QuantType::q3_k;
            else if (ft == Ftype::q3_k_l) t = falcon ? QuantType::q4_k : QuantType::q5_k;
            else if (ft == Ftype::q4_k_m) {
                if (falcon) t = i < n / 16 ? QuantType::q6_k : use_more_bits(i, n) ? QuantType::q5_k : QuantType::q4_k;
                else if (use_more_bits(i, n)) t = QuantType::q6_k;
            } else if (i < n / 8 && (ft == Ftype::iq4_nl || ft == Ftype::iq4_xs)) t = QuantType::q5_k;
            else if (ft == Ftype::q5_k_m && use_more_bits(i, n)) t = QuantType::q6_k;
            else if (ft == Ftype::q4_k_s && !falcon && i < n / 8) t = QuantType::q5_k;
            return t;
        }
        case Category::attn_output:
            if (falcon) return ft == Ftype::q3_k_l ? QuantType::q4_k : t;
            if (m.n_expert == 8) {
                const bool low = ft == Ftype::q2_k || ft == Ftype::q3_k_s || ft == Ftype::q3_k_m || ft == Ftype::iq4_nl ||
                                 ft == Ftype::q4_k_s || ft == Ftype::q4_k_m || ft == Ftype::iq4_xs;
                return low ? QuantType::q5_k : t;
            }
            if (ft == Ftype::q2_k) return QuantType::q3_k;
            if (ft == Ftype::q3_k_m) return QuantType::q4_k;
            if (ft == Ftype::q3_k_l) return QuantType::q5_k;
            return t;
        default:
            return t;
    }
}

// llama-quantize's replacement when a row does not fill whole blocks of `t`; F16 when the
// replacement does not fit either (or there is none: llama-quantize stops there).
QuantType fallback_type(QuantType t, int64_t row) {
    QuantType f = QuantType::f16;
    switch (t) {
        case QuantType::iq4_xs: f = QuantType::iq4_nl; break;
        case QuantType::q2_k:
        case QuantType::q3_k: f = QuantType::q4_0; break;
        case QuantType::q4_k: f = QuantType::q5_0; break;
        case QuantType::q5_k: f = QuantType::q5_1; break;
        case QuantType::q6_k: f = QuantType::q8_0; break;
        default: break;
    }
    return row % quant::block_size(f) == 0 ? f : QuantType::f16;
}

uint64_t padded(uint64_t n, uint64_t alignment) { return (n + alignment - 1) / alignment * alignment; }

// ---------------------------------------------------------------------------------------------
// Conversion.

// Releases the mapped source pages of [p, p + n) from this process (they stay in the page cache),
// so resident memory does not grow with the model. Only whole pages inside the range.
void release_pages(const std::byte* p, uint64_t n) {
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    const uintptr_t begin = ((uintptr_t)p + page - 1) / page * page;
    const uintptr_t end = ((uintptr_t)p + n) / page * page;
    if (end > begin) madvise((void*)begin, end - begin, MADV_DONTNEED);
}

struct Progress {
    const std::function<void(int64_t, int64_t)>* fn = nullptr;
    int64_t total = 0;
    std::atomic<int64_t> done{0};
    void add(int64_t n) {
        const int64_t now = done.fetch_add(n) + n;
        if (fn && *fn) (*fn)(now, total);
    }
};

// Converts one tensor into `dst` (exactly its output size), rows split over the pool.
// scratch: [n_threads][max row length] f32, one row per worker.
Status convert_tensor(const gguf::TensorInfo& t, QuantType to, std::span<std::byte> dst, ThreadPool& pool,
                      std::vector<std::vector<float>>& scratch, Progress& progress) {
    const quant::TypeTraits& src = quant::traits(t.type);
    const quant::TypeTraits& out = quant::traits(to);
    const int64_t n = t.ne[0];
    const int64_t rows = t.n_rows();
    const size_t src_row = quant::row_size(t.type, n), dst_row = quant::row_size(to, n);
    if (dst.size() != dst_row * (size_t)rows)
        return error(StatusCode::internal, strformat("output buffer of %zu bytes for %lld rows of %zu", dst.size(),
                                                     (long long)rows, dst_row));
    std::atomic<int64_t> bad_row{-1};  // a row holding NaN/inf (any one, when several do)
    const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 16) / n);
    pool.parallel_chunks(rows, grain, [&](int chunk, int64_t begin, int64_t end) {
        float* row = scratch[(size_t)chunk].data();
        int64_t pending = 0;  // rows converted since the last progress report
        // Reports progress and lets go of the source rows just read, so that a large tensor's
        // mapped pages do not all stay resident while it is converted.
        auto flush = [&](int64_t next_row) {
            progress.add(pending * (int64_t)dst_row);
            release_pages(t.data + (next_row - pending) * src_row, (uint64_t)(pending * src_row));
            pending = 0;
        };
        int64_t r = begin;
        for (; r < end && bad_row.load(std::memory_order_relaxed) < 0; ++r) {
            src.dequantize_row(t.data + r * src_row, row, n);
            for (int64_t i = 0; i < n; ++i) {
                if (!std::isfinite(row[i])) {
                    bad_row.store(r);
                    return;
                }
            }
            out.quantize_row(row, dst.data() + r * dst_row, n);
            if (++pending * n >= (int64_t{1} << 20)) flush(r + 1);
        }
        flush(r);
    });
    if (bad_row.load() >= 0)
        return error(StatusCode::corrupt, strformat("row %lld holds NaN or infinity", (long long)bad_row.load()));
    return {};
}

}  // namespace

std::vector<std::string> quantize_type_names() {
    std::vector<std::string> out;
    for (const TargetRow& r : kTargets) out.push_back(r.name);
    return out;
}

Result<QuantizeTarget> parse_quantize_type(std::string_view name) {
    std::string want = upper(name);
    for (const auto& [alias, mix] : kAliases)
        if (want == alias) want = mix;
    for (const TargetRow& r : kTargets)
        if (want == r.name) return QuantizeTarget{r.name, r.base, (uint32_t)r.ftype};
    std::string names;
    for (const TargetRow& r : kTargets) names += (names.empty() ? "" : ", ") + std::string(r.name);
    return error(StatusCode::invalid_argument,
                 "unknown quantization type '" + std::string(name) + "' (choose one of: " + names + ")");
}

Result<QuantizePlan> plan_quantize(const gguf::GgufFile& file, std::string_view type) {
    QuantizePlan plan;
    HEARTH_ASSIGN(plan.target, parse_quantize_type(type));
    const Ftype ft = (Ftype)plan.target.file_type;
    const QuantType base = plan.target.base;
    const bool quantized = !is_float_type(base);
    const ModelFacts facts = read_facts(file);

    // llama.cpp's visiting order (layer, then name) for the running counters.
    std::vector<size_t> order(file.tensors.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
        const std::string& na = file.tensors[a].name;
        const std::string& nb = file.tensors[b].name;
        const int la = layer_of(na), lb = layer_of(nb);
        return la != lb ? la < lb : na < nb;
    });

    plan.tensors.resize(file.tensors.size());
    Counters counters;
    // Fallbacks grouped by (chosen, used, row length): one note per kind, not per layer.
    struct Fallback { int count = 0; std::string first; };
    std::map<std::tuple<int, int, int64_t>, Fallback> fallbacks;
    for (size_t i : order) {
        const gguf::TensorInfo& t = file.tensors[i];
        TensorQuantization& q = plan.tensors[i];
        q.from = q.to = t.type;
        if (is_convertible(t)) {
            q.to = quantized ? mix_type(ft, base, facts, category_of(t.name), t, counters) : base;
            if (quantized && t.ne[0] % quant::block_size(q.to) != 0) {
                const QuantType chosen = q.to;
                q.to = fallback_type(chosen, t.ne[0]);
                q.fallback = true;
                Fallback& f = fallbacks[{(int)chosen, (int)q.to, t.ne[0]}];
                if (f.count++ == 0) f.first = t.name;
            }
        }
        q.n_bytes = q.to == t.type ? t.n_bytes : (uint64_t)(t.n_elements() / quant::block_size(q.to)) * quant::type_size(q.to);
        plan.tensor_bytes += q.n_bytes;
        plan.file_bytes += padded(q.n_bytes, file.alignment);
    }
    plan.file_bytes += file.data_offset;
    for (const auto& [key, f] : fallbacks) {
        const QuantType chosen = (QuantType)std::get<0>(key), used = (QuantType)std::get<1>(key);
        plan.notes.push_back(strformat("%d tensor%s with rows of %lld values (not a multiple of %s's block of %lld) "
                                       "stored as %s (first: %s)",
                                       f.count, f.count == 1 ? "" : "s", (long long)std::get<2>(key),
                                       type_upper(chosen).c_str(), (long long)quant::block_size(chosen),
                                       type_upper(used).c_str(), f.first.c_str()));
    }
    return plan;
}

Status quantize_gguf(const std::string& in_path, const std::string& out_path, const QuantizeOptions& opt) {
    HEARTH_ASSIGN(std::shared_ptr<gguf::GgufFile> file, gguf::open_gguf(in_path));
    auto planned = plan_quantize(*file, opt.type);
    if (!planned.ok()) return planned.status();
    const QuantizePlan& plan = planned.value();

    // Every conversion must be possible before the output file exists.
    std::vector<std::string> requantized;
    int64_t max_row = 0;
    for (size_t i = 0; i < file->tensors.size(); ++i) {
        const gguf::TensorInfo& t = file->tensors[i];
        const TensorQuantization& q = plan.tensors[i];
        if (q.to == q.from) continue;
        const std::string where = in_path + ": tensor " + t.name;
        if (!quant::traits(q.from).dequantize_row)
            return error(StatusCode::unsupported, strformat("%s: hearth cannot read %s tensors", where.c_str(),
                                                            type_upper(q.from).c_str()));
        if (!quant::traits(q.to).quantize_row)
            return error(StatusCode::internal, where + ": no quantizer for " + type_upper(q.to));
        if (!is_float_type(q.from)) {
            if (!opt.allow_requantize)
                return error(StatusCode::invalid_argument,
                             strformat("%s is already quantized (%s): requantizing it to %s would compound the "
                                       "rounding of both types; quantize from an F16, BF16 or F32 model",
                                       where.c_str(), type_upper(q.from).c_str(), plan.target.name.c_str()));
            requantized.push_back(t.name + " " + type_upper(q.from) + " -> " + type_upper(q.to));
        }
        max_row = std::max(max_row, t.ne[0]);
    }
    if (opt.on_note) {
        for (const std::string& n : plan.notes) opt.on_note(n);
        if (!requantized.empty())
            opt.on_note(strformat("%zu already-quantized tensor%s requantized (quality is lower than quantizing the "
                                  "original weights), first: %s",
                                  requantized.size(), requantized.size() == 1 ? "" : "s", requantized[0].c_str()));
    }

    gguf::GgufWriter writer(file->alignment);
    for (const auto& [key, value] : file->meta.entries()) {
        if (key.rfind("split.", 0) == 0) continue;  // the output is one file
        writer.set(key, value);
    }
    writer.set("general.quantization_version", gguf::Value::make_u32(2));  // ggml's GGML_QNT_VERSION
    writer.set("general.file_type", gguf::Value::make_u32(plan.target.file_type));

    ThreadPool pool(opt.n_threads);
    std::vector<std::vector<float>> scratch((size_t)pool.n_threads(), std::vector<float>((size_t)max_row));
    Progress progress;
    progress.fn = &opt.progress;
    progress.total = (int64_t)plan.tensor_bytes;
    for (size_t i = 0; i < file->tensors.size(); ++i) {
        const gguf::TensorInfo* t = &file->tensors[i];
        const QuantType to = plan.tensors[i].to;
        std::vector<int64_t> ne(t->ne, t->ne + t->n_dims);
        auto fill = [t, to, &pool, &scratch, &progress](std::span<std::byte> dst) -> Status {
            if (to == t->type) {
                std::memcpy(dst.data(), t->data, dst.size());
                progress.add((int64_t)dst.size());
            } else {
                HEARTH_TRY(convert_tensor(*t, to, dst, pool, scratch, progress));
            }
            release_pages(t->data, t->n_bytes);
            return {};
        };
        HEARTH_TRY(writer.add_tensor_lazy(t->name, to, std::move(ne), std::move(fill)));
    }
    Status st = writer.write_file(out_path);
    if (!st.ok()) return st.with_context("quantizing " + in_path + " to " + out_path);
    return {};
}

}  // namespace hearth::store
