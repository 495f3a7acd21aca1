// LoRA test fixtures shared by the model and store tests: a tiny random F32 base model
// (`hearth synth`'s llama-tiny), random LoRA adapter GGUFs for it in llama.cpp's layout
// (model/lora.h), and the "merged" model whose F32 weights are W + scale * B·A computed densely
// (in double) from the same numbers: base + adapter at run time must give that model's logits.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "gguf/gguf.h"
#include "model/model.h"
#include "model/session.h"
#include "model/synth.h"
#include "quant/types.h"

namespace hearth::test {

// llama-tiny ("hearth synth --preset llama-tiny --type F32": 2 layers, n_embd 256, vocab 512,
// tied output) written to `path`. untied_output adds a random output.weight, so output and
// token_embd are separate matrices. Returns false (with a test failure) on error.
inline bool write_tiny_base(const std::string& path, bool untied_output = false,
                            const std::string& preset = "llama-tiny") {
    model::SynthOptions o;
    auto p = model::find_synth_preset(preset, "");
    EXPECT_TRUE(p.ok()) << p.status().message();
    if (!p.ok()) return false;
    o.config = *p;
    o.type = *model::parse_synth_type("F32");
    o.seed = 7;
    o.n_threads = 2;
    auto plan = model::plan_synth(o);
    EXPECT_TRUE(plan.ok()) << plan.status().message();
    if (!plan.ok()) return false;
    auto size = model::write_synth(o, *plan, path);
    EXPECT_TRUE(size.ok()) << size.status().message();
    if (!size.ok() || !untied_output) return size.ok();
    // Copy with an output.weight: N(0, 1/sqrt(n_embd)), as synth makes untied outputs.
    auto src = gguf::open_gguf(path);
    EXPECT_TRUE(src.ok()) << src.status().message();
    if (!src.ok()) return false;
    gguf::GgufWriter w;
    for (const auto& [k, v] : (*src)->meta.entries()) w.set(k, v);
    const gguf::TensorInfo* embd = (*src)->find_tensor("token_embd.weight");
    for (const gguf::TensorInfo& t : (*src)->tensors)
        EXPECT_TRUE(w.add_tensor(t.name, t.type, std::vector<int64_t>(t.ne, t.ne + t.n_dims), std::span(t.data, t.n_bytes)).ok());
    std::mt19937 rng(11);
    std::normal_distribution<float> nd(0.0f, 1.0f / std::sqrt((float)embd->ne[0]));
    std::vector<float> out(embd->ne[0] * embd->ne[1]);
    for (float& x : out) x = nd(rng);
    EXPECT_TRUE(w.add_tensor("output.weight", quant::QuantType::f32, {embd->ne[0], embd->ne[1]},
                             std::as_bytes(std::span(out))).ok());
    src->reset();
    const Status st = w.write_file(path);
    EXPECT_TRUE(st.ok()) << st.message();
    return st.ok();
}

// One adapted tensor: the factors as stored (GGUF order), as the values the file holds.
struct LoraPair {
    std::string name;
    int64_t rank = 0;
    std::vector<float> a, b;  // lora_a, lora_b values in storage order (dequantized when quantized)
    std::vector<int64_t> a_ne, b_ne;
};

struct LoraSpec {
    std::string path;
    float scale = 1.0f;
    std::vector<LoraPair> pairs;
};

struct LoraOptions {
    int64_t rank = 8;
    float alpha = 16.0f;  // scale alpha / rank = 2
    uint64_t seed = 1;
    quant::QuantType type = quant::QuantType::f32;
    std::string arch;     // "": the base's
    std::string general_type = "adapter";  // "": no general.type key
    float a_sd = 0.0f;    // 0: 1/sqrt(n_in)
    float b_sd = 0.02f;
};

// Bytes of `v` stored as `type` (f32, f16, bf16, q8_0), and `v` replaced by what they hold.
inline std::vector<std::byte> store_as(quant::QuantType type, std::vector<float>& v, int64_t row) {
    const auto& tr = quant::traits(type);
    const int64_t rows = (int64_t)v.size() / row;
    const size_t rb = quant::row_size(type, row);
    std::vector<std::byte> bytes(rb * rows);
    for (int64_t r = 0; r < rows; ++r) {
        tr.quantize_row(v.data() + r * row, bytes.data() + r * rb, row);
        tr.dequantize_row(bytes.data() + r * rb, v.data() + r * row, row);
    }
    return bytes;
}

// Writes a LoRA adapter for `targets` (base tensor names of `base`) with random factors.
// token_embd.weight gets llama.cpp's flipped pair (lora_a [rank, n_vocab], lora_b [rank, n_embd]).
inline LoraSpec write_lora(const std::string& path, const gguf::GgufFile& base, const std::vector<std::string>& targets,
                           const LoraOptions& o = {}) {
    LoraSpec spec;
    spec.path = path;
    spec.scale = o.alpha != 0.0f ? o.alpha / (float)o.rank : 1.0f;
    gguf::GgufWriter w;
    w.set("general.architecture", gguf::Value::make_string(o.arch.empty() ? base.architecture() : o.arch));
    if (!o.general_type.empty()) w.set("general.type", gguf::Value::make_string(o.general_type));
    w.set("adapter.type", gguf::Value::make_string("lora"));
    if (o.alpha != 0.0f) w.set("adapter.lora.alpha", gguf::Value::make_f32(o.alpha));
    std::mt19937 rng((uint32_t)o.seed);
    for (const std::string& name : targets) {
        const gguf::TensorInfo* t = base.find_tensor(name);
        EXPECT_NE(t, nullptr) << name;
        if (!t) continue;
        LoraPair p;
        p.name = name;
        p.rank = o.rank;
        const int64_t n_in = t->ne[0], n_out = t->ne[1];
        const bool flipped = name == "token_embd.weight";
        p.a_ne = flipped ? std::vector<int64_t>{o.rank, n_out} : std::vector<int64_t>{n_in, o.rank};
        p.b_ne = flipped ? std::vector<int64_t>{o.rank, n_in} : std::vector<int64_t>{o.rank, n_out};
        std::normal_distribution<float> na(0.0f, o.a_sd > 0 ? o.a_sd : 1.0f / std::sqrt((float)n_in));
        std::normal_distribution<float> nb(0.0f, o.b_sd);
        p.a.resize(p.a_ne[0] * p.a_ne[1]);
        p.b.resize(p.b_ne[0] * p.b_ne[1]);
        for (float& x : p.a) x = na(rng);
        for (float& x : p.b) x = nb(rng);
        auto ab = store_as(o.type, p.a, p.a_ne[0]);
        auto bb = store_as(o.type, p.b, p.b_ne[0]);
        EXPECT_TRUE(w.add_tensor(name + ".lora_a", o.type, p.a_ne, ab).ok()) << name;
        EXPECT_TRUE(w.add_tensor(name + ".lora_b", o.type, p.b_ne, bb).ok()) << name;
        spec.pairs.push_back(std::move(p));
    }
    const Status st = w.write_file(path);
    EXPECT_TRUE(st.ok()) << st.message();
    return spec;
}

// W (n_out rows of n_in, f32) += scale * B·A of the pair, in double.
inline void add_delta(const LoraPair& p, float scale, std::vector<float>& W, int64_t n_in, int64_t n_out) {
    const int64_t R = p.rank;
    const bool flipped = p.name == "token_embd.weight";
    for (int64_t o = 0; o < n_out; ++o)
        for (int64_t i = 0; i < n_in; ++i) {
            double s = 0.0;
            for (int64_t r = 0; r < R; ++r)
                s += flipped ? (double)p.a[o * R + r] * p.b[i * R + r]   // a[v][r] * b[e][r]
                             : (double)p.b[o * R + r] * p.a[r * n_in + i];  // B[o][r] * A[r][i]
            W[o * n_in + i] = (float)((double)W[o * n_in + i] + scale * s);
        }
}

// The base with every adapted tensor replaced by W + sum of scale * B·A (F32), others copied.
inline bool write_merged(const std::string& path, const gguf::GgufFile& base, const std::vector<LoraSpec>& specs) {
    gguf::GgufWriter w;
    for (const auto& [k, v] : base.meta.entries()) w.set(k, v);
    for (const gguf::TensorInfo& t : base.tensors) {
        const std::vector<int64_t> ne(t.ne, t.ne + t.n_dims);
        std::vector<float> W;
        for (const LoraSpec& s : specs)
            for (const LoraPair& p : s.pairs) {
                if (p.name != t.name) continue;
                if (W.empty()) {
                    W.resize(t.n_elements());
                    const size_t rb = quant::row_size(t.type, t.ne[0]);
                    for (int64_t r = 0; r < t.n_rows(); ++r)
                        quant::traits(t.type).dequantize_row(t.data + r * rb, W.data() + r * t.ne[0], t.ne[0]);
                }
                add_delta(p, s.scale, W, t.ne[0], t.ne[1]);
            }
        const Status st = W.empty() ? w.add_tensor(t.name, t.type, ne, std::span(t.data, t.n_bytes))
                                    : w.add_tensor(t.name, quant::QuantType::f32, ne, std::as_bytes(std::span(W)));
        EXPECT_TRUE(st.ok()) << t.name << ": " << st.message();
    }
    const Status st = w.write_file(path);
    EXPECT_TRUE(st.ok()) << st.message();
    return st.ok();
}

inline const std::vector<int32_t>& lora_test_tokens() {
    static const std::vector<int32_t> kTokens = {1, 17, 300, 42, 7, 511, 99, 256, 3, 128};
    return kTokens;
}

// All-token logits [n][n_vocab] of lora_test_tokens() through `model_path` with `adapters`
// (f32 KV cache: no rounding between the two models compared). Empty on error, with the
// status in *err when given, else a test failure.
inline std::vector<float> lora_logits(const std::string& model_path, const std::vector<std::string>& adapters,
                                      Status* err = nullptr, std::string* placement_note = nullptr) {
    auto fail = [&](const Status& s) {
        if (err) *err = s;
        else ADD_FAILURE() << s.message();
        return std::vector<float>{};
    };
    auto file = gguf::open_gguf(model_path);
    if (!file.ok()) return fail(file.status());
    model::LoadOptions lo{2};
    lo.adapters = adapters;
    auto m = model::load_model(*file, lo);
    if (!m.ok()) return fail(m.status());
    if (placement_note) *placement_note = (*m)->placement_note();
    auto s = model::Session::create(**m, 64, 16, quant::QuantType::f32);
    if (!s.ok()) return fail(s.status());
    std::vector<float> logits;
    if (Status st = s->eval(lora_test_tokens(), true, logits); !st.ok()) return fail(st);
    return logits;
}

inline double max_abs_diff(const std::vector<float>& x, const std::vector<float>& y) {
    EXPECT_EQ(x.size(), y.size());
    double m = 0.0;
    for (size_t i = 0; i < std::min(x.size(), y.size()); ++i) m = std::max(m, (double)std::fabs(x[i] - y[i]));
    return m;
}

}  // namespace hearth::test
