// Importing a Hugging Face checkpoint directory (config.json, tokenizer.json /
// tokenizer_config.json, *.safetensors, sharded or not; F32/F16/BF16) as GGUF for the supported
// architectures, with the metadata, tokenizer and chat template llama.cpp's converter
// (convert_hf_to_gguf.py) writes, so the result loads and runs exactly like its conversion.
//
// Architectures (config.json "architectures"[0]):
//   LlamaForCausalLM, MistralForCausalLM -> llama (q_proj/k_proj rows permuted from the
//       rotate-half layout HF stores to the interleaved pairs GGUF llama rotates; Llama 3.x
//       "llama3" rope scaling written as rope_freqs.weight)
//   MixtralForCausalLM                   -> llama with experts (stacked into 3-D tensors)
//   Qwen2ForCausalLM                     -> qwen2 (q/k/v biases)
//   Qwen3ForCausalLM                     -> qwen3 (q/k RMS norms)
//   Qwen3MoeForCausalLM                  -> qwen3moe (per-expert or fused expert tensors)
// Tensors: 1-D tensors, *_norm weights and MoE routers are F32; the others take out_type.
// Tokenizers: see store/hf_tokenizer.h (byte-level BPE and SentencePiece-style BPE).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "base/status.h"

namespace hearth::store {

struct ConvertOptions {
    // f32, f16, bf16 (case-insensitive; quantize afterwards with quantize_gguf), or "auto": the
    // checkpoint's torch_dtype (float32 -> f32, bfloat16 -> bf16, anything else f16).
    std::string out_type = "f16";
    std::function<void(int64_t done, int64_t total)> progress;  // output bytes, on the calling thread
};

// True when `dir` looks like a checkpoint (config.json and at least one *.safetensors).
bool is_hf_checkpoint(const std::string& dir);

// The config.json architectures convert_hf_checkpoint accepts.
std::vector<std::string> hf_supported_architectures();

// Writes the GGUF to out_path (temporary name, fsync, rename). Errors name the file and field:
// unsupported architecture (listing the supported ones), missing or malformed config, shards
// that disagree with model.safetensors.index.json, tensors of the wrong shape, missing or
// unknown tensors. Every check that needs no tensor data runs before the output file is
// created; on any error nothing exists at out_path (an older file there is left untouched).
// Peak memory: the tokenizer metadata plus one output tensor.
Status convert_hf_checkpoint(const std::string& dir, const std::string& out_path, const ConvertOptions& opt);

}  // namespace hearth::store
