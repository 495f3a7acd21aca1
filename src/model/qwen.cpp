// qwen2 (Qwen2/2.5: q/k/v biases), qwen3 (q/k RMS norms, no biases) and qwen3moe (qwen3
// attention with softmax-routed experts). RoPE rotates halves (neox). model/blocks.*: Decoder.
#include "model/blocks.h"
#include "model/families.h"

namespace hearth::model {

Result<std::unique_ptr<Model>> load_qwen2(std::shared_ptr<const gguf::GgufFile> file, const LoadOptions& opts) {
    return load_decoder(std::move(file), opts, "qwen2", DecoderSpec{.qkv_bias = true, .rope_neox = true}, 1e-6f);
}

Result<std::unique_ptr<Model>> load_qwen3(std::shared_ptr<const gguf::GgufFile> file, const LoadOptions& opts) {
    return load_decoder(std::move(file), opts, "qwen3", DecoderSpec{.qk_norm = true, .rope_neox = true}, 1e-6f);
}

Result<std::unique_ptr<Model>> load_qwen3moe(std::shared_ptr<const gguf::GgufFile> file, const LoadOptions& opts) {
    return load_decoder(std::move(file), opts, "qwen3moe", DecoderSpec{.qk_norm = true, .rope_neox = true}, 1e-6f);
}

}  // namespace hearth::model
