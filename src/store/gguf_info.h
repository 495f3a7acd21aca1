// What the store, /api/tags, /api/show and the memory estimate need to know about a GGUF file
// without loading the model: architecture, sizes, training context, quantization, chat template
// and the KV cache layout, read from its metadata (the file is mapped, its tensors untouched).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "gguf/gguf.h"
#include "model/kv_cache.h"

namespace hearth::store {

struct GgufInfo {
    std::string architecture;      // general.architecture
    int64_t file_bytes = 0;        // the whole file (what is mapped)
    int64_t n_params = 0;          // elements of every tensor
    int64_t n_ctx_train = 0;       // {arch}.context_length; 0 when absent
    int64_t n_embd = 0;            // {arch}.embedding_length
    int64_t n_ff = 0;              // {arch}.feed_forward_length (the largest, when per layer); 0 when absent
    int64_t q_dim = 0;             // attention heads x key head dim (query width); 0 when unknown
    std::string parameter_size;    // general.size_label, else Ollama's HumanNumber of n_params ("8.0B")
    std::string quantization;      // "Q4_K_M", "F16", ... from general.file_type, else the commonest type
    std::string chat_template;     // tokenizer.chat_template; "" when absent
    bool embedding = false;        // a model that pools (bert family, or {arch}.pooling_type set)
    bool has_fim = false;          // the vocabulary has fill-in-the-middle tokens
    int64_t n_vocab = 0;           // entries of tokenizer.ggml.tokens; 0 when absent
    // Estimate of the KV layout (what model::Model::kv_layout() will say), for plan_kv before
    // loading: n_head_kv x key/value head dims per layer. MLA models (deepseek2) are counted
    // as their latent row.
    model::KvLayout kv_layout;
    // The file's metadata, for /api/show's model_info. Shared: several requests read it.
    std::shared_ptr<const gguf::GgufFile> file;
};

// Opens (maps) and parses `path`. Errors name the path.
Result<GgufInfo> read_gguf_info(const std::string& path);

// Ollama's format.HumanNumber: 8030261248 -> "8.0B", 494032768 -> "494.03M", 260000 -> "260K".
std::string human_number(int64_t n);

// llama.cpp's file type names (general.file_type), "" for an unknown id.
std::string file_type_name(int64_t file_type);

}  // namespace hearth::store
