// Importing a Hugging Face checkpoint directory (config.json, tokenizer.json /
// tokenizer_config.json, *.safetensors, sharded or not; F32/F16/BF16) as GGUF for the supported
// architectures, with the metadata, tokenizer and chat template llama.cpp's converter writes.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "base/status.h"

namespace hearth::store {

struct ConvertOptions {
    std::string out_type = "f16";  // f32, f16, bf16 (quantize afterwards with quantize_gguf)
    std::function<void(int64_t done, int64_t total)> progress;  // output bytes
};

// True when `dir` looks like a checkpoint (config.json and at least one *.safetensors).
bool is_hf_checkpoint(const std::string& dir);

// Writes the GGUF to out_path (temporary name, fsync, rename). Errors name the file and field:
// unsupported architecture (listing the supported ones), missing or malformed config, shards
// that disagree with model.safetensors.index.json, tensors of the wrong shape.
Status convert_hf_checkpoint(const std::string& dir, const std::string& out_path, const ConvertOptions& opt);

}  // namespace hearth::store
