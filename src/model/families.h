// Loaders of every architecture family; registry.cpp maps GGUF architecture names to them.
#pragma once

#include "model/model.h"

namespace hearth::model {

Result<std::unique_ptr<Model>> load_llama(std::shared_ptr<const gguf::GgufFile> file, const LoadOptions& opts);
Result<std::unique_ptr<Model>> load_qwen2(std::shared_ptr<const gguf::GgufFile> file, const LoadOptions& opts);
Result<std::unique_ptr<Model>> load_qwen3(std::shared_ptr<const gguf::GgufFile> file, const LoadOptions& opts);
Result<std::unique_ptr<Model>> load_qwen3moe(std::shared_ptr<const gguf::GgufFile> file, const LoadOptions& opts);
Result<std::unique_ptr<Model>> load_bert(std::shared_ptr<const gguf::GgufFile> file, const LoadOptions& opts);
Result<std::unique_ptr<Model>> load_gpt_oss(std::shared_ptr<const gguf::GgufFile> file, const LoadOptions& opts);
Result<std::unique_ptr<Model>> load_llama4(std::shared_ptr<const gguf::GgufFile> file, const LoadOptions& opts);
Result<std::unique_ptr<Model>> load_deepseek2(std::shared_ptr<const gguf::GgufFile> file, const LoadOptions& opts);
Result<std::unique_ptr<Model>> load_phi3(std::shared_ptr<const gguf::GgufFile> file, const LoadOptions& opts);
Result<std::unique_ptr<Model>> load_gemma3(std::shared_ptr<const gguf::GgufFile> file, const LoadOptions& opts);

// n_vocab from the token embedding's shape (every family has token_embd.weight).
Status read_vocab_size(const gguf::GgufFile& file, Hparams& hp);

}  // namespace hearth::model
