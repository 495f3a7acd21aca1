// The flash-attention launcher of attention_cuda (attention_flash.cu), for attention.cu only.
#pragma once

#include <cstdint>

#include "backend/cuda/attention.h"

namespace hearth::backend {

// attention_cuda's prefill path, for calls attention_cuda_uses_flash accepts (the caller checks
// the arguments and makes the device current); failures are recorded on the stream's device.
void flash_attention_cuda(cuda::Stream& stream, const float* q, const PagedKvCuda& kv, const AttnIndexCuda& idx,
                          int64_t n_tokens, const AttentionParams& p, float* out);

}  // namespace hearth::backend
