// store::convert_hf_checkpoint round trips: each shared test model (a GGUF made by llama.cpp's
// tooling) is written back out as the Hugging Face checkpoint it would have come from
// (config.json from its metadata, tokenizer.json / tokenizer_config.json from its vocabulary,
// tensors under their HF names in safetensors, q/k rows of llama in HF's rotate-half order,
// experts as separate or fused tensors, one file or shards with an index), imported again, and
// compared with the original: the same tensors (names, shapes, types, bytes), the same
// metadata, the same tokenization and the same logits. The llama q/k permutation is also checked
// against its meaning (HF's rotate-half RoPE on HF rows equals GGUF's adjacent-pair RoPE on
// the converted rows), which a round trip alone cannot show; full real vocabularies are run
// through the tokenizer conversion and checked against llama.cpp's tokenizer test vectors. Then
// every error case.
//
// Longer than the usual 800 lines: the checkpoint writer (GGUF -> HF files) is the fixture of
// every test here and is only meaningful next to them.
#include "store/convert.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <sstream>
#include <tuple>

#include "base/fp16.h"
#include "gguf/gguf.h"
#include "model/model.h"
#include "model/session.h"
#include "quant/types.h"
#include "store/hf_tokenizer.h"
#include "store/safetensors.h"
#include "support/testdata.h"
#include "tokenizer/tokenizer.h"

namespace hearth::store {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;
using quant::QuantType;

// ---------------------------------------------------------------------------------------
// Writing a checkpoint

// A fresh folder under the system temp dir, removed with the object.
struct TempDir {
    fs::path path;
    explicit TempDir(const std::string& tag) {
        path = fs::temp_directory_path() / ("hearth_convert_" + std::to_string(getpid()) + "_" + tag);
        fs::remove_all(path);
        fs::create_directories(path);
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
    std::string str(const std::string& rel = "") const { return rel.empty() ? path.string() : (path / rel).string(); }
};

void write_text(const fs::path& p, const std::string& text) {
    std::ofstream f(p, std::ios::binary);
    f << text;
}

void write_bytes(const fs::path& p, std::span<const std::byte> bytes) {
    std::ofstream f(p, std::ios::binary);
    f.write(reinterpret_cast<const char*>(bytes.data()), (std::streamsize)bytes.size());
}

// One HF tensor to write: bytes owned here.
struct HfTensor {
    std::string name;
    StDtype dtype = StDtype::f32;
    std::vector<int64_t> shape;  // PyTorch order
    std::vector<std::byte> data;
};

std::vector<float> to_f32(const gguf::TensorInfo& t) {
    std::vector<float> out((size_t)t.n_elements());
    const auto& tr = quant::traits(t.type);
    const size_t row_bytes = quant::row_size(t.type, t.ne[0]);
    for (int64_t r = 0; r < t.n_rows(); ++r)
        tr.dequantize_row(t.data + r * row_bytes, out.data() + r * t.ne[0], t.ne[0]);
    return out;
}

std::vector<std::byte> encode(std::span<const float> v, StDtype dt) {
    std::vector<std::byte> out(v.size() * st_dtype_size(dt));
    for (size_t i = 0; i < v.size(); ++i) {
        if (dt == StDtype::f32) {
            std::memcpy(out.data() + 4 * i, &v[i], 4);
        } else {
            const uint16_t h = dt == StDtype::f16 ? f32_to_fp16(v[i]) : f32_to_bf16(v[i]);
            std::memcpy(out.data() + 2 * i, &h, 2);
        }
    }
    return out;
}

// A GGUF tensor's bytes as dtype `dt` (a copy when the types agree, else through f32).
std::vector<std::byte> tensor_bytes(const gguf::TensorInfo& t, StDtype dt) {
    const bool same = (t.type == QuantType::f32 && dt == StDtype::f32) || (t.type == QuantType::f16 && dt == StDtype::f16) ||
                      (t.type == QuantType::bf16 && dt == StDtype::bf16);
    if (same) return {t.data, t.data + t.n_bytes};
    return encode(to_f32(t), dt);
}

// HF q_proj/k_proj layout from GGUF llama rows: within each head, GGUF interleaves the two
// rotated halves (row 2i + j), HF stacks them (row j * hd/2 + i).
std::vector<std::byte> unpermute_rows(const std::vector<std::byte>& gguf_rows, int64_t n_rows, int64_t n_heads) {
    const size_t row_bytes = gguf_rows.size() / (size_t)n_rows;
    const int64_t hd = n_rows / n_heads;
    std::vector<std::byte> out(gguf_rows.size());
    for (int64_t g = 0; g < n_rows; ++g) {
        const int64_t h = g / hd, k = g % hd;
        const int64_t hf = h * hd + (k % 2) * (hd / 2) + k / 2;
        std::memcpy(out.data() + hf * row_bytes, gguf_rows.data() + g * row_bytes, row_bytes);
    }
    return out;
}

enum class TokStyle {
    llama3,  // BOS added by the post_processor template, merges as pairs, ignore_merges
    qwen,    // bos_token null (config.json's bos_token_id), explicit add_bos_token false
    spm,     // SentencePiece-style BPE with byte fallback (Llama 2 / Mistral / Mixtral)
};

struct Case {
    const char* model;                // testdata models/<model>.gguf
    const char* hf_arch;
    TokStyle tok;
    StDtype dtype;                    // of the safetensors written
    const char* out_type;             // convert to
    int n_shards = 1;                 // > 1: model-0000i-of-0000n.safetensors + index
    bool fused_experts = false;       // transformers-5 expert layout
    const char* extra_config = "{}";  // merged into config.json
};

std::string gguf_string(const gguf::Metadata& m, const std::string& k) {
    auto r = m.get_string(k);
    return r.ok() ? r.value() : std::string();
}

int64_t gguf_int(const gguf::Metadata& m, const std::string& k, int64_t def = -1) {
    auto r = m.get_int_or(k, def);
    return r.ok() ? r.value() : def;
}

// HF name of a GGUF tensor (per-expert tensors are handled by the caller).
std::string hf_name(const std::string& g, bool mixtral) {
    static const std::map<std::string, std::string> kTop = {
        {"token_embd.weight", "model.embed_tokens.weight"},
        {"output_norm.weight", "model.norm.weight"},
        {"output.weight", "lm_head.weight"},
    };
    if (auto it = kTop.find(g); it != kTop.end()) return it->second;
    const size_t dot = g.find('.', 4);
    const std::string layer = g.substr(4, dot - 4), rest = g.substr(dot + 1);
    static const std::map<std::string, std::string> kLayer = {
        {"attn_norm.weight", "input_layernorm.weight"},   {"ffn_norm.weight", "post_attention_layernorm.weight"},
        {"attn_q.weight", "self_attn.q_proj.weight"},     {"attn_q.bias", "self_attn.q_proj.bias"},
        {"attn_k.weight", "self_attn.k_proj.weight"},     {"attn_k.bias", "self_attn.k_proj.bias"},
        {"attn_v.weight", "self_attn.v_proj.weight"},     {"attn_v.bias", "self_attn.v_proj.bias"},
        {"attn_output.weight", "self_attn.o_proj.weight"},
        {"attn_q_norm.weight", "self_attn.q_norm.weight"}, {"attn_k_norm.weight", "self_attn.k_norm.weight"},
        {"ffn_gate.weight", "mlp.gate_proj.weight"},      {"ffn_up.weight", "mlp.up_proj.weight"},
        {"ffn_down.weight", "mlp.down_proj.weight"},
    };
    if (rest == "ffn_gate_inp.weight") return "model.layers." + layer + (mixtral ? ".block_sparse_moe.gate.weight" : ".mlp.gate.weight");
    auto it = kLayer.find(rest);
    return it == kLayer.end() ? "" : "model.layers." + layer + "." + it->second;
}

std::vector<HfTensor> hf_tensors(const gguf::GgufFile& src, const Case& c) {
    const gguf::Metadata& m = src.meta;
    const std::string arch = src.architecture();
    const bool mixtral = std::string(c.hf_arch) == "MixtralForCausalLM";
    const bool permute = arch == "llama";
    const int64_t n_head = gguf_int(m, arch + ".attention.head_count");
    const int64_t n_head_kv = gguf_int(m, arch + ".attention.head_count_kv", n_head);
    std::vector<HfTensor> out;
    for (const gguf::TensorInfo& t : src.tensors) {
        if (t.name == "rope_freqs.weight") continue;  // HF has the rope_scaling config instead
        std::vector<int64_t> shape(t.ne, t.ne + t.n_dims);
        std::reverse(shape.begin(), shape.end());
        const StDtype dt = t.n_dims == 1 ? StDtype::f32 : c.dtype;
        std::vector<std::byte> bytes = tensor_bytes(t, dt);
        const size_t exps = t.name.find("_exps.weight");
        if (exps != std::string::npos) {
            const std::string layer = t.name.substr(4, t.name.find('.', 4) - 4);
            const std::string kind = t.name.substr(t.name.find("ffn_") + 4, exps - t.name.find("ffn_") - 4);  // gate/up/down
            const int64_t n_exp = shape[0];
            const size_t per = bytes.size() / (size_t)n_exp;
            if (c.fused_experts) {
                if (kind == "down") {
                    out.push_back({"model.layers." + layer + ".mlp.experts.down_proj", dt, shape, bytes});
                } else {  // gate_up_proj [E, 2 ff, d]: expert e's gate rows, then its up rows
                    const std::string fused = "model.layers." + layer + ".mlp.experts.gate_up_proj";
                    auto it = std::find_if(out.begin(), out.end(), [&](const HfTensor& h) { return h.name == fused; });
                    if (it == out.end()) {
                        out.push_back({fused, dt, {shape[0], 2 * shape[1], shape[2]}, std::vector<std::byte>(2 * bytes.size())});
                        it = out.end() - 1;
                    }
                    for (int64_t e = 0; e < n_exp; ++e)
                        std::memcpy(it->data.data() + (2 * e + (kind == "up")) * per, bytes.data() + e * per, per);
                }
                continue;
            }
            static const std::map<std::string, std::string> kMixtral = {{"gate", "w1"}, {"down", "w2"}, {"up", "w3"}};
            for (int64_t e = 0; e < n_exp; ++e) {
                const std::string name = mixtral ? "model.layers." + layer + ".block_sparse_moe.experts." + std::to_string(e) +
                                                       "." + kMixtral.at(kind) + ".weight"
                                                 : "model.layers." + layer + ".mlp.experts." + std::to_string(e) + "." + kind +
                                                       "_proj.weight";
                out.push_back({name, dt, {shape[1], shape[2]}, {bytes.begin() + e * per, bytes.begin() + (e + 1) * per}});
            }
            continue;
        }
        const std::string name = hf_name(t.name, mixtral);
        EXPECT_FALSE(name.empty()) << "no HF name for " << t.name;
        if (permute && t.name.find(".attn_q.") != std::string::npos) bytes = unpermute_rows(bytes, shape[0], n_head);
        if (permute && t.name.find(".attn_k.") != std::string::npos) bytes = unpermute_rows(bytes, shape[0], n_head_kv);
        out.push_back({name, dt, shape, std::move(bytes)});
    }
    return out;
}

// The Split regexes the real Llama 3 and Qwen2 tokenizer.json files carry.
const char* kLlama3Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const char* kQwen2Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

json byte_level_pre(const char* regex) {
    return {{"type", "Sequence"},
            {"pretokenizers",
             {{{"type", "Split"}, {"pattern", {{"Regex", regex}}}, {"behavior", "Isolated"}, {"invert", false}},
              {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", false}}}}};
}

json template_processing(const std::string& bos, int64_t bos_id) {
    return {{"type", "TemplateProcessing"},
            {"single", {{{"SpecialToken", {{"id", bos}, {"type_id", 0}}}}, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
            {"pair",
             {{{"SpecialToken", {{"id", bos}, {"type_id", 0}}}},
              {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
              {{"SpecialToken", {{"id", bos}, {"type_id", 1}}}},
              {{"Sequence", {{"id", "B"}, {"type_id", 1}}}}}},
            {"special_tokens", {{bos, {{"id", bos}, {"ids", {bos_id}}, {"tokens", {bos}}}}}}};
}

// UTF-8 code point boundaries of s (excluding 0 and size).
std::vector<size_t> char_splits(const std::string& s) {
    std::vector<size_t> out;
    for (size_t i = 1; i < s.size(); ++i)
        if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80) out.push_back(i);
    return out;
}

// tokenizer.json, tokenizer_config.json and the config.json special ids of a GGUF vocabulary.
struct TokFiles {
    json tokenizer, tokenizer_config, config_ids;
};

TokFiles tokenizer_files(const gguf::Metadata& m, TokStyle style, const json& pre = nullptr) {
    const auto tokens = m.get_string_array("tokenizer.ggml.tokens").value();
    const auto types = m.get_int_array("tokenizer.ggml.token_type").value();
    const int64_t bos = gguf_int(m, "tokenizer.ggml.bos_token_id"), eos = gguf_int(m, "tokenizer.ggml.eos_token_id");
    const int64_t pad = gguf_int(m, "tokenizer.ggml.padding_token_id");
    TokFiles f;
    json vocab = json::object(), added = json::array();
    for (size_t i = 0; i < tokens.size(); ++i) {
        // Padding rows a model has beyond its tokenizer (typed UNKNOWN by old SPM conversions).
        if (style == TokStyle::spm && types[i] == 2 && tokens[i].rfind("[PAD", 0) == 0) continue;
        const bool is_added = types[i] == 3 || types[i] == 4 || (style == TokStyle::spm && types[i] == 2);
        if (!is_added || style == TokStyle::spm) vocab[tokens[i]] = i;  // SPM vocabularies list their specials too
        if (is_added)
            added.push_back({{"id", i}, {"content", tokens[i]}, {"single_word", false}, {"lstrip", false}, {"rstrip", false},
                             {"normalized", false}, {"special", types[i] != 4}});
    }
    json model = {{"type", "BPE"}, {"dropout", nullptr}, {"continuing_subword_prefix", nullptr}, {"end_of_word_suffix", nullptr},
                  {"fuse_unk", style == TokStyle::spm}, {"vocab", vocab}};
    json tcfg = json::object();
    if (m.has("tokenizer.chat_template")) tcfg["chat_template"] = gguf_string(m, "tokenizer.chat_template");
    if (style == TokStyle::spm) {
        // HF's SentencePiece conversion: every split of a piece into two pieces is a merge,
        // ranked by the piece's score (best first), then by the halves' ids.
        const auto scores = m.get_f32_array("tokenizer.ggml.scores").value();
        struct Merge {
            float score;
            int64_t l, r;
            std::string text;
        };
        std::vector<Merge> merges;
        for (size_t i = 0; i < tokens.size(); ++i) {
            if (types[i] != 1) continue;
            std::vector<Merge> local;
            for (size_t k : char_splits(tokens[i])) {
                auto l = vocab.find(tokens[i].substr(0, k)), r = vocab.find(tokens[i].substr(k));
                if (l == vocab.end() || r == vocab.end()) continue;
                local.push_back({scores[i], l->get<int64_t>(), r->get<int64_t>(), tokens[i].substr(0, k) + " " + tokens[i].substr(k)});
            }
            std::sort(local.begin(), local.end(), [](const Merge& a, const Merge& b) { return std::tie(a.l, a.r) < std::tie(b.l, b.r); });
            merges.insert(merges.end(), local.begin(), local.end());
        }
        std::stable_sort(merges.begin(), merges.end(), [](const Merge& a, const Merge& b) { return a.score > b.score; });
        json list = json::array();
        for (const Merge& mg : merges) list.push_back(mg.text);
        model["merges"] = list;
        model["unk_token"] = tokens[(size_t)gguf_int(m, "tokenizer.ggml.unknown_token_id", 0)];
        model["byte_fallback"] = true;
        model["ignore_merges"] = false;
        f.tokenizer = {{"version", "1.0"}, {"added_tokens", added},
                       {"normalizer", {{"type", "Sequence"}, {"normalizers", {{{"type", "Prepend"}, {"prepend", "\xE2\x96\x81"}},
                                                                              {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\xE2\x96\x81"}}}}}},
                       {"pre_tokenizer", nullptr},
                       {"post_processor", template_processing(tokens[(size_t)bos], bos)},
                       {"decoder", {{"type", "Sequence"}, {"decoders", {{{"type", "Replace"}, {"pattern", {{"String", "\xE2\x96\x81"}}}, {"content", " "}},
                                                                        {{"type", "ByteFallback"}}, {{"type", "Fuse"}}, {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}}},
                       {"model", model}};
        tcfg["add_bos_token"] = m.get_bool_or("tokenizer.ggml.add_bos_token", true).value();
        tcfg["add_eos_token"] = m.get_bool_or("tokenizer.ggml.add_eos_token", false).value();
        tcfg["bos_token"] = {{"__type", "AddedToken"}, {"content", tokens[(size_t)bos]}, {"lstrip", false}, {"normalized", false}};
        tcfg["eos_token"] = tokens[(size_t)eos];
        tcfg["unk_token"] = model["unk_token"];
        tcfg["pad_token"] = nullptr;
        tcfg["legacy"] = true;
        f.tokenizer_config = tcfg;
        f.config_ids = {{"bos_token_id", bos}, {"eos_token_id", eos}};
        return f;
    }
    const auto merges = m.get_string_array("tokenizer.ggml.merges").value();
    json mlist = json::array();
    for (const std::string& mg : merges) {
        if (style == TokStyle::llama3) {  // transformers >= 4.45 pairs
            const size_t sp = mg.find(' ');
            mlist.push_back({mg.substr(0, sp), mg.substr(sp + 1)});
        } else {
            mlist.push_back(mg);
        }
    }
    model["merges"] = mlist;
    model["unk_token"] = nullptr;
    model["byte_fallback"] = false;
    model["ignore_merges"] = style == TokStyle::llama3;
    json decoder = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}};
    if (style == TokStyle::llama3) {
        f.tokenizer = {{"version", "1.0"}, {"added_tokens", added}, {"normalizer", nullptr},
                       {"pre_tokenizer", byte_level_pre(kLlama3Regex)},
                       {"post_processor", {{"type", "Sequence"}, {"processors", {{{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", false}, {"use_regex", true}},
                                                                                template_processing(tokens[(size_t)bos], bos)}}}},
                       {"decoder", decoder}, {"model", model}};
        tcfg["bos_token"] = tokens[(size_t)bos];
        tcfg["eos_token"] = tokens[(size_t)eos];
        tcfg["clean_up_tokenization_spaces"] = true;
        tcfg["tokenizer_class"] = "PreTrainedTokenizerFast";
        f.config_ids = {{"bos_token_id", bos}, {"eos_token_id", json::array({bos + 1, eos})}};  // a list: skipped
    } else {
        f.tokenizer = {{"version", "1.0"}, {"added_tokens", added}, {"normalizer", {{"type", "NFC"}}},
                       {"pre_tokenizer", pre.is_null() ? byte_level_pre(kQwen2Regex) : pre},
                       {"post_processor", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", false}, {"use_regex", false}}},
                       {"decoder", decoder}, {"model", model}};
        tcfg["add_bos_token"] = false;
        tcfg["add_prefix_space"] = false;
        tcfg["bos_token"] = nullptr;
        tcfg["eos_token"] = tokens[(size_t)eos];
        if (pad >= 0) tcfg["pad_token"] = tokens[(size_t)pad];
        tcfg["errors"] = "replace";
        f.config_ids = {{"bos_token_id", bos}, {"eos_token_id", eos}};
    }
    f.tokenizer_config = tcfg;
    return f;
}

json hf_config(const gguf::GgufFile& src, const Case& c, const json& ids) {
    const gguf::Metadata& m = src.meta;
    const std::string a = src.architecture() + ".";
    const gguf::TensorInfo* embd = src.find_tensor("token_embd.weight");
    json cfg = {{"architectures", {c.hf_arch}},
                {"hidden_size", gguf_int(m, a + "embedding_length")},
                {"num_hidden_layers", gguf_int(m, a + "block_count")},
                {"num_attention_heads", gguf_int(m, a + "attention.head_count")},
                {"num_key_value_heads", gguf_int(m, a + "attention.head_count_kv")},
                {"intermediate_size", gguf_int(m, a + "feed_forward_length")},
                {"max_position_embeddings", gguf_int(m, a + "context_length")},
                {"rms_norm_eps", m.get_float(a + "attention.layer_norm_rms_epsilon").value()},
                {"rope_theta", m.get_float(a + "rope.freq_base").value()},
                {"vocab_size", embd->ne[1]},
                {"tie_word_embeddings", src.find_tensor("output.weight") == nullptr},
                {"torch_dtype", c.dtype == StDtype::f32 ? "float32" : c.dtype == StDtype::f16 ? "float16" : "bfloat16"},
                {"hidden_act", "silu"},
                {"transformers_version", "4.51.0"}};
    if (m.has(a + "attention.key_length")) cfg["head_dim"] = gguf_int(m, a + "attention.key_length");
    if (m.has(a + "expert_count")) {
        cfg[std::string(c.hf_arch) == "MixtralForCausalLM" ? "num_local_experts" : "num_experts"] = gguf_int(m, a + "expert_count");
        cfg["num_experts_per_tok"] = gguf_int(m, a + "expert_used_count");
    }
    if (m.has(a + "expert_feed_forward_length")) cfg["moe_intermediate_size"] = gguf_int(m, a + "expert_feed_forward_length");
    cfg.update(ids);
    cfg.update(json::parse(c.extra_config));
    return cfg;
}

// Writes the tensors as one model.safetensors or as n shards with an index.
void write_safetensors(const fs::path& dir, const std::vector<HfTensor>& tensors, int n_shards) {
    auto build = [](const std::vector<const HfTensor*>& part) {
        std::vector<StTensorData> v;
        for (const HfTensor* t : part) v.push_back({t->name, t->dtype, t->shape, t->data});
        auto bytes = build_safetensors(v, {{"format", "pt"}});
        EXPECT_TRUE(bytes.ok()) << bytes.status().message();
        return bytes.ok() ? bytes.value() : std::vector<std::byte>();
    };
    if (n_shards <= 1) {
        std::vector<const HfTensor*> all;
        for (const HfTensor& t : tensors) all.push_back(&t);
        write_bytes(dir / "model.safetensors", build(all));
        return;
    }
    json wm = json::object();
    size_t total = 0;
    for (int s = 0; s < n_shards; ++s) {
        const std::string name = "model-0000" + std::to_string(s + 1) + "-of-0000" + std::to_string(n_shards) + ".safetensors";
        std::vector<const HfTensor*> part;
        // Contiguous runs, as save_pretrained cuts shards by size.
        for (size_t i = tensors.size() * s / n_shards; i < tensors.size() * (s + 1) / n_shards; ++i) {
            part.push_back(&tensors[i]);
            wm[tensors[i].name] = name;
            total += tensors[i].data.size();
        }
        write_bytes(dir / name, build(part));
    }
    write_text(dir / "model.safetensors.index.json", json({{"metadata", {{"total_size", total}}}, {"weight_map", wm}}).dump(2));
}

void write_checkpoint(const gguf::GgufFile& src, const Case& c, const fs::path& dir) {
    const TokFiles tok = tokenizer_files(src.meta, c.tok);
    write_text(dir / "config.json", hf_config(src, c, tok.config_ids).dump(2));
    write_text(dir / "tokenizer.json", tok.tokenizer.dump(2));
    write_text(dir / "tokenizer_config.json", tok.tokenizer_config.dump(2));
    write_text(dir / "generation_config.json", R"({"do_sample": true})");
    write_safetensors(dir, hf_tensors(src, c), c.n_shards);
}

// ---------------------------------------------------------------------------------------
// Comparing

bool same_value(const gguf::Value& a, const gguf::Value& b) {
    if (a.type == gguf::ValueType::string || b.type == gguf::ValueType::string)
        return a.type == b.type && a.str == b.str;
    if (a.type == gguf::ValueType::array || b.type == gguf::ValueType::array) {
        if (a.type != b.type || a.items.size() != b.items.size()) return false;
        for (size_t i = 0; i < a.items.size(); ++i)
            if (!same_value(a.items[i], b.items[i])) return false;
        return true;
    }
    double x, y;
    return a.to_f64(x) && b.to_f64(y) && x == y;
}

// A GGUF whose tensors are the source's dequantized to F32 (for sources with no float file).
std::vector<std::byte> dequantized_copy(const gguf::GgufFile& src) {
    gguf::GgufWriter w;
    for (const auto& [k, v] : src.meta.entries()) w.set(k, v);
    w.set("general.file_type", gguf::Value::make_u32(0));
    for (const gguf::TensorInfo& t : src.tensors) {
        const std::vector<float> f = to_f32(t);
        EXPECT_TRUE(w.add_tensor(t.name, QuantType::f32, std::vector<int64_t>(t.ne, t.ne + t.n_dims),
                                 std::as_bytes(std::span(f)))
                        .ok());
    }
    return w.to_bytes();
}

std::vector<float> run_logits(std::shared_ptr<gguf::GgufFile> f, const std::vector<int32_t>& prompt) {
    auto m = model::load_model(f, model::LoadOptions{2});
    EXPECT_TRUE(m.ok()) << m.status().message();
    if (!m.ok()) return {};
    auto s = model::Session::create(*m.value(), 512, 32, QuantType::f32);
    EXPECT_TRUE(s.ok()) << s.status().message();
    std::vector<float> logits;
    const Status st = s->eval(prompt, true, logits);
    EXPECT_TRUE(st.ok()) << st.message();
    return logits;
}

const char* const kTokenizerTexts[] = {
    " Hello world",
    "Hello world",
    "The quick brown fox jumps over the lazy dog.",
    "it is the end of the test, or is it? (maybe)",
    "Hello, world! It's 2025: 3.14159 + 12345 = ?",
    "  leading spaces\n\n\ttabs and\r\nnewlines   ",
    "h\xC3\xA9llo w\xC3\xB6rld \xE2\x9C\x85 \xF0\x9F\xA6\x99 \xE6\x88\x91\xE6\x83\xB3",  // é ö ✅ 🦙 我想
    "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>",
    "<|im_start|>user\nhi<|im_end|>\n<think>\n</think>",
    "<s>[INST] hi [/INST]</s>",
    "",
};

class ConvertRoundTrip : public ::testing::TestWithParam<Case> {};

TEST_P(ConvertRoundTrip, SameTensorsTokenizerAndLogits) {
    const Case c = GetParam();
    TempDir tmp(std::string(c.model) + (c.n_shards > 1 ? "_sharded" : "") + (c.fused_experts ? "_fused" : ""));
    auto opened = gguf::open_gguf(hearth::test::testdata_path(std::string("models/") + c.model + ".gguf"));
    ASSERT_TRUE(opened.ok()) << opened.status().message();
    std::shared_ptr<gguf::GgufFile> ref = opened.value();
    std::vector<std::byte> ref_bytes;  // keeps a dequantized reference alive
    bool quantized = false;
    for (const auto& t : ref->tensors)
        quantized |= t.type != QuantType::f32 && t.type != QuantType::f16 && t.type != QuantType::bf16;
    if (quantized) {
        ref_bytes = dequantized_copy(*ref);
        auto parsed = gguf::parse_gguf(ref_bytes);
        ASSERT_TRUE(parsed.ok()) << parsed.status().message();
        ref = std::make_shared<gguf::GgufFile>(std::move(parsed).value());
    }

    const fs::path dir = tmp.path / "checkpoint";
    fs::create_directories(dir);
    write_checkpoint(*ref, c, dir);
    ASSERT_TRUE(is_hf_checkpoint(dir.string()));
    const std::string out = tmp.str("out.gguf");
    int64_t last_done = -1, last_total = -1;
    ConvertOptions opt;
    opt.out_type = c.out_type;
    opt.progress = [&](int64_t done, int64_t total) {
        EXPECT_GE(done, last_done);
        last_done = done, last_total = total;
    };
    const Status st = convert_hf_checkpoint(dir.string(), out, opt);
    ASSERT_TRUE(st.ok()) << st.message();
    EXPECT_EQ(last_done, last_total);
    EXPECT_EQ(last_total, (int64_t)fs::file_size(out));
    auto conv_r = gguf::open_gguf(out);
    ASSERT_TRUE(conv_r.ok()) << conv_r.status().message();
    std::shared_ptr<gguf::GgufFile> conv = conv_r.value();

    // Tensors: the same names, shapes, types and bytes (rope_freqs, recomputed from the rope
    // config in float32 as llama.cpp does, to the same values).
    EXPECT_EQ(conv->tensors.size(), ref->tensors.size());
    for (const gguf::TensorInfo& want : ref->tensors) {
        const gguf::TensorInfo* got = conv->find_tensor(want.name);
        ASSERT_NE(got, nullptr) << want.name;
        EXPECT_EQ(got->shape_string(), want.shape_string()) << want.name;
        EXPECT_EQ(got->type, want.type) << want.name;
        if (want.name == "rope_freqs.weight") {
            const std::vector<float> a = to_f32(*got), b = to_f32(want);
            for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i], b[i]) << i;
            continue;
        }
        ASSERT_EQ(got->n_bytes, want.n_bytes) << want.name;
        EXPECT_EQ(std::memcmp(got->data, want.data, want.n_bytes), 0) << want.name << " differs";
    }

    // Metadata: every key of the original, except the ones that describe the file rather than
    // the model and the two this converter derives differently (EOT: detected from its text by
    // the tokenizer, checked below; SPM scores: from merge ranks, checked by tokenizing).
    for (const auto& [k, v] : ref->meta.entries()) {
        if (k == "general.name" || k == "general.description" || k == "tokenizer.ggml.eot_token_id" ||
            k == "tokenizer.ggml.scores")
            continue;
        const gguf::Value* got = conv->meta.find(k);
        ASSERT_NE(got, nullptr) << "missing key " << k;
        EXPECT_TRUE(same_value(*got, v)) << "key " << k;
    }

    // Tokenizer: same vocabulary, attributes, specials and tokenization.
    auto tok_ref = tok::Tokenizer::from_gguf(*ref);
    auto tok_conv = tok::Tokenizer::from_gguf(*conv);
    ASSERT_TRUE(tok_ref.ok() && tok_conv.ok()) << tok_conv.status().message();
    const tok::Tokenizer& a = *tok_ref.value();
    const tok::Tokenizer& b = *tok_conv.value();
    ASSERT_EQ(b.n_vocab(), a.n_vocab());
    for (int32_t id = 0; id < a.n_vocab(); ++id) {
        ASSERT_EQ(b.token_text(id), a.token_text(id)) << id;
        ASSERT_EQ(b.token_attr(id), a.token_attr(id)) << id << " " << a.token_text(id);
    }
    EXPECT_EQ(b.bos(), a.bos());
    EXPECT_EQ(b.eos(), a.eos());
    EXPECT_EQ(b.eot(), a.eot());
    EXPECT_EQ(b.unk(), a.unk());
    EXPECT_EQ(b.pad(), a.pad());
    EXPECT_EQ(b.add_bos(), a.add_bos());
    EXPECT_EQ(b.add_eos(), a.add_eos());
    EXPECT_EQ(b.add_space_prefix(), a.add_space_prefix());
    EXPECT_EQ(b.eog_ids(), a.eog_ids());
    // SentencePiece vocabularies: tokenizer.json has no scores, only merges, and the converter
    // ranks tokens by the merge that makes them. The truncated test vocabularies lack most
    // single characters ("▁", "e", ...), so few of their pieces can be built by any merge
    // (HF's BPE would never produce the others, and the file cannot say where they rank).
    // Here: merge-built pieces keep the original score order exactly, and texts are compared
    // where the original tokenization uses only such pieces. HfTokenizerVocab below checks
    // full real vocabularies, where every piece is merge-built, against llama.cpp's vectors.
    std::set<int32_t> unreachable;
    if (c.tok == TokStyle::spm) {
        const json tj = json::parse(hearth::test::read_text_file((dir / "tokenizer.json").string()));
        std::set<std::string> built;
        for (const json& mg : tj["model"]["merges"]) {
            const std::string m = mg.get<std::string>();
            built.insert(m.substr(0, m.find(' ')) + m.substr(m.find(' ') + 1));
        }
        const auto ref_scores = ref->meta.get_f32_array("tokenizer.ggml.scores").value();
        const auto conv_scores = conv->meta.get_f32_array("tokenizer.ggml.scores").value();
        std::vector<int32_t> reach;
        for (int32_t id = 0; id < a.n_vocab(); ++id) {
            if (!(a.token_attr(id) & tok::kAttrNormal)) continue;
            if (built.count(a.token_text(id))) reach.push_back(id);
            else if (char_splits(a.token_text(id)).size() > 0) unreachable.insert(id);
        }
        ASSERT_GT(reach.size(), 10u);
        for (int32_t x : reach)
            for (int32_t y : reach)
                if (ref_scores[x] > ref_scores[y]) {
                    ASSERT_GT(conv_scores[x], conv_scores[y]) << a.token_text(x) << " / " << a.token_text(y);
                }
    }
    const std::string shared = hearth::test::read_text_file(hearth::test::testdata_path("prompts/shared.txt"));
    std::vector<std::string> texts(std::begin(kTokenizerTexts), std::end(kTokenizerTexts));
    texts.push_back(shared);
    int n_compared = 0;
    for (const std::string& text : texts) {
        for (bool special : {false, true}) {
            const auto x = b.encode(text, special, special), y = a.encode(text, special, special);
            if (std::any_of(y.begin(), y.end(), [&](int32_t id) { return unreachable.count(id) > 0; })) continue;
            ++n_compared;
            std::string px, py;
            for (int32_t id : x) px += "|" + b.token_text(id);
            for (int32_t id : y) py += "|" + a.token_text(id);
            EXPECT_EQ(x, y) << "'" << text << "'\n converted " << px << "\n original  " << py;
        }
    }
    EXPECT_GE(n_compared, c.tok == TokStyle::spm ? 2 : 20);

    // Logits of the shared prompt.
    const std::vector<int32_t> prompt = a.encode(shared, true, false);
    ASSERT_GT(prompt.size(), 10u);
    const std::vector<float> want = run_logits(ref, prompt), got = run_logits(conv, prompt);
    ASSERT_EQ(got.size(), want.size());
    ASSERT_FALSE(want.empty());
    double max_abs = 0.0;
    for (size_t i = 0; i < want.size(); ++i) max_abs = std::max(max_abs, (double)std::fabs(got[i] - want[i]));
    std::printf("[ %s -> %s ] %zu tensors, %zu prompt tokens, logits max-abs diff %.3g\n", c.model, c.out_type,
                conv->tensors.size(), prompt.size(), max_abs);
    EXPECT_LE(max_abs, 1e-5);
}

const Case kCases[] = {
    // Llama 3.2 style: tied embedding, llama3 rope scaling, byte-level BPE (llama-bpe).
    {"llama3-tiny.F16", "LlamaForCausalLM", TokStyle::llama3, StDtype::f16, "f16", 1, false,
     R"({"rope_scaling": {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
         "original_max_position_embeddings": 8192}})"},
    // The same in BF16, three shards, transformers-5 rope_parameters.
    {"llama3-tiny.BF16", "LlamaForCausalLM", TokStyle::llama3, StDtype::bf16, "bf16", 3, false,
     R"({"rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0, "low_freq_factor": 1.0,
         "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}})"},
    // F32 checkpoint narrowed to F16 on the way (exact: the weights are F16 values).
    {"llama3-tiny.F16", "LlamaForCausalLM", TokStyle::llama3, StDtype::f32, "auto", 1, false,
     R"({"torch_dtype": "float16", "rope_scaling": {"type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
         "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}})"},
    // Llama 2 SentencePiece vocabulary, untied output, no GQA.
    {"llama2-spm-tiny.F32", "LlamaForCausalLM", TokStyle::spm, StDtype::f32, "f32"},
    {"llama2-spm-tiny.F32", "MistralForCausalLM", TokStyle::spm, StDtype::f32, "f32", 2, false, R"({"sliding_window": null})"},
    // Mixtral: per-expert w1/w2/w3 stacked into 3-D, router F32.
    {"mixtral-tiny.F16", "MixtralForCausalLM", TokStyle::spm, StDtype::f16, "f16", 2},
    // Qwen2: q/k/v biases; F32 checkpoint to F16.
    {"qwen2-tiny.F16", "Qwen2ForCausalLM", TokStyle::qwen, StDtype::f32, "f16"},
    // Qwen3: q/k norms, head_dim; only quantized files exist, so the reference is dequantized.
    {"qwen3-tiny.Q8_0", "Qwen3ForCausalLM", TokStyle::qwen, StDtype::f32, "f32"},
    {"qwen3-tiny.Q8_0", "Qwen3ForCausalLM", TokStyle::qwen, StDtype::f32, "f32", 2},
    // Qwen3-MoE: per-expert and fused (transformers 5) expert tensors, untied.
    {"qwen3moe-tiny.F16", "Qwen3MoeForCausalLM", TokStyle::qwen, StDtype::f16, "f16", 2},
    {"qwen3moe-tiny.F16", "Qwen3MoeForCausalLM", TokStyle::qwen, StDtype::f16, "f16", 1, true},
};

INSTANTIATE_TEST_SUITE_P(Models, ConvertRoundTrip, ::testing::ValuesIn(kCases),
                         [](const ::testing::TestParamInfo<Case>& info) {
                             std::string n = std::string(info.param.model) + "_" + info.param.hf_arch + "_" +
                                             st_dtype_name(info.param.dtype) + "_to_" + info.param.out_type +
                                             (info.param.n_shards > 1 ? "_sharded" : "") +
                                             (info.param.fused_experts ? "_fused" : "");
                             for (char& ch : n)
                                 if (!std::isalnum((unsigned char)ch)) ch = '_';
                             return n;
                         });

// ---------------------------------------------------------------------------------------
// The llama q/k permutation, by its meaning. HF Llama applies RoPE with rotate_half: in each
// head, element i pairs with i + hd/2 at frequency base^(-2i/hd). GGUF llama rotates adjacent
// elements (2i, 2i + 1) at the same frequency. So for any input x and position, rotating
// q = W x the HF way must give, element for element under the pairing, what rotating the
// converted rows' q the GGUF way gives. Random HF weights, not derived from any GGUF.

std::vector<double> rope_hf(const std::vector<double>& q, int64_t hd, int pos, double base) {
    std::vector<double> out(q.size());
    for (size_t h0 = 0; h0 < q.size(); h0 += (size_t)hd)
        for (int64_t i = 0; i < hd / 2; ++i) {
            const double th = pos * std::pow(base, -2.0 * (double)i / (double)hd);
            const double a = q[h0 + i], b = q[h0 + i + hd / 2];
            out[h0 + i] = a * std::cos(th) - b * std::sin(th);
            out[h0 + i + hd / 2] = b * std::cos(th) + a * std::sin(th);
        }
    return out;
}

std::vector<double> rope_gguf(const std::vector<double>& q, int64_t hd, int pos, double base) {
    std::vector<double> out(q.size());
    for (size_t h0 = 0; h0 < q.size(); h0 += (size_t)hd)
        for (int64_t i = 0; i < hd / 2; ++i) {
            const double th = pos * std::pow(base, -2.0 * (double)i / (double)hd);
            const double x0 = q[h0 + 2 * i], x1 = q[h0 + 2 * i + 1];
            out[h0 + 2 * i] = x0 * std::cos(th) - x1 * std::sin(th);
            out[h0 + 2 * i + 1] = x0 * std::sin(th) + x1 * std::cos(th);
        }
    return out;
}

std::vector<double> matvec(std::span<const float> w, int64_t rows, const std::vector<double>& x) {
    std::vector<double> y((size_t)rows, 0.0);
    const size_t cols = x.size();
    for (int64_t r = 0; r < rows; ++r)
        for (size_t k = 0; k < cols; ++k) y[(size_t)r] += (double)w[(size_t)r * cols + k] * x[k];
    return y;
}

// A minimal random Llama checkpoint (1 layer) using llama3-tiny's tokenizer files.
void write_random_llama(const fs::path& dir, int64_t d, int64_t n_head, int64_t n_head_kv, int64_t hd, uint32_t seed,
                        std::map<std::string, std::vector<float>>* weights = nullptr) {
    auto src = gguf::open_gguf(hearth::test::testdata_path("models/llama3-tiny.F16.gguf"));
    ASSERT_TRUE(src.ok());
    const TokFiles tok = tokenizer_files(src.value()->meta, TokStyle::llama3);
    const int64_t n_vocab = 500, ff = 2 * d;
    write_text(dir / "tokenizer.json", tok.tokenizer.dump());
    write_text(dir / "tokenizer_config.json", tok.tokenizer_config.dump());
    json cfg = {{"architectures", {"LlamaForCausalLM"}}, {"hidden_size", d}, {"num_hidden_layers", 1},
                {"num_attention_heads", n_head}, {"num_key_value_heads", n_head_kv}, {"head_dim", hd},
                {"intermediate_size", ff}, {"max_position_embeddings", 4096}, {"rms_norm_eps", 1e-5},
                {"rope_theta", 10000.0}, {"vocab_size", n_vocab}, {"tie_word_embeddings", true}};
    write_text(dir / "config.json", cfg.dump());
    std::mt19937 rng(seed);
    std::normal_distribution<float> nd(0.0f, 0.2f);
    std::vector<HfTensor> ts;
    auto add = [&](const std::string& name, std::vector<int64_t> shape) {
        int64_t n = 1;
        for (int64_t s : shape) n *= s;
        std::vector<float> v((size_t)n);
        for (float& f : v) f = shape.size() == 1 ? 1.0f + nd(rng) : nd(rng);
        ts.push_back({name, StDtype::f32, shape, encode(v, StDtype::f32)});
        if (weights) (*weights)[name] = v;
    };
    add("model.embed_tokens.weight", {n_vocab, d});
    add("model.norm.weight", {d});
    add("model.layers.0.input_layernorm.weight", {d});
    add("model.layers.0.post_attention_layernorm.weight", {d});
    add("model.layers.0.self_attn.q_proj.weight", {n_head * hd, d});
    add("model.layers.0.self_attn.q_proj.bias", {n_head * hd});  // attention_bias: permuted like the rows
    add("model.layers.0.self_attn.k_proj.weight", {n_head_kv * hd, d});
    add("model.layers.0.self_attn.k_proj.bias", {n_head_kv * hd});
    add("model.layers.0.self_attn.v_proj.weight", {n_head_kv * hd, d});
    add("model.layers.0.self_attn.o_proj.weight", {d, n_head * hd});
    add("model.layers.0.mlp.gate_proj.weight", {ff, d});
    add("model.layers.0.mlp.up_proj.weight", {ff, d});
    add("model.layers.0.mlp.down_proj.weight", {d, ff});
    write_safetensors(dir, ts, 1);
}

TEST(ConvertLlama, QkPermutationMatchesRotateHalfRope) {
    TempDir tmp("permute");
    const int64_t d = 48, n_head = 6, n_head_kv = 2, hd = 16;  // head_dim != d / n_head on purpose
    std::map<std::string, std::vector<float>> hf;
    write_random_llama(tmp.path, d, n_head, n_head_kv, hd, 7, &hf);
    ConvertOptions opt;
    opt.out_type = "f32";
    ASSERT_TRUE(convert_hf_checkpoint(tmp.str(), tmp.str("out.gguf"), opt).ok());
    auto g = gguf::open_gguf(tmp.str("out.gguf"));
    ASSERT_TRUE(g.ok());
    EXPECT_EQ(gguf_int(g.value()->meta, "llama.attention.key_length"), hd);
    EXPECT_EQ(gguf_int(g.value()->meta, "llama.rope.dimension_count"), hd);
    EXPECT_EQ(g.value()->find_tensor("output.weight"), nullptr);  // tied

    std::mt19937 rng(3);
    std::normal_distribution<double> nd;
    std::vector<double> x((size_t)d);
    for (double& v : x) v = nd(rng);
    for (auto [hf_name, gg_name, heads] : {std::tuple{"model.layers.0.self_attn.q_proj", "blk.0.attn_q", n_head},
                                           std::tuple{"model.layers.0.self_attn.k_proj", "blk.0.attn_k", n_head_kv}}) {
        const gguf::TensorInfo* t = g.value()->find_tensor(std::string(gg_name) + ".weight");
        const gguf::TensorInfo* b = g.value()->find_tensor(std::string(gg_name) + ".bias");
        ASSERT_TRUE(t && b);
        ASSERT_EQ(t->type, QuantType::f32);
        ASSERT_EQ(b->type, QuantType::f32);
        const std::span<const float> w_gguf(reinterpret_cast<const float*>(t->data), (size_t)t->n_elements());
        const std::span<const float> b_gguf(reinterpret_cast<const float*>(b->data), (size_t)b->n_elements());
        std::vector<double> q_hf = matvec(hf[std::string(hf_name) + ".weight"], heads * hd, x), q_gg = matvec(w_gguf, heads * hd, x);
        for (int64_t r = 0; r < heads * hd; ++r) {
            q_hf[(size_t)r] += hf[std::string(hf_name) + ".bias"][(size_t)r];
            q_gg[(size_t)r] += b_gguf[(size_t)r];
        }
        for (int pos : {0, 1, 5, 37}) {
            const std::vector<double> r_hf = rope_hf(q_hf, hd, pos, 10000.0), r_gg = rope_gguf(q_gg, hd, pos, 10000.0);
            for (int64_t h = 0; h < heads; ++h)
                for (int64_t i = 0; i < hd / 2; ++i)
                    for (int64_t j = 0; j < 2; ++j)
                        ASSERT_NEAR(r_gg[(size_t)(h * hd + 2 * i + j)], r_hf[(size_t)(h * hd + j * hd / 2 + i)], 1e-9)
                            << gg_name << " head " << h << " pair " << i << " pos " << pos;
        }
    }
    // Everything else is copied unchanged.
    const gguf::TensorInfo* v = g.value()->find_tensor("blk.0.attn_v.weight");
    ASSERT_NE(v, nullptr);
    EXPECT_EQ(std::memcmp(v->data, hf["model.layers.0.self_attn.v_proj.weight"].data(), v->n_bytes), 0);
    // And the result runs.
    const std::vector<float> logits = run_logits(g.value(), {492, 40, 41, 42});
    ASSERT_EQ(logits.size(), 4u * 500u);
    EXPECT_TRUE(std::all_of(logits.begin(), logits.end(), [](float f) { return std::isfinite(f); }));
}

// ---------------------------------------------------------------------------------------
// Errors. Each case damages a small valid checkpoint (llama2-spm-tiny, F32) one way.

struct Damaged {
    TempDir tmp;
    fs::path dir;
    std::shared_ptr<gguf::GgufFile> src;
    explicit Damaged(const std::string& tag, int n_shards = 1) : tmp("err_" + tag), dir(tmp.path / "ck") {
        fs::create_directories(dir);
        auto f = gguf::open_gguf(hearth::test::testdata_path("models/llama2-spm-tiny.F32.gguf"));
        EXPECT_TRUE(f.ok());
        src = f.value();
        write_checkpoint(*src, Case{"llama2-spm-tiny.F32", "LlamaForCausalLM", TokStyle::spm, StDtype::f32, "f32", n_shards}, dir);
    }
    json config() const { return json::parse(hearth::test::read_text_file((dir / "config.json").string())); }
    void set_config(const json& j) const { write_text(dir / "config.json", j.dump()); }
    Status convert(const std::string& type = "f16") const {
        ConvertOptions opt;
        opt.out_type = type;
        return convert_hf_checkpoint(dir.string(), out(), opt);
    }
    std::string out() const { return tmp.str("out.gguf"); }
};

void expect_error(const Status& st, StatusCode code, std::initializer_list<const char*> parts) {
    ASSERT_FALSE(st.ok());
    EXPECT_EQ(st.code(), code) << st.message();
    for (const char* p : parts) EXPECT_NE(st.message().find(p), std::string::npos) << "'" << p << "' not in: " << st.message();
}

TEST(ConvertErrors, ValidBaselineConverts) {
    Damaged d("baseline");
    const Status st = d.convert();
    ASSERT_TRUE(st.ok()) << st.message();
    EXPECT_TRUE(fs::exists(d.out()));
}

TEST(ConvertErrors, MissingConfig) {
    Damaged d("noconfig");
    fs::remove(d.dir / "config.json");
    EXPECT_FALSE(is_hf_checkpoint(d.dir.string()));
    expect_error(d.convert(), StatusCode::not_found, {"config.json"});
    EXPECT_FALSE(fs::exists(d.out()));
}

TEST(ConvertErrors, MalformedConfig) {
    Damaged d("badconfig");
    const json good = d.config();
    write_text(d.dir / "config.json", "{\"architectures\": [\"LlamaForCausalLM\"], ");
    expect_error(d.convert(), StatusCode::corrupt, {"config.json"});
    d.set_config(json::parse(R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 64})"));
    expect_error(d.convert(), StatusCode::corrupt, {"config.json", "num_hidden_layers"});
    json j = good;
    j["num_attention_heads"] = -4;
    d.set_config(j);
    expect_error(d.convert(), StatusCode::corrupt, {"num_attention_heads"});
    j = good;
    j["rope_scaling"] = {{"rope_type", "su-per"}, {"factor", 2.0}};
    d.set_config(j);
    expect_error(d.convert(), StatusCode::unsupported, {"su-per"});
    j = good;
    j.erase("architectures");
    d.set_config(j);
    expect_error(d.convert(), StatusCode::corrupt, {"architectures"});
}

TEST(ConvertErrors, UnsupportedArchitectureIsNamed) {
    Damaged d("arch");
    json j = d.config();
    j["architectures"] = {"GPTNeoXForCausalLM"};
    d.set_config(j);
    const Status st = d.convert();
    expect_error(st, StatusCode::unsupported, {"GPTNeoXForCausalLM", "LlamaForCausalLM", "Qwen3ForCausalLM"});
    EXPECT_FALSE(fs::exists(d.out()));
}

TEST(ConvertErrors, TruncatedSafetensors) {
    Damaged d("trunc");
    const fs::path p = d.dir / "model.safetensors";
    fs::resize_file(p, fs::file_size(p) - 100);
    expect_error(d.convert(), StatusCode::corrupt, {"model.safetensors", "truncated"});
    fs::resize_file(p, 5);
    expect_error(d.convert(), StatusCode::corrupt, {"model.safetensors"});
    EXPECT_FALSE(fs::exists(d.out()));
}

TEST(ConvertErrors, ShardsThatDisagreeWithTheIndex) {
    {
        Damaged d("shard_moved", 2);
        json idx = json::parse(hearth::test::read_text_file((d.dir / "model.safetensors.index.json").string()));
        // The last tensor is in shard 2.
        idx["weight_map"]["model.layers.1.mlp.down_proj.weight"] = "model-00001-of-00002.safetensors";
        write_text(d.dir / "model.safetensors.index.json", idx.dump());
        expect_error(d.convert(), StatusCode::corrupt, {"model.layers.1.mlp.down_proj.weight", "model-00002-of-00002.safetensors",
                                                        "model-00001-of-00002.safetensors"});
    }
    {
        Damaged d("shard_unlisted", 2);
        json idx = json::parse(hearth::test::read_text_file((d.dir / "model.safetensors.index.json").string()));
        idx["weight_map"].erase("model.norm.weight");
        write_text(d.dir / "model.safetensors.index.json", idx.dump());
        expect_error(d.convert(), StatusCode::corrupt, {"model.norm.weight", "does not list"});
    }
    {
        Damaged d("shard_phantom", 2);
        json idx = json::parse(hearth::test::read_text_file((d.dir / "model.safetensors.index.json").string()));
        idx["weight_map"]["model.layers.9.mlp.up_proj.weight"] = "model-00001-of-00002.safetensors";
        write_text(d.dir / "model.safetensors.index.json", idx.dump());
        expect_error(d.convert(), StatusCode::corrupt, {"model.layers.9.mlp.up_proj.weight", "missing"});
    }
    {
        Damaged d("shard_gone", 2);
        fs::remove(d.dir / "model-00002-of-00002.safetensors");
        expect_error(d.convert(), StatusCode::not_found, {"model-00002-of-00002.safetensors"});
    }
    {
        Damaged d("shard_badindex", 2);
        write_text(d.dir / "model.safetensors.index.json", R"({"weight_map": {"a": "../../etc/passwd"}})");
        expect_error(d.convert(), StatusCode::corrupt, {"weight_map"});
    }
}

TEST(ConvertErrors, WrongShapeNamesTensorAndShapes) {
    Damaged d("shape");
    json j = d.config();
    j["num_key_value_heads"] = 2;  // k_proj/v_proj hold 4 heads
    d.set_config(j);
    expect_error(d.convert(), StatusCode::corrupt, {"model.layers.0.self_attn.k_proj.weight", "[64, 64]", "[32, 64]"});
    j["num_key_value_heads"] = 4;
    j["vocab_size"] = 1000;
    d.set_config(j);
    expect_error(d.convert(), StatusCode::corrupt, {"vocab_size", "512"});
}

TEST(ConvertErrors, MissingAndUnknownTensors) {
    Damaged d("tensors");
    auto rewrite = [&](const std::function<void(std::vector<HfTensor>&)>& edit) {
        std::vector<HfTensor> ts = hf_tensors(*d.src, Case{"", "LlamaForCausalLM", TokStyle::spm, StDtype::f32, "f32"});
        edit(ts);
        write_safetensors(d.dir, ts, 1);
    };
    rewrite([](std::vector<HfTensor>& ts) {
        std::erase_if(ts, [](const HfTensor& t) { return t.name == "model.layers.1.mlp.down_proj.weight"; });
    });
    expect_error(d.convert(), StatusCode::not_found, {"model.layers.1.mlp.down_proj.weight"});
    rewrite([](std::vector<HfTensor>& ts) { ts.push_back({"model.layers.0.mystery.weight", StDtype::f32, {4}, std::vector<std::byte>(16)}); });
    expect_error(d.convert(), StatusCode::unsupported, {"model.layers.0.mystery.weight"});
    rewrite([](std::vector<HfTensor>& ts) { ts.push_back({"model.layers.7.input_layernorm.weight", StDtype::f32, {64}, std::vector<std::byte>(256)}); });
    expect_error(d.convert(), StatusCode::corrupt, {"layer 7"});
    rewrite([](std::vector<HfTensor>& ts) {
        for (HfTensor& t : ts)
            if (t.name == "model.norm.weight") t = {t.name, StDtype::i64, {64}, std::vector<std::byte>(512)};
    });
    expect_error(d.convert(), StatusCode::unsupported, {"model.norm.weight", "I64"});
    // Harmless extras are skipped.
    rewrite([](std::vector<HfTensor>& ts) {
        ts.push_back({"model.layers.0.self_attn.rotary_emb.inv_freq", StDtype::f32, {8}, std::vector<std::byte>(32)});
    });
    EXPECT_TRUE(d.convert().ok());
}

TEST(ConvertErrors, TokenizerProblems) {
    {
        Damaged d("notok");
        fs::remove(d.dir / "tokenizer.json");
        expect_error(d.convert(), StatusCode::not_found, {"tokenizer.json"});
        write_text(d.dir / "tokenizer.model", "x");
        expect_error(d.convert(), StatusCode::unsupported, {"tokenizer.model"});
    }
    {
        Damaged d("unigram");
        json t = json::parse(hearth::test::read_text_file((d.dir / "tokenizer.json").string()));
        t["model"]["type"] = "Unigram";
        write_text(d.dir / "tokenizer.json", t.dump());
        expect_error(d.convert(), StatusCode::unsupported, {"Unigram"});
    }
    {
        Damaged d("bigid");
        json t = json::parse(hearth::test::read_text_file((d.dir / "tokenizer.json").string()));
        t["added_tokens"].push_back({{"id", 600}, {"content", "<extra>"}, {"special", true}});
        write_text(d.dir / "tokenizer.json", t.dump());
        expect_error(d.convert(), StatusCode::corrupt, {"<extra>", "600"});
    }
}

TEST(ConvertErrors, BadOutputTypeAndExistingOutputKept) {
    Damaged d("outtype");
    expect_error(d.convert("q4_0"), StatusCode::invalid_argument, {"q4_0"});
    write_text(d.out(), "previous");
    fs::remove(d.dir / "config.json");
    EXPECT_FALSE(d.convert().ok());
    EXPECT_EQ(hearth::test::read_text_file(d.out()), "previous");
    EXPECT_TRUE(std::none_of(fs::directory_iterator(d.tmp.path), fs::directory_iterator(),
                             [](const fs::directory_entry& e) { return e.path().filename().string().find(".tmp") != std::string::npos; }));
}

// ---------------------------------------------------------------------------------------
// Full real vocabularies from llama.cpp's models/ folder, written as the tokenizer.json their
// models ship, converted, and run on llama.cpp's own tokenizer test vectors (.inp/.out):
// SentencePiece-style (llama-spm, phi-3: scores rebuilt from merge ranks) and byte-level BPE
// (gpt-2, starcoder, refact: pre-tokenizer read from the config).

struct VocabCase {
    const char* name;  // tokenizers/ggml-vocab-<name>.gguf.gz
    TokStyle style;
    const char* pre;   // JSON pre_tokenizer for byte-level BPE; "" for SPM
    const char* out;   // .out file of the test vectors ("" = <name>)
    // Token types must match the original file's. Not for phi-3: that old file types <unk>
    // CONTROL, </s> USER_DEFINED and its [PAD] rows UNKNOWN, none of which a tokenizer.json
    // says (its real one marks all three special tokens special and has no [PAD] rows).
    bool exact_types = true;
};

class HfTokenizerVocab : public ::testing::TestWithParam<VocabCase> {};

TEST_P(HfTokenizerVocab, MatchesLlamaCppTestVectors) {
    const VocabCase c = GetParam();
    const std::string base = hearth::test::testdata_path(std::string("tokenizers/ggml-vocab-") + c.name + ".gguf");
    std::vector<uint8_t> raw;
    ASSERT_TRUE(hearth::test::read_gzip_file(base + ".gz", raw)) << base;
    auto parsed = gguf::parse_gguf(std::as_bytes(std::span(raw)));
    ASSERT_TRUE(parsed.ok()) << parsed.status().message();
    const gguf::Metadata& orig = parsed->meta;
    const TokFiles tf = tokenizer_files(orig, c.style, *c.pre ? json::parse(c.pre) : json());
    HfTokenizerFiles files;
    files.tokenizer_json = tf.tokenizer.dump();
    files.tokenizer_config_json = tf.tokenizer_config.dump();
    files.config_json = tf.config_ids.dump();
    const int64_t n_vocab = (int64_t)orig.get_string_array("tokenizer.ggml.tokens")->size();
    gguf::Metadata conv;
    const Status st = add_hf_tokenizer_metadata(files, n_vocab, conv);
    ASSERT_TRUE(st.ok()) << st.message();
    auto tok = tok::Tokenizer::from_metadata(conv);
    ASSERT_TRUE(tok.ok()) << tok.status().message();
    auto ref = tok::Tokenizer::from_metadata(orig);
    ASSERT_TRUE(ref.ok()) << ref.status().message();
    EXPECT_EQ(tok.value()->model_name(), ref.value()->model_name());
    for (int32_t id = 0; id < ref.value()->n_vocab(); ++id) {
        ASSERT_EQ(tok.value()->token_text(id), ref.value()->token_text(id)) << id;
        const uint32_t want = ref.value()->token_attr(id);
        if (c.exact_types || (want & (tok::kAttrNormal | tok::kAttrByte))) {
            ASSERT_EQ(tok.value()->token_attr(id), want) << id << " " << ref.value()->token_text(id);
        }
    }

    const std::string inp = hearth::test::read_text_file(hearth::test::testdata_path(
        std::string("tokenizers/ggml-vocab-") + (*c.out ? c.out : c.name) + ".gguf.inp"));
    const std::string out = hearth::test::read_text_file(hearth::test::testdata_path(
        std::string("tokenizers/ggml-vocab-") + (*c.out ? c.out : c.name) + ".gguf.out"));
    const std::string sep = "\n__ggml_vocab_test__\n";
    std::vector<std::string> texts;
    for (size_t pos = 0, next; (next = inp.find(sep, pos)) != std::string::npos; pos = next + sep.size())
        texts.push_back(inp.substr(pos, next - pos));
    std::vector<std::vector<int32_t>> want;
    std::istringstream lines(out);
    for (std::string line; std::getline(lines, line);) {
        std::istringstream ids(line);
        std::vector<int32_t> v;
        for (int32_t id; ids >> id;) v.push_back(id);
        want.push_back(v);
    }
    ASSERT_EQ(texts.size(), want.size());
    ASSERT_GT(texts.size(), 20u);
    int n_wrong = 0;
    for (size_t i = 0; i < texts.size(); ++i) {
        const std::vector<int32_t> got = tok.value()->encode(texts[i], false, false);
        if (got != want[i]) ++n_wrong;
        EXPECT_EQ(got, want[i]) << "'" << texts[i] << "'";
    }
    std::printf("[ %s ] %zu test strings, %d differ; %lld tokens\n", c.name, texts.size(), n_wrong, (long long)n_vocab);
}

const char* kGpt2Pre = R"({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true})";
const char* kStarcoderPre = R"({"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": true},
    {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}]})";

INSTANTIATE_TEST_SUITE_P(Vocabs, HfTokenizerVocab,
                         ::testing::Values(VocabCase{"llama-spm", TokStyle::spm, "", ""},
                                           VocabCase{"phi-3", TokStyle::spm, "", "llama-spm", false},
                                           VocabCase{"gpt-2", TokStyle::qwen, kGpt2Pre, ""},
                                           VocabCase{"starcoder", TokStyle::qwen, kStarcoderPre, ""},
                                           VocabCase{"refact", TokStyle::qwen, kStarcoderPre, ""}),
                         [](const ::testing::TestParamInfo<VocabCase>& info) {
                             std::string n = info.param.name;
                             for (char& ch : n)
                                 if (!std::isalnum((unsigned char)ch)) ch = '_';
                             return n;
                         });

// ---------------------------------------------------------------------------------------
// Tokenizer metadata details, on tokenizer files alone.

TEST(HfTokenizer, PreTokenizerNames) {
    auto name = [](const json& pre) {
        json t = {{"model", {{"type", "BPE"}}}, {"pre_tokenizer", pre}};
        return hf_bpe_pre_name(t.dump());
    };
    EXPECT_EQ(name(byte_level_pre(kLlama3Regex)).value(), "llama-bpe");
    EXPECT_EQ(name(byte_level_pre(kQwen2Regex)).value(), "qwen2");
    EXPECT_EQ(name({{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}}).value(), "gpt-2");
    EXPECT_EQ(name({{"type", "Sequence"}, {"pretokenizers", {{{"type", "Digits"}, {"individual_digits", true}},
                                                             {{"type", "ByteLevel"}, {"use_regex", true}}}}}).value(),
              "starcoder");
    auto bad = name(byte_level_pre("\\w+"));
    ASSERT_FALSE(bad.ok());
    EXPECT_EQ(bad.status().code(), StatusCode::unsupported);
    EXPECT_NE(bad.status().message().find("\\w+"), std::string::npos) << bad.status().message();
}

HfTokenizerFiles tiny_bpe_files() {
    json vocab = json::object();
    const char* toks[] = {"a", "b", "c", "ab", "\xC4\xA0", "\xC4\xA0" "a"};
    for (int i = 0; i < 6; ++i) vocab[toks[i]] = i;
    json t = {{"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", {"a b", "\xC4\xA0 a"}}}},
              {"pre_tokenizer", byte_level_pre(kQwen2Regex)},
              {"added_tokens", {{{"id", 6}, {"content", "<|endoftext|>"}, {"special", true}},
                                {{"id", 7}, {"content", "<tool_call>"}, {"special", false}},
                                {{"id", 8}, {"content", "<|fake|>"}, {"special", false}}}}};
    HfTokenizerFiles f;
    f.tokenizer_json = t.dump();
    return f;
}

TEST(HfTokenizer, TokenTypesPaddingAndSpecialIds) {
    HfTokenizerFiles f = tiny_bpe_files();
    f.tokenizer_config_json = R"({"eos_token": {"content": "<|endoftext|>", "special": true}, "add_eos_token": true})";
    f.config_json = R"({"bos_token_id": 6, "pad_token_id": 9})";
    gguf::Metadata m;
    ASSERT_TRUE(add_hf_tokenizer_metadata(f, 12, m).ok());
    const auto tokens = m.get_string_array("tokenizer.ggml.tokens").value();
    const auto types = m.get_int_array("tokenizer.ggml.token_type").value();
    ASSERT_EQ(tokens.size(), 12u);
    EXPECT_EQ(tokens[9], "[PAD9]");
    EXPECT_EQ(types[9], 5);
    EXPECT_EQ(types[0], 1);
    EXPECT_EQ(types[6], 3);  // special
    EXPECT_EQ(types[7], 4);  // user-defined
    EXPECT_EQ(types[8], 3);  // looks special: <|...|>
    EXPECT_EQ(m.get_int("tokenizer.ggml.eos_token_id").value(), 6);
    EXPECT_EQ(m.get_int("tokenizer.ggml.bos_token_id").value(), 6);
    EXPECT_EQ(m.get_int("tokenizer.ggml.padding_token_id").value(), 9);
    EXPECT_TRUE(m.get_bool("tokenizer.ggml.add_eos_token").value());
    EXPECT_EQ(m.get_string("tokenizer.ggml.pre").value(), "qwen2");
    EXPECT_EQ(m.get_string_array("tokenizer.ggml.merges").value(), (std::vector<std::string>{"a b", "\xC4\xA0 a"}));
    EXPECT_FALSE(add_hf_tokenizer_metadata(f, 8, m).ok());  // id 8 outside an 8-token model
}

TEST(HfTokenizer, ChatTemplateForms) {
    HfTokenizerFiles f = tiny_bpe_files();
    f.tokenizer_config_json = R"({"chat_template": [{"name": "default", "template": "A{{x}}"},
                                                    {"name": "tool_use", "template": "B"}, {"name": "rag", "template": "C"}]})";
    gguf::Metadata m;
    ASSERT_TRUE(add_hf_tokenizer_metadata(f, 9, m).ok());
    EXPECT_EQ(m.get_string("tokenizer.chat_template").value(), "A{{x}}");
    EXPECT_EQ(m.get_string("tokenizer.chat_template.tool_use").value(), "B");
    EXPECT_EQ(m.get_string_array("tokenizer.chat_templates").value(), (std::vector<std::string>{"rag", "tool_use"}));

    f.tokenizer_config_json = "{}";
    f.chat_template_jinja = "J";
    gguf::Metadata m2;
    ASSERT_TRUE(add_hf_tokenizer_metadata(f, 9, m2).ok());
    EXPECT_EQ(m2.get_string("tokenizer.chat_template").value(), "J");

    f.chat_template_jinja.clear();
    f.chat_template_json = R"({"chat_template": "K"})";
    gguf::Metadata m3;
    ASSERT_TRUE(add_hf_tokenizer_metadata(f, 9, m3).ok());
    EXPECT_EQ(m3.get_string("tokenizer.chat_template").value(), "K");
}

TEST(HfTokenizer, MalformedFilesAreErrors) {
    for (const char* bad : {"", "[]", "{", R"({"model": 3})", R"({"model": {"type": "BPE", "vocab": {"a": "x"}}})",
                            R"({"model": {"type": "BPE", "vocab": {"a": -1}}})",
                            R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [1]}})",
                            R"({"model": {"type": "BPE", "vocab": {"a": 0}}, "added_tokens": [{"id": "x"}]})"}) {
        HfTokenizerFiles f;
        f.tokenizer_json = bad;
        gguf::Metadata m;
        EXPECT_FALSE(add_hf_tokenizer_metadata(f, 4, m).ok()) << bad;
    }
}

}  // namespace
}  // namespace hearth::store
