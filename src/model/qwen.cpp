// qwen2 (Qwen2/2.5: q/k/v biases), qwen3 (q/k RMS norms, no biases) and qwen3moe (qwen3
// attention with softmax-routed experts). RoPE rotates halves (neox). model/blocks.*: Decoder.
#include "model/blocks.h"
#include "model/families.h"
#include "model/gpu_recipe.h"

namespace hearth::model {

namespace {
const DecoderSpec kQwen2{.qkv_bias = true, .rope_neox = true};
const DecoderSpec kQwen3{.qk_norm = true, .rope_neox = true};  // qwen3moe too
constexpr float kEps = 1e-6f;
}  // namespace

Result<std::unique_ptr<Model>> load_qwen2(std::shared_ptr<const gguf::GgufFile> file, const LoadOptions& opts) {
    return load_decoder(std::move(file), opts, "qwen2", kQwen2, kEps);
}

Result<std::unique_ptr<Model>> load_qwen3(std::shared_ptr<const gguf::GgufFile> file, const LoadOptions& opts) {
    return load_decoder(std::move(file), opts, "qwen3", kQwen3, kEps);
}

Result<std::unique_ptr<Model>> load_qwen3moe(std::shared_ptr<const gguf::GgufFile> file, const LoadOptions& opts) {
    return load_decoder(std::move(file), opts, "qwen3moe", kQwen3, kEps);
}

Result<GpuRecipe> qwen2_gpu_recipe(const gguf::GgufFile& file, const LoadOptions& opts) {
    return decoder_gpu_recipe(file, opts, "qwen2", kQwen2, kEps);
}

Result<GpuRecipe> qwen3_gpu_recipe(const gguf::GgufFile& file, const LoadOptions& opts) {
    return decoder_gpu_recipe(file, opts, "qwen3", kQwen3, kEps);
}

Result<GpuRecipe> qwen3moe_gpu_recipe(const gguf::GgufFile& file, const LoadOptions& opts) {
    return decoder_gpu_recipe(file, opts, "qwen3moe", kQwen3, kEps);
}

}  // namespace hearth::model
