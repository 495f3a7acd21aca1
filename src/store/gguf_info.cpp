#include "store/gguf_info.h"

#include <cmath>
#include <map>

#include "quant/types.h"

namespace hearth::store {
namespace {

int64_t meta_int(const gguf::Metadata& m, const std::string& key, int64_t def) {
    const gguf::Value* v = m.find(key);
    int64_t out = def;
    if (!v) return def;
    if (v->type == gguf::ValueType::array) {  // per-layer counts (head_count_kv of some families): take the largest
        int64_t best = def;
        bool any = false;
        for (const auto& item : v->items) {
            int64_t x;
            if (item.to_i64(x)) best = any ? std::max(best, x) : x, any = true;
        }
        return best;
    }
    return v->to_i64(out) ? out : def;
}

std::string upper(std::string s) {
    for (char& c : s) c = (char)std::toupper((unsigned char)c);
    return s;
}

}  // namespace

std::string human_number(int64_t n) {
    const double b = (double)n;
    if (n >= 1000000000) {
        const double x = b / 1e9;
        return x == std::floor(x) ? strformat("%.0fB", x) : strformat("%.1fB", x);
    }
    if (n >= 1000000) {
        const double x = b / 1e6;
        return x == std::floor(x) ? strformat("%.0fM", x) : strformat("%.2fM", x);
    }
    if (n >= 1000) return strformat("%.0fK", b / 1e3);
    return std::to_string(n);
}

std::string file_type_name(int64_t t) {
    static const std::map<int64_t, const char*> kNames = {
        {0, "F32"},      {1, "F16"},     {2, "Q4_0"},    {3, "Q4_1"},     {7, "Q8_0"},     {8, "Q5_0"},
        {9, "Q5_1"},     {10, "Q2_K"},   {11, "Q3_K_S"}, {12, "Q3_K_M"},  {13, "Q3_K_L"},  {14, "Q4_K_S"},
        {15, "Q4_K_M"},  {16, "Q5_K_S"}, {17, "Q5_K_M"}, {18, "Q6_K"},    {19, "IQ2_XXS"}, {20, "IQ2_XS"},
        {21, "Q2_K_S"},  {22, "IQ3_XS"}, {23, "IQ3_XXS"}, {24, "IQ1_S"},  {25, "IQ4_NL"},  {26, "IQ3_S"},
        {27, "IQ3_M"},   {28, "IQ2_S"},  {29, "IQ2_M"},  {30, "IQ4_XS"},  {31, "IQ1_M"},   {32, "BF16"},
        {36, "TQ1_0"},   {37, "TQ2_0"},  {38, "MXFP4_MOE"},
    };
    auto it = kNames.find(t);
    return it == kNames.end() ? std::string() : it->second;
}

Result<GgufInfo> read_gguf_info(const std::string& path) {
    HEARTH_ASSIGN(std::shared_ptr<gguf::GgufFile> f, gguf::open_gguf(path));
    const gguf::Metadata& m = f->meta;
    GgufInfo info;
    info.architecture = f->architecture();
    info.file_bytes = (int64_t)f->bytes.size();
    std::map<quant::QuantType, int64_t> bytes_by_type;
    for (const auto& t : f->tensors) {
        info.n_params += t.n_elements();
        if (t.n_dims >= 2) bytes_by_type[t.type] += (int64_t)t.n_bytes;
    }
    const std::string a = info.architecture + ".";
    info.n_ctx_train = meta_int(m, a + "context_length", 0);
    info.n_embd = meta_int(m, a + "embedding_length", 0);
    auto label = m.get_string_or("general.size_label", "");
    info.parameter_size = label.ok() && !label->empty() ? *label : human_number(info.n_params);
    if (const gguf::Value* ft = m.find("general.file_type"); ft) {
        int64_t id;
        if (ft->to_i64(id)) info.quantization = file_type_name(id);
    }
    if (info.quantization.empty()) {  // the type holding most matrix bytes
        int64_t best = -1;
        for (const auto& [type, n] : bytes_by_type)
            if (n > best) best = n, info.quantization = upper(quant::type_name(type));
    }
    auto tmpl = m.get_string_or("tokenizer.chat_template", "");
    if (tmpl.ok()) info.chat_template = *tmpl;
    info.embedding = info.architecture.find("bert") != std::string::npos ||
                     meta_int(m, a + "pooling_type", 0) != 0;
    if (auto tokens = m.get_string_array("tokenizer.ggml.tokens"); tokens.ok()) {
        info.n_vocab = (int64_t)tokens->size();
        for (const auto& t : *tokens)
            if (t == "<|fim_prefix|>" || t == "<fim_prefix>" || t == "<｜fim▁begin｜>" || t == "<PRE>") info.has_fim = true;
    }
    // KV layout, as model/hparams.cpp and the families derive it.
    const int n_layer = (int)meta_int(m, a + "block_count", 0);
    const int64_t n_head = meta_int(m, a + "attention.head_count", 0);
    const int64_t n_head_kv = meta_int(m, a + "attention.head_count_kv", n_head);
    const int64_t default_hd = n_head > 0 ? info.n_embd / n_head : 0;
    int64_t hd_k = meta_int(m, a + "attention.key_length", default_hd);
    int64_t hd_v = meta_int(m, a + "attention.value_length", hd_k);
    info.n_ff = meta_int(m, a + "feed_forward_length", 0);
    info.q_dim = n_head * hd_k;
    int64_t kv_heads = n_head_kv;
    if (m.has(a + "attention.kv_lora_rank")) {  // MLA: one latent row per position
        const int64_t lora = meta_int(m, a + "attention.kv_lora_rank", 0);
        const int64_t rot = meta_int(m, a + "rope.dimension_count", 0);
        hd_k = lora + rot;
        hd_v = lora;
        kv_heads = 1;
    }
    if (n_layer > 0 && kv_heads > 0 && hd_k > 0 && hd_v > 0) {
        model::KvLayout& l = info.kv_layout;
        l.n_layer = n_layer;
        l.k_width.assign(n_layer, (int)(kv_heads * hd_k));
        l.v_width.assign(n_layer, (int)(kv_heads * hd_v));
        l.k_head_dim.assign(n_layer, (int)hd_k);
        l.v_head_dim.assign(n_layer, (int)hd_v);
    }
    info.file = std::move(f);
    return info;
}

}  // namespace hearth::store
