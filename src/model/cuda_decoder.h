// The plain llama-style Decoder family (llama, qwen2, qwen3; dense only) run on one CUDA GPU:
// weights uploaded once at load, the KV cache on the device (f16), every op of a forward pass
// on the device (backend/cuda), only the requested logits copied back. Same Model interface
// and ForwardOutput as the CPU Decoder (model/blocks.h), so callers can pick either.
//
// The KvCache passed to forward() serves as the block allocator and must be f16: block ids and
// positions mean the same as on the CPU, but the cached rows live in a device pool of the same
// geometry that this model owns (allocated on first use, reallocated, and so emptied, when a
// cache of another block count or block size comes). The host cache's own rows are not
// written, so read_block/write_block (moving blocks to disk) see nothing of the GPU's KV. One
// device pool per model: two KvCaches of the same geometry used with one model at once (two
// Engines) would share it.
//
// Batches of <= 64 tokens run on int8 activations: up to 4 tokens through the dp4a
// matrix-vector kernels (fastest for one stream), 5..64 through the integer tensor-core matmul,
// which reads the weights once per step and is batch-invariant within that range; larger ones
// (prefill) the f16 tensor-core GEMM, which rounds activations to f16. Logits come back in
// page-locked memory (ForwardOutput::logits).
//
// load_model (model.h) picks it when LoadOptions::num_gpu allows the GPU; runtime::Engine then
// keeps an f16 pool without the disk tier for it (Model::kv_on_device()).
#pragma once

#include <memory>

#include "model/model.h"

namespace hearth::model {

// Loads `file` for the GPU `device` (CUDA runtime ordinal). Errors, each leaving nothing
// allocated on the device: unsupported for an architecture other than llama/qwen2/qwen3, for
// experts, pooling, LoRA adapters (LoadOptions::adapters: applied on the CPU only), a KV-less
// layout, or a weight type the CUDA matmul lacks (the message names
// the tensor and type: the caller keeps the CPU path); not_found when there is no CUDA device
// or hearth was built without CUDA; resource_exhausted when the weights do not fit.
Result<std::unique_ptr<Model>> load_model_cuda(std::shared_ptr<const gguf::GgufFile> file, const LoadOptions& opts,
                                               int device = 0);

}  // namespace hearth::model
