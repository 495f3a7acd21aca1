#include "model/synth.h"

#include <sys/statvfs.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <span>
#include <tuple>
#include <type_traits>

#include "base/thread_pool.h"

namespace hearth::model {
namespace {

using quant::QuantType;

std::string to_lower(std::string_view s) {
    std::string out(s);
    for (char& c : out) c = (char)std::tolower((unsigned char)c);
    return out;
}
std::string to_upper(std::string_view s) {
    std::string out(s);
    for (char& c : out) c = (char)std::toupper((unsigned char)c);
    return out;
}

std::string join(const std::vector<std::string>& v, const char* sep = ", ") {
    std::string out;
    for (const auto& s : v) out += (out.empty() ? "" : sep) + s;
    return out;
}

// ---------------------------------------------------------------------------------------------
// Presets. Values from each model's Hugging Face config.json (hidden_size, num_hidden_layers,
// num_attention_heads, num_key_value_heads, head_dim, intermediate_size, moe_intermediate_size,
// num_experts(_per_tok), vocab_size, max_position_embeddings, rope_theta, rms_norm_eps,
// tie_word_embeddings, rope_scaling). The tiny ones are small enough for unit tests and keep
// each family's features (rope_freqs, biases, q/k norms, tied or untied output, experts).

struct PresetRow {
    const char *preset, *family, *arch, *name;
    int64_t vocab, embd;
    int layers, heads, kv, head_dim;
    int64_t ff;
    int experts, used;
    int64_t ff_exp, ctx;
    float theta, eps;
    bool tied;
    float rope_factor;  // llama3 rope scaling factor, 0: none
    SynthVocab vocab_kind;
};

constexpr SynthVocab kBpe = SynthVocab::bpe, kSpm = SynthVocab::spm, kWpm = SynthVocab::wordpiece;

// clang-format off
const PresetRow kPresets[] = {
//   preset               family      arch        general.name         vocab   embd layers heads kv  hd     ff  exp used ff_exp    ctx   theta   eps   tied  rope  vocab
    {"llama-tiny",        "llama",    "llama",    "Llama tiny",          512,   256,  2,   4,  2,  64,   512,   0, 0,     0, 131072, 5e5f, 1e-5f,  true, 32.f, kBpe},
    {"llama3.2-1b",       "llama",    "llama",    "Llama 3.2 1B",     128256,  2048, 16,  32,  8,  64,  8192,   0, 0,     0, 131072, 5e5f, 1e-5f,  true, 32.f, kBpe},
    {"llama3.2-3b",       "llama",    "llama",    "Llama 3.2 3B",     128256,  3072, 28,  24,  8, 128,  8192,   0, 0,     0, 131072, 5e5f, 1e-5f,  true, 32.f, kBpe},
    {"llama3.1-8b",       "llama",    "llama",    "Llama 3.1 8B",     128256,  4096, 32,  32,  8, 128, 14336,   0, 0,     0, 131072, 5e5f, 1e-5f, false,  8.f, kBpe},
    {"llama3.1-70b",      "llama",    "llama",    "Llama 3.1 70B",    128256,  8192, 80,  64,  8, 128, 28672,   0, 0,     0, 131072, 5e5f, 1e-5f, false,  8.f, kBpe},
    {"mixtral-tiny",      "mixtral",  "llama",    "Mixtral tiny",        512,   256,  2,   4,  2,  64,   256,   8, 2,   256,  32768, 1e6f, 1e-5f, false,  0.f, kSpm},
    {"mixtral-8x7b",      "mixtral",  "llama",    "Mixtral 8x7B v0.1", 32000,  4096, 32,  32,  8, 128, 14336,   8, 2, 14336,  32768, 1e6f, 1e-5f, false,  0.f, kSpm},
    {"qwen2-tiny",        "qwen2",    "qwen2",    "Qwen2 tiny",          512,   128,  2,   4,  2,  32,   384,   0, 0,     0,  32768, 1e6f, 1e-6f,  true,  0.f, kBpe},
    {"qwen2.5-0.5b",      "qwen2",    "qwen2",    "Qwen2.5 0.5B",     151936,   896, 24,  14,  2,  64,  4864,   0, 0,     0,  32768, 1e6f, 1e-6f,  true,  0.f, kBpe},
    {"qwen2.5-7b",        "qwen2",    "qwen2",    "Qwen2.5 7B",       152064,  3584, 28,  28,  4, 128, 18944,   0, 0,     0,  32768, 1e6f, 1e-6f, false,  0.f, kBpe},
    {"qwen3-tiny",        "qwen3",    "qwen3",    "Qwen3 tiny",          512,   128,  2,   4,  2,  64,   256,   0, 0,     0,  40960, 1e6f, 1e-6f,  true,  0.f, kBpe},
    {"qwen3-0.6b",        "qwen3",    "qwen3",    "Qwen3 0.6B",       151936,  1024, 28,  16,  8, 128,  3072,   0, 0,     0,  40960, 1e6f, 1e-6f,  true,  0.f, kBpe},
    {"qwen3-1.7b",        "qwen3",    "qwen3",    "Qwen3 1.7B",       151936,  2048, 28,  16,  8, 128,  6144,   0, 0,     0,  40960, 1e6f, 1e-6f,  true,  0.f, kBpe},
    {"qwen3-4b",          "qwen3",    "qwen3",    "Qwen3 4B",         151936,  2560, 36,  32,  8, 128,  9728,   0, 0,     0,  40960, 1e6f, 1e-6f,  true,  0.f, kBpe},
    {"qwen3-8b",          "qwen3",    "qwen3",    "Qwen3 8B",         151936,  4096, 36,  32,  8, 128, 12288,   0, 0,     0,  40960, 1e6f, 1e-6f, false,  0.f, kBpe},
    {"qwen3moe-tiny",     "qwen3moe", "qwen3moe", "Qwen3 MoE tiny",      512,   256,  2,   4,  2,  64,   512,   8, 2,   256,  40960, 1e6f, 1e-6f, false,  0.f, kBpe},
    {"qwen3-30b-a3b",     "qwen3moe", "qwen3moe", "Qwen3 30B A3B",    151936,  2048, 48,  32,  4, 128,  6144, 128, 8,   768,  40960, 1e6f, 1e-6f, false,  0.f, kBpe},
    {"bert-tiny",         "bert",     "bert",     "BERT tiny",           512,   128,  2,   2,  2,  64,   512,   0, 0,     0,    512, 1e4f, 1e-12f, true,  0.f, kWpm},
    {"bge-small-en-v1.5", "bert",     "bert",     "bge-small-en-v1.5", 30522,   384, 12,  12, 12,  32,  1536,   0, 0,     0,    512, 1e4f, 1e-12f, true,  0.f, kWpm},
    {"bge-base-en-v1.5",  "bert",     "bert",     "bge-base-en-v1.5",  30522,   768, 12,  12, 12,  64,  3072,   0, 0,     0,    512, 1e4f, 1e-12f, true,  0.f, kWpm},
};
// clang-format on

std::vector<SynthConfig> make_presets() {
    std::vector<SynthConfig> out;
    for (const PresetRow& r : kPresets) {
        SynthConfig c;
        c.preset = r.preset, c.family = r.family, c.arch = r.arch, c.model_name = r.name;
        c.n_vocab = r.vocab, c.n_embd = r.embd, c.n_layer = r.layers, c.n_head = r.heads, c.n_head_kv = r.kv;
        c.head_dim = r.head_dim, c.n_ff = r.ff, c.n_expert = r.experts, c.n_expert_used = r.used, c.n_ff_exp = r.ff_exp;
        c.n_ctx = r.ctx, c.rope_freq_base = r.theta, c.norm_eps = r.eps, c.tied_output = r.tied;
        c.rope_scale_factor = r.rope_factor, c.vocab = r.vocab_kind;
        out.push_back(std::move(c));
    }
    return out;
}

const std::vector<std::string> kFamilies = {"llama", "mixtral", "qwen2", "qwen3", "qwen3moe", "bert"};

// ---------------------------------------------------------------------------------------------
// Tensor types.

struct TypeRow {
    const char* name;
    QuantType base;
    bool is_mix;
    uint32_t file_type;  // llama_ftype; pure K types use the _S mix id, as llama-quantize --pure does
};

const TypeRow kTypes[] = {
    {"F32", QuantType::f32, false, 0},       {"F16", QuantType::f16, false, 1},
    {"BF16", QuantType::bf16, false, 32},    {"Q8_0", QuantType::q8_0, false, 7},
    {"Q4_0", QuantType::q4_0, false, 2},     {"Q4_1", QuantType::q4_1, false, 3},
    {"Q5_0", QuantType::q5_0, false, 8},     {"Q5_1", QuantType::q5_1, false, 9},
    {"Q2_K", QuantType::q2_k, false, 10},    {"Q3_K", QuantType::q3_k, false, 11},
    {"Q4_K", QuantType::q4_k, false, 14},    {"Q5_K", QuantType::q5_k, false, 16},
    {"Q6_K", QuantType::q6_k, false, 18},    {"IQ4_NL", QuantType::iq4_nl, false, 25},
    {"IQ4_XS", QuantType::iq4_xs, false, 30}, {"MXFP4", QuantType::mxfp4, false, 38},
    {"Q3_K_M", QuantType::q3_k, true, 12},   {"Q4_K_S", QuantType::q4_k, true, 14},
    {"Q4_K_M", QuantType::q4_k, true, 15},   {"Q5_K_S", QuantType::q5_k, true, 16},
    {"Q5_K_M", QuantType::q5_k, true, 17},   {"MXFP4_MOE", QuantType::mxfp4, true, 38},
};

bool is_usable(QuantType t) { return quant::traits(t).quantize_row != nullptr && quant::can_compute(t); }

// What a weight is, for llama-quantize's per-tensor rules.
enum class Slot { none, token_embd, output, attn_q, attn_k, attn_v, attn_output, ffn_down, other };

bool use_more_bits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

// llama_tensor_get_type for the mixes we offer (see synth.h), before the block-size fallback.
QuantType mix_type(const SynthType& t, const SynthConfig& c, Slot slot, int layer, const std::vector<int64_t>& ne) {
    const std::string& m = t.name;
    const QuantType base = t.base;
    const int n = c.n_layer;
    const bool eight_experts = c.n_expert == 8;
    // llama.cpp's LLM_TYPE_70B: 80 llama layers with grouped-query attention.
    const bool is_70b = c.arch == "llama" && c.n_layer == 80 && c.n_head != c.n_head_kv;
    if (slot == Slot::output || (slot == Slot::token_embd && c.tied_output)) {
        if (m == "MXFP4_MOE") return QuantType::q8_0;
        if (ne[0] % quant::block_size(base) != 0) return QuantType::q8_0;
        return QuantType::q6_k;
    }
    if (m == "MXFP4_MOE") return ne.size() > 2 && ne[2] > 1 ? QuantType::mxfp4 : QuantType::q8_0;
    QuantType nt = base;
    switch (slot) {
        case Slot::attn_v:
            if (m == "Q3_K_M") nt = layer < 2 ? QuantType::q5_k : QuantType::q4_k;
            else if ((m == "Q4_K_M" || m == "Q5_K_M") && use_more_bits(layer, n)) nt = QuantType::q6_k;
            else if (m == "Q4_K_S" && layer < 4) nt = QuantType::q5_k;
            if (is_70b && (nt == QuantType::q3_k || nt == QuantType::q4_k)) nt = QuantType::q5_k;
            if (eight_experts) nt = QuantType::q8_0;
            break;
        case Slot::attn_k:
            if (eight_experts) nt = QuantType::q8_0;
            break;
        case Slot::ffn_down:
            if (m == "Q3_K_M") nt = layer < n / 16 ? QuantType::q5_k : QuantType::q4_k;
            else if ((m == "Q4_K_M" || m == "Q5_K_M") && use_more_bits(layer, n)) nt = QuantType::q6_k;
            else if (m == "Q4_K_S" && layer < n / 8) nt = QuantType::q5_k;
            break;
        case Slot::attn_output:
            if (eight_experts) {
                if (m == "Q3_K_M" || m == "Q4_K_S" || m == "Q4_K_M") nt = QuantType::q5_k;
            } else if (m == "Q3_K_M") {
                nt = QuantType::q4_k;
            }
            break;
        default:
            break;
    }
    return nt;
}

// llama-quantize's replacement when a row does not fill whole blocks.
QuantType fallback_type(QuantType t) {
    switch (t) {
        case QuantType::q2_k:
        case QuantType::q3_k:
        case QuantType::iq4_xs: return QuantType::iq4_nl;
        case QuantType::q4_k: return QuantType::q5_0;
        case QuantType::q5_k: return QuantType::q5_1;
        case QuantType::q6_k: return QuantType::q8_0;
        default: return QuantType::f16;
    }
}

// ---------------------------------------------------------------------------------------------
// Vocabulary.

constexpr int32_t kTypeNormal = 1, kTypeControl = 3, kTypeUnused = 5;

const char* const kChatTemplateLlama3 =
    "{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + "
    "'<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";
const char* const kChatTemplateChatml =
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";
const char* const kChatTemplateMistral =
    "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' + "
    "message['content'] + ' [/INST]' }}{% else %}{{ message['content'] + eos_token }}{% endif %}{% endfor %}";

const char* chat_template_for(const std::string& family) {
    if (family == "llama") return kChatTemplateLlama3;
    if (family == "mixtral") return kChatTemplateMistral;
    if (family == "bert") return nullptr;
    return kChatTemplateChatml;
}

std::string utf8(uint32_t cp) {
    std::string s;
    if (cp < 0x80) {
        s += (char)cp;
    } else if (cp < 0x800) {
        s += (char)(0xC0 | (cp >> 6));
        s += (char)(0x80 | (cp & 0x3F));
    } else {
        s += (char)(0xE0 | (cp >> 12));
        s += (char)(0x80 | ((cp >> 6) & 0x3F));
        s += (char)(0x80 | (cp & 0x3F));
    }
    return s;
}

// The 256 byte tokens of GPT-2's byte-level BPE, in GPT-2's id order (bytes_to_unicode()).
std::vector<std::string> gpt2_byte_tokens() {
    std::vector<std::string> out;
    std::vector<bool> direct(256, false);
    for (int b = 0; b < 256; ++b) direct[b] = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
    for (int b = 0; b < 256; ++b)
        if (direct[b]) out.push_back(utf8((uint32_t)b));
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b)
        if (!direct[b]) out.push_back(utf8(next++));
    return out;
}

std::string reserved_token(int64_t id) { return "<|reserved_token_" + std::to_string(id) + "|>"; }

// Built-in vocabulary: byte-level BPE (256 byte tokens, no merges, pre "gpt-2") with the
// family's special tokens last, or for bert a small WordPiece table laid out like BERT's
// (specials at ids 0 and 100..103). Unused ids become <|reserved_token_N|> (UNUSED).
Status builtin_vocab(const SynthConfig& c, gguf::Metadata& meta) {
    const int64_t n = c.n_vocab;
    std::vector<std::string> tokens;
    std::vector<int32_t> types;
    auto put = [&](const std::string& key, gguf::Value v) { meta.set("tokenizer." + key, std::move(v)); };
    if (c.vocab == SynthVocab::wordpiece) {
        tokens.push_back("[PAD]");
        for (int i = 0; i < 99; ++i) tokens.push_back("[unused" + std::to_string(i) + "]");
        for (const char* s : {"[UNK]", "[CLS]", "[SEP]", "[MASK]"}) tokens.push_back(s);
        types.assign(tokens.size(), kTypeNormal);
        for (int id : {0, 100, 101, 102, 103}) types[id] = kTypeControl;
        for (int ch = 33; ch < 127; ++ch) tokens.push_back(std::string(1, (char)ch));
        for (int ch = 33; ch < 127; ++ch) tokens.push_back("##" + std::string(1, (char)ch));
        if (n < (int64_t)tokens.size())
            return error(StatusCode::invalid_argument,
                         strformat("vocabulary size %lld is too small for the built-in WordPiece vocabulary "
                                   "(at least %zu tokens)", (long long)n, tokens.size()));
        types.resize(tokens.size(), kTypeNormal);
        for (int64_t id = (int64_t)tokens.size(); id < n; ++id) tokens.push_back(reserved_token(id));
        types.resize(n, kTypeUnused);
        put("ggml.model", gguf::Value::make_string("bert"));
        put("ggml.pre", gguf::Value::make_string("bert-bge"));
        put("ggml.tokens", gguf::Value::make_string_array(tokens));
        put("ggml.token_type", gguf::Value::make_i32_array(types));
        put("ggml.unknown_token_id", gguf::Value::make_u32(100));
        put("ggml.seperator_token_id", gguf::Value::make_u32(102));
        put("ggml.padding_token_id", gguf::Value::make_u32(0));
        put("ggml.cls_token_id", gguf::Value::make_u32(101));
        put("ggml.mask_token_id", gguf::Value::make_u32(103));
        return {};
    }
    std::vector<std::string> specials;
    int bos = 0, eos = 0, eot = -1;
    bool add_bos = true;
    if (c.family == "llama") {
        specials = {"<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"};
        bos = 0, eos = 1, eot = 4;
    } else if (c.family == "mixtral") {
        specials = {"<unk>", "<s>", "</s>"};
        bos = 1, eos = 2;
    } else {
        specials = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
        bos = 0, eos = 2, add_bos = false;
    }
    tokens = gpt2_byte_tokens();
    if (n < (int64_t)(tokens.size() + specials.size()))
        return error(StatusCode::invalid_argument,
                     strformat("vocabulary size %lld is too small for the built-in byte-level vocabulary "
                               "(at least %zu tokens)", (long long)n, tokens.size() + specials.size()));
    types.assign(tokens.size(), kTypeNormal);
    const int64_t first_special = n - (int64_t)specials.size();
    for (int64_t id = (int64_t)tokens.size(); id < first_special; ++id) {
        tokens.push_back(reserved_token(id));
        types.push_back(kTypeUnused);
    }
    for (const auto& s : specials) {
        tokens.push_back(s);
        types.push_back(kTypeControl);
    }
    put("ggml.model", gguf::Value::make_string("gpt2"));
    put("ggml.pre", gguf::Value::make_string("gpt-2"));
    put("ggml.tokens", gguf::Value::make_string_array(tokens));
    put("ggml.token_type", gguf::Value::make_i32_array(types));
    put("ggml.merges", gguf::Value::make_string_array({}));  // llama.cpp requires the key for BPE
    put("ggml.bos_token_id", gguf::Value::make_u32((uint32_t)(first_special + bos)));
    put("ggml.eos_token_id", gguf::Value::make_u32((uint32_t)(first_special + eos)));
    if (eot >= 0) put("ggml.eot_token_id", gguf::Value::make_u32((uint32_t)(first_special + eot)));
    if (c.family == "mixtral") put("ggml.unknown_token_id", gguf::Value::make_u32((uint32_t)first_special));
    if (!add_bos) put("ggml.padding_token_id", gguf::Value::make_u32((uint32_t)(first_special + bos)));
    put("ggml.add_bos_token", gguf::Value::make_bool(add_bos));
    put("ggml.add_eos_token", gguf::Value::make_bool(false));
    return {};
}

// Copies every tokenizer.* key of `src`, padding tokens / scores / token_type up to c.n_vocab
// (or raising c.n_vocab to the vocabulary's size).
Status copy_vocab(const gguf::Metadata& src, SynthConfig& c, gguf::Metadata& meta, std::vector<std::string>& notes) {
    auto tokens_r = src.get_string_array("tokenizer.ggml.tokens");
    if (!tokens_r.ok()) return tokens_r.status().with_context("vocabulary");
    std::vector<std::string> tokens = std::move(tokens_r).value();
    const int64_t n_src = (int64_t)tokens.size();
    if (n_src == 0) return error(StatusCode::invalid_argument, "vocabulary: tokenizer.ggml.tokens is empty");
    if (n_src > c.n_vocab) {
        notes.push_back(strformat("the vocabulary has %lld tokens, more than the preset's %lld: the model gets %lld",
                                  (long long)n_src, (long long)c.n_vocab, (long long)n_src));
        c.n_vocab = n_src;
    } else if (n_src < c.n_vocab) {
        notes.push_back(strformat("padded the vocabulary from %lld to %lld tokens with <|reserved_token_N|> (UNUSED)",
                                  (long long)n_src, (long long)c.n_vocab));
    }
    const int64_t n = c.n_vocab;
    for (int64_t id = n_src; id < n; ++id) tokens.push_back(reserved_token(id));
    bool has_types = false;
    for (const auto& [key, value] : src.entries()) {
        if (key.rfind("tokenizer.", 0) != 0) continue;
        if (key == "tokenizer.ggml.tokens") {
            meta.set(key, gguf::Value::make_string_array(tokens));
        } else if (key == "tokenizer.ggml.scores" && n > n_src) {
            auto scores = src.get_f32_array(key);
            if (!scores.ok()) return scores.status().with_context("vocabulary");
            std::vector<float> s = std::move(scores).value();
            const float lowest = s.empty() ? 0.0f : *std::min_element(s.begin(), s.end());
            s.resize(n, lowest - 1.0f);  // never preferred over a real piece
            meta.set(key, gguf::Value::make_f32_array(s));
        } else if (key == "tokenizer.ggml.token_type" && n > n_src) {
            auto types = src.get_int_array(key);
            if (!types.ok()) return types.status().with_context("vocabulary");
            std::vector<int32_t> t(types.value().begin(), types.value().end());
            t.resize(n, kTypeUnused);
            meta.set(key, gguf::Value::make_i32_array(t));
            has_types = true;
        } else {
            meta.set(key, value);
            has_types = has_types || key == "tokenizer.ggml.token_type";
        }
    }
    if (!has_types && n > n_src) {
        std::vector<int32_t> t(n_src, kTypeNormal);
        t.resize(n, kTypeUnused);
        meta.set("tokenizer.ggml.token_type", gguf::Value::make_i32_array(t));
    }
    return {};
}

// ---------------------------------------------------------------------------------------------
// The tensor list.

struct Spec {
    SynthTensor t;
    Slot slot = Slot::none;  // none: not quantized (1-D, router, bert position/type embeddings)
    int layer = -1;
};

std::vector<Spec> tensor_specs(const SynthConfig& c) {
    std::vector<Spec> out;
    const int64_t q_dim = (int64_t)c.n_head * c.head_dim, kv_dim = (int64_t)c.n_head_kv * c.head_dim;
    const float depth = 1.0f / std::sqrt(2.0f * (float)c.n_layer);
    auto inv_sqrt = [](int64_t n) { return 1.0f / std::sqrt((float)n); };
    auto add = [&](std::string name, std::vector<int64_t> ne, Slot slot, float mean, float sd, int layer = -1) {
        Spec s;
        s.t.name = std::move(name);
        s.t.ne = std::move(ne);
        s.t.mean = mean;
        s.t.stddev = sd;
        s.slot = slot;
        s.layer = layer;
        out.push_back(std::move(s));
    };
    auto norm = [&](std::string name, int64_t n, int layer = -1) { add(std::move(name), {n}, Slot::none, 1.0f, 0.02f, layer); };
    auto bias = [&](std::string name, int64_t n, int layer = -1) { add(std::move(name), {n}, Slot::none, 0.0f, 0.02f, layer); };
    auto blk = [](int l, const char* n, const char* suffix = "weight") {
        return "blk." + std::to_string(l) + "." + n + "." + suffix;
    };

    if (c.arch == "bert") {
        add("token_embd.weight", {c.n_embd, c.n_vocab}, Slot::token_embd, 0.0f, 0.02f);
        add("token_types.weight", {c.n_embd, 2}, Slot::none, 0.0f, 0.02f);
        add("position_embd.weight", {c.n_embd, c.n_ctx}, Slot::none, 0.0f, 0.02f);
        norm("token_embd_norm.weight", c.n_embd);
        bias("token_embd_norm.bias", c.n_embd);
        for (int l = 0; l < c.n_layer; ++l) {
            const Slot qkv_slots[] = {Slot::attn_q, Slot::attn_k, Slot::attn_v};
            const char* qkv[] = {"attn_q", "attn_k", "attn_v"};
            for (int i = 0; i < 3; ++i) {
                add(blk(l, qkv[i]), {c.n_embd, c.n_embd}, qkv_slots[i], 0.0f, inv_sqrt(c.n_embd), l);
                bias(blk(l, qkv[i], "bias"), c.n_embd, l);
            }
            add(blk(l, "attn_output"), {c.n_embd, c.n_embd}, Slot::attn_output, 0.0f, inv_sqrt(c.n_embd) * depth, l);
            bias(blk(l, "attn_output", "bias"), c.n_embd, l);
            norm(blk(l, "attn_output_norm"), c.n_embd, l);
            bias(blk(l, "attn_output_norm", "bias"), c.n_embd, l);
            add(blk(l, "ffn_up"), {c.n_embd, c.n_ff}, Slot::other, 0.0f, inv_sqrt(c.n_embd), l);
            bias(blk(l, "ffn_up", "bias"), c.n_ff, l);
            add(blk(l, "ffn_down"), {c.n_ff, c.n_embd}, Slot::ffn_down, 0.0f, inv_sqrt(c.n_ff) * depth, l);
            bias(blk(l, "ffn_down", "bias"), c.n_embd, l);
            norm(blk(l, "layer_output_norm"), c.n_embd, l);
            bias(blk(l, "layer_output_norm", "bias"), c.n_embd, l);
        }
        return out;
    }

    if (c.arch == "llama" && c.rope_scale_factor > 0.0f) {
        add("rope_freqs.weight", {c.head_dim / 2}, Slot::none, 0.0f, 0.0f);
        out.back().t.is_rope_freqs = true;
    }
    add("token_embd.weight", {c.n_embd, c.n_vocab}, Slot::token_embd, 0.0f, 0.02f);
    const bool qkv_bias = c.arch == "qwen2";
    const bool qk_norm = c.arch == "qwen3" || c.arch == "qwen3moe";
    for (int l = 0; l < c.n_layer; ++l) {
        norm(blk(l, "attn_norm"), c.n_embd, l);
        add(blk(l, "attn_q"), {c.n_embd, q_dim}, Slot::attn_q, 0.0f, inv_sqrt(c.n_embd), l);
        if (qkv_bias) bias(blk(l, "attn_q", "bias"), q_dim, l);
        add(blk(l, "attn_k"), {c.n_embd, kv_dim}, Slot::attn_k, 0.0f, inv_sqrt(c.n_embd), l);
        if (qkv_bias) bias(blk(l, "attn_k", "bias"), kv_dim, l);
        add(blk(l, "attn_v"), {c.n_embd, kv_dim}, Slot::attn_v, 0.0f, inv_sqrt(c.n_embd), l);
        if (qkv_bias) bias(blk(l, "attn_v", "bias"), kv_dim, l);
        if (qk_norm) {
            norm(blk(l, "attn_q_norm"), c.head_dim, l);
            norm(blk(l, "attn_k_norm"), c.head_dim, l);
        }
        add(blk(l, "attn_output"), {q_dim, c.n_embd}, Slot::attn_output, 0.0f, inv_sqrt(q_dim) * depth, l);
        norm(blk(l, "ffn_norm"), c.n_embd, l);
        if (c.n_expert > 0) {
            const int64_t e = c.n_expert, f = c.n_ff_exp;
            add(blk(l, "ffn_gate_inp"), {c.n_embd, e}, Slot::none, 0.0f, inv_sqrt(c.n_embd), l);
            add(blk(l, "ffn_gate_exps"), {c.n_embd, f, e}, Slot::other, 0.0f, inv_sqrt(c.n_embd), l);
            add(blk(l, "ffn_up_exps"), {c.n_embd, f, e}, Slot::other, 0.0f, inv_sqrt(c.n_embd), l);
            add(blk(l, "ffn_down_exps"), {f, c.n_embd, e}, Slot::ffn_down, 0.0f, inv_sqrt(f) * depth, l);
        } else {
            add(blk(l, "ffn_gate"), {c.n_embd, c.n_ff}, Slot::other, 0.0f, inv_sqrt(c.n_embd), l);
            add(blk(l, "ffn_up"), {c.n_embd, c.n_ff}, Slot::other, 0.0f, inv_sqrt(c.n_embd), l);
            add(blk(l, "ffn_down"), {c.n_ff, c.n_embd}, Slot::ffn_down, 0.0f, inv_sqrt(c.n_ff) * depth, l);
        }
    }
    norm("output_norm.weight", c.n_embd);
    if (!c.tied_output) add("output.weight", {c.n_embd, c.n_vocab}, Slot::output, 0.0f, inv_sqrt(c.n_embd));
    return out;
}

void set_arch_metadata(const SynthConfig& c, gguf::Metadata& meta) {
    auto u32 = [&](const char* k, int64_t v) { meta.set(c.arch + "." + k, gguf::Value::make_u32((uint32_t)v)); };
    auto f32 = [&](const char* k, float v) { meta.set(c.arch + "." + k, gguf::Value::make_f32(v)); };
    if (c.arch == "llama") u32("vocab_size", c.n_vocab);
    u32("context_length", c.n_ctx);
    u32("embedding_length", c.n_embd);
    u32("block_count", c.n_layer);
    u32("feed_forward_length", c.n_ff);
    u32("attention.head_count", c.n_head);
    if (c.arch == "bert") {
        f32("attention.layer_norm_epsilon", c.norm_eps);
        meta.set("bert.attention.causal", gguf::Value::make_bool(false));
        u32("pooling_type", 2);  // CLS, as the BGE models
        return;
    }
    u32("attention.head_count_kv", c.n_head_kv);
    f32("rope.freq_base", c.rope_freq_base);
    f32("attention.layer_norm_rms_epsilon", c.norm_eps);
    u32("rope.dimension_count", c.head_dim);
    u32("attention.key_length", c.head_dim);
    u32("attention.value_length", c.head_dim);
    if (c.n_expert > 0) {
        u32("expert_count", c.n_expert);
        u32("expert_used_count", c.n_expert_used);
        if (c.arch != "llama") u32("expert_feed_forward_length", c.n_ff_exp);
    }
}

// ---------------------------------------------------------------------------------------------
// Random numbers: xoshiro256** seeded through splitmix64, one stream per (tensor, row).

uint64_t splitmix64(uint64_t& x) {
    uint64_t z = (x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

uint64_t fnv1a(std::string_view s) {
    uint64_t h = 0xCBF29CE484222325ull;
    for (char c : s) h = (h ^ (uint8_t)c) * 0x100000001B3ull;
    return h;
}

class Rng {
public:
    Rng(uint64_t stream, uint64_t index) {
        uint64_t x = stream ^ (index * 0xD1B54A32D192ED03ull);
        for (auto& w : s_) w = splitmix64(x);
    }
    uint64_t next() {
        const uint64_t result = rotl(s_[1] * 5, 7) * 9;
        const uint64_t t = s_[1] << 17;
        s_[2] ^= s_[0];
        s_[3] ^= s_[1];
        s_[1] ^= s_[2];
        s_[0] ^= s_[3];
        s_[2] ^= t;
        s_[3] = rotl(s_[3], 45);
        return result;
    }

private:
    static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
    uint64_t s_[4];
};

// out[i] = mean + sd * N(0, 1), Box-Muller on two 24-bit uniforms per 64-bit draw.
void fill_normal(Rng& rng, float* out, int64_t n, float mean, float sd) {
    constexpr float kTwoPi = 6.28318530717958647692f;
    for (int64_t i = 0; i < n; i += 2) {
        const uint64_t r = rng.next();
        const float u1 = (float)((r >> 40) + 1) * 0x1.0p-24f;       // (0, 1]
        const float u2 = (float)((r >> 16) & 0xFFFFFF) * 0x1.0p-24f;  // [0, 1)
        const float rad = sd * std::sqrt(-2.0f * std::log(u1));
        out[i] = mean + rad * std::cos(kTwoPi * u2);
        if (i + 1 < n) out[i + 1] = mean + rad * std::sin(kTwoPi * u2);
    }
}

Status fill_tensor(const SynthTensor& t, const SynthConfig& c, uint64_t seed, ThreadPool& pool,
                   std::span<std::byte> dst) {
    if (dst.size() != t.n_bytes)
        return error(StatusCode::internal, strformat("buffer of %zu bytes for %llu", dst.size(), (unsigned long long)t.n_bytes));
    const quant::TypeTraits& tr = quant::traits(t.type);
    if (t.is_rope_freqs) {
        const std::vector<float> f = llama3_rope_factors(c);
        tr.quantize_row(f.data(), dst.data(), (int64_t)f.size());
        return {};
    }
    const int64_t n_row = t.ne[0];
    int64_t rows = 1;
    for (size_t d = 1; d < t.ne.size(); ++d) rows *= t.ne[d];
    const size_t row_bytes = quant::row_size(t.type, n_row);
    uint64_t x = seed ^ fnv1a(t.name);
    const uint64_t stream = splitmix64(x);
    pool.parallel_for(rows, std::max<int64_t>(1, (int64_t{1} << 16) / n_row), [&](int64_t begin, int64_t end) {
        std::vector<float> row(n_row);  // [n_row] f32 scratch of this chunk
        for (int64_t r = begin; r < end; ++r) {
            Rng rng(stream, (uint64_t)r);
            fill_normal(rng, row.data(), n_row, t.mean, t.stddev);
            tr.quantize_row(row.data(), dst.data() + r * row_bytes, n_row);
        }
    });
    return {};
}

Status check_disk_space(const std::string& path, uint64_t need) {
    namespace fs = std::filesystem;
    std::error_code ec;
    fs::path dir = fs::path(path).parent_path();
    if (dir.empty()) dir = ".";
    if (!fs::is_directory(dir, ec)) return error(StatusCode::not_found, "folder " + dir.string() + " does not exist");
    if (fs::is_directory(path, ec)) return error(StatusCode::invalid_argument, path + " is a folder");
    struct statvfs sv;
    if (statvfs(dir.c_str(), &sv) != 0)
        return error(StatusCode::io_error, "cannot read the free space of " + dir.string() + ": " + std::strerror(errno));
    const uint64_t free_bytes = (uint64_t)sv.f_bavail * sv.f_frsize;
    const uint64_t margin = uint64_t{16} << 20;
    if (free_bytes < need + margin)
        return error(StatusCode::resource_exhausted,
                     strformat("not enough disk space in %s: the model needs %.2f GB, %.2f GB are free",
                               dir.c_str(), need / 1e9, free_bytes / 1e9));
    return {};
}

}  // namespace

// ---------------------------------------------------------------------------------------------

const std::vector<SynthConfig>& synth_presets() {
    static const std::vector<SynthConfig> kPresets = make_presets();
    return kPresets;
}

Result<SynthConfig> find_synth_preset(std::string_view name_in, std::string_view arch_in) {
    const std::string arch = to_lower(arch_in);
    std::string name = to_lower(name_in);
    if (!arch.empty() && std::find(kFamilies.begin(), kFamilies.end(), arch) == kFamilies.end())
        return error(StatusCode::invalid_argument,
                     "unknown architecture '" + std::string(arch_in) + "' (known: " + join(kFamilies) + ")");
    if (name == "tiny") name = (arch.empty() ? std::string("llama") : arch) + "-tiny";
    for (const SynthConfig& p : synth_presets()) {
        if (p.preset != name) continue;
        if (!arch.empty() && arch != p.arch && arch != p.family)
            return error(StatusCode::invalid_argument,
                         strformat("preset %s is a %s model (architecture %s), not %s", p.preset.c_str(),
                                   p.family.c_str(), p.arch.c_str(), arch.c_str()));
        return p;
    }
    std::vector<std::string> names;
    for (const SynthConfig& p : synth_presets()) names.push_back(p.preset);
    return error(StatusCode::invalid_argument,
                 "unknown preset '" + std::string(name_in) + "' (known: tiny, " + join(names) + ")");
}

Status apply_synth_overrides(SynthConfig& c, const SynthOverrides& ov) {
    const bool head_dim_follows = (int64_t)c.head_dim * c.n_head == c.n_embd;
    auto set = [](const std::optional<int64_t>& v, auto& field, const char* what, int64_t lo, int64_t hi) -> Status {
        if (!v) return {};
        if (*v < lo || *v > hi)
            return error(StatusCode::invalid_argument,
                         strformat("%s must be in [%lld, %lld], got %lld", what, (long long)lo, (long long)hi, (long long)*v));
        field = (std::remove_reference_t<decltype(field)>)*v;
        return {};
    };
    constexpr int64_t kBig = int64_t{1} << 24;
    HEARTH_TRY(set(ov.n_layer, c.n_layer, "--layers", 1, 4096));
    HEARTH_TRY(set(ov.n_embd, c.n_embd, "--embd", 1, kBig));
    HEARTH_TRY(set(ov.n_ff, c.n_ff, "--ff", 1, kBig));
    HEARTH_TRY(set(ov.n_head, c.n_head, "--heads", 1, 65536));
    HEARTH_TRY(set(ov.n_head_kv, c.n_head_kv, "--kv-heads", 1, 65536));
    HEARTH_TRY(set(ov.head_dim, c.head_dim, "--head-dim", 2, 65536));
    HEARTH_TRY(set(ov.n_expert, c.n_expert, "--experts", 0, 4096));
    HEARTH_TRY(set(ov.n_expert_used, c.n_expert_used, "--experts-used", 1, 4096));
    HEARTH_TRY(set(ov.n_vocab, c.n_vocab, "--vocab-size", 1, int64_t{1} << 31));
    HEARTH_TRY(set(ov.n_ctx, c.n_ctx, "--ctx", 1, int64_t{1} << 31));
    if (ov.n_ff_exp) {
        HEARTH_TRY(set(ov.n_ff_exp, c.n_ff_exp, "--expert-ff", 1, kBig));
        if (c.arch == "llama") {  // llama experts have the dense width: --expert-ff is --ff
            if (ov.n_ff && *ov.n_ff != *ov.n_ff_exp)
                return error(StatusCode::invalid_argument, "llama experts use feed_forward_length: give --ff or --expert-ff, not two values");
            c.n_ff = c.n_ff_exp;
        }
    }
    if (c.arch == "llama") c.n_ff_exp = c.n_ff;
    if ((ov.n_embd || ov.n_head) && !ov.head_dim && head_dim_follows) {
        if (c.n_embd % c.n_head != 0)
            return error(StatusCode::invalid_argument,
                         strformat("n_embd %lld is not a multiple of %d heads; give --head-dim", (long long)c.n_embd, c.n_head));
        c.head_dim = (int)(c.n_embd / c.n_head);
    }
    if (c.arch == "bert") {
        if (!ov.n_head_kv) c.n_head_kv = c.n_head;
        if (c.n_head_kv != c.n_head) return error(StatusCode::invalid_argument, "bert has no grouped-query attention: --kv-heads must equal --heads");
        if ((int64_t)c.head_dim * c.n_head != c.n_embd)
            return error(StatusCode::invalid_argument, strformat("bert needs heads x head size = n_embd (%d x %d != %lld)",
                                                                 c.n_head, c.head_dim, (long long)c.n_embd));
    }
    if (ov.n_head && !ov.n_head_kv && c.n_head_kv > c.n_head) c.n_head_kv = c.n_head;
    if (c.n_head % c.n_head_kv != 0)
        return error(StatusCode::invalid_argument,
                     strformat("%d attention heads cannot be shared by %d kv heads", c.n_head, c.n_head_kv));
    if (c.head_dim % 2 != 0) return error(StatusCode::invalid_argument, "the head size must be even (rope rotates pairs)");
    if (c.n_expert > 0) {
        if (c.arch != "llama" && c.arch != "qwen3moe")
            return error(StatusCode::invalid_argument, "architecture " + c.arch + " has no experts (use qwen3moe or llama)");
        if (!ov.n_expert_used && c.n_expert_used == 0) c.n_expert_used = std::min(2, c.n_expert);
        if (c.n_expert_used > c.n_expert)
            return error(StatusCode::invalid_argument,
                         strformat("%d experts used per token but only %d experts", c.n_expert_used, c.n_expert));
        if (c.n_ff_exp == 0) c.n_ff_exp = c.n_ff;
        if (c.arch == "llama") c.family = "mixtral";
    } else {
        if (c.arch == "qwen3moe") return error(StatusCode::invalid_argument, "qwen3moe needs at least one expert");
        if (ov.n_expert_used) return error(StatusCode::invalid_argument, "--experts-used needs a model with experts");
        c.n_expert_used = 0;
        c.n_ff_exp = 0;
        if (c.family == "mixtral") c.family = "llama";
    }
    return {};
}

std::vector<std::string> synth_type_names() {
    std::vector<std::string> out;
    for (const TypeRow& r : kTypes)
        if (is_usable(r.base)) out.push_back(r.name);
    return out;
}

Result<SynthType> parse_synth_type(std::string_view name_in) {
    const std::string name = to_upper(name_in);
    for (const TypeRow& r : kTypes) {
        if (name != r.name) continue;
        if (!is_usable(r.base) || (r.is_mix && !is_usable(QuantType::q6_k)))
            return error(StatusCode::unsupported, "type " + name + " has no quantizer in this build (choose one of: " +
                                                      join(synth_type_names()) + ")");
        return SynthType{name, r.base, r.is_mix, r.file_type};
    }
    if (quant::parse_type_name(name))
        return error(StatusCode::unsupported, "type " + name + " cannot be generated: hearth has no quantizer for it as "
                                                                  "a weight type (choose one of: " +
                                                  join(synth_type_names()) + ")");
    return error(StatusCode::invalid_argument,
                 "unknown type '" + std::string(name_in) + "' (choose one of: " + join(synth_type_names()) + ")");
}

std::vector<float> llama3_rope_factors(const SynthConfig& c) {
    // convert_hf_to_gguf.py LlamaModel.generate_extra_tensors, in float32 like its torch code.
    const int dim = c.head_dim;
    const float factor = c.rope_scale_factor, low = c.rope_low_freq_factor, high = c.rope_high_freq_factor;
    const float old_ctx = (float)c.rope_orig_ctx;
    const float low_freq_wavelen = old_ctx / low, high_freq_wavelen = old_ctx / high;
    std::vector<float> out;
    for (int i = 0; i < dim; i += 2) {
        const float freq = 1.0f / std::pow(c.rope_freq_base, (float)i / (float)dim);
        const float wavelen = 2.0f * (float)M_PI / freq;
        if (wavelen < high_freq_wavelen) {
            out.push_back(1.0f);
        } else if (wavelen > low_freq_wavelen) {
            out.push_back(factor);
        } else {
            const float smooth = (old_ctx / wavelen - low) / (high - low);
            out.push_back(1.0f / ((1.0f - smooth) / factor + smooth));
        }
    }
    return out;
}

Result<SynthPlan> plan_synth(const SynthOptions& o) {
    SynthPlan plan;
    plan.config = o.config;
    SynthConfig& c = plan.config;
    if (o.type.name.empty()) return error(StatusCode::invalid_argument, "no tensor type given");

    gguf::Metadata tok_meta;
    if (o.vocab) HEARTH_TRY(copy_vocab(*o.vocab, c, tok_meta, plan.notes));
    else HEARTH_TRY(builtin_vocab(c, tok_meta));
    if (!tok_meta.has("tokenizer.chat_template"))
        if (const char* tmpl = chat_template_for(c.family)) tok_meta.set("tokenizer.chat_template", gguf::Value::make_string(tmpl));
    if (c.arch == "bert" && !tok_meta.has("tokenizer.ggml.token_type_count"))
        tok_meta.set("tokenizer.ggml.token_type_count", gguf::Value::make_u32(2));

    gguf::Metadata& meta = plan.meta;
    meta.set("general.architecture", gguf::Value::make_string(c.arch));
    meta.set("general.type", gguf::Value::make_string("model"));
    bool modified = true;  // shapes differ from the named checkpoint's (overrides, vocabulary)
    for (const SynthConfig& p : synth_presets())
        if (p.preset == c.preset)
            modified = p.n_vocab != c.n_vocab || p.n_embd != c.n_embd || p.n_layer != c.n_layer || p.n_ff != c.n_ff ||
                       p.n_head != c.n_head || p.n_head_kv != c.n_head_kv || p.head_dim != c.head_dim ||
                       p.n_expert != c.n_expert || p.n_ff_exp != c.n_ff_exp || p.n_ctx != c.n_ctx;
    meta.set("general.name",
             gguf::Value::make_string(c.model_name + (modified ? " (random weights, other shapes)" : " (random weights)")));
    meta.set("general.description",
             gguf::Value::make_string(strformat("hearth synth: preset %s, type %s, seed %llu. Random weights, not a trained model.",
                                                c.preset.c_str(), o.type.name.c_str(), (unsigned long long)o.seed)));
    set_arch_metadata(c, meta);
    meta.set("general.file_type", gguf::Value::make_u32(o.type.file_type));
    meta.set("general.quantization_version", gguf::Value::make_u32(2));
    for (const auto& [k, v] : tok_meta.entries()) meta.set(k, v);

    // Fallbacks grouped by (from, to, row length) so a 28-layer model gives one line per kind.
    struct Fallback { int count = 0; std::string first; };
    std::map<std::tuple<int, int, int64_t>, Fallback> fallbacks;
    for (Spec& s : tensor_specs(c)) {
        SynthTensor& t = s.t;
        QuantType want = QuantType::f32;
        if (s.slot != Slot::none) want = o.type.is_mix ? mix_type(o.type, c, s.slot, s.layer, t.ne) : o.type.base;
        t.type = want;
        if (t.ne[0] % quant::block_size(want) != 0) {
            t.type = fallback_type(want);
            if (t.ne[0] % quant::block_size(t.type) != 0) t.type = QuantType::f16;
            Fallback& f = fallbacks[{(int)want, (int)t.type, t.ne[0]}];
            if (f.count++ == 0) f.first = t.name;
        }
        int64_t n_el = 1;
        for (int64_t d : t.ne) n_el *= d;
        t.n_bytes = (uint64_t)(n_el / quant::block_size(t.type)) * quant::type_size(t.type);
        plan.n_params += (uint64_t)n_el;
        plan.tensor_bytes += t.n_bytes;
        plan.tensors.push_back(std::move(t));
    }
    for (const auto& [key, f] : fallbacks) {
        const QuantType from = (QuantType)std::get<0>(key), to = (QuantType)std::get<1>(key);
        plan.notes.push_back(strformat("%d tensor%s with rows of %lld values (not a multiple of %s's block of %lld) stored as "
                                       "%s instead (first: %s)",
                                       f.count, f.count == 1 ? "" : "s", (long long)std::get<2>(key),
                                       to_upper(quant::type_name(from)).c_str(), (long long)quant::block_size(from),
                                       to_upper(quant::type_name(to)).c_str(), f.first.c_str()));
    }
    return plan;
}

Result<uint64_t> write_synth(const SynthOptions& o, const SynthPlan& plan, const std::string& path) {
    gguf::GgufWriter writer;
    for (const auto& [k, v] : plan.meta.entries()) writer.set(k, v);
    ThreadPool pool(o.n_threads);
    SynthProgress progress;
    progress.n_tensors = (int)plan.tensors.size();
    progress.bytes_total = plan.tensor_bytes;
    for (const SynthTensor& t : plan.tensors) {
        HEARTH_TRY(writer.add_tensor_lazy(t.name, t.type, t.ne, [&](std::span<std::byte> dst) -> Status {
            progress.name = t.name;
            if (o.on_progress) o.on_progress(progress);
            HEARTH_TRY(fill_tensor(t, plan.config, o.seed, pool, dst));
            progress.tensor++;
            progress.bytes_done += t.n_bytes;
            return {};
        }));
    }
    HEARTH_ASSIGN(const uint64_t file_bytes, writer.file_size());
    HEARTH_TRY(check_disk_space(path, file_bytes));
    HEARTH_TRY(writer.write_file(path));
    progress.name = {};
    if (o.on_progress) o.on_progress(progress);
    return file_bytes;
}

}  // namespace hearth::model
