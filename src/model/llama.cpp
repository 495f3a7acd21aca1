// llama: Llama 2/3.x, Mistral, and Mixtral (the same architecture with experts).
// Pre-norm decoder, GQA, RoPE on adjacent pairs, optional rope_freqs (Llama 3.1 scaling),
// SwiGLU FFN or softmax-routed experts (model/blocks.*: Decoder).
#include "model/blocks.h"
#include "model/families.h"
#include "model/gpu_recipe.h"

namespace hearth::model {

namespace {
const DecoderSpec kLlama{};
constexpr float kEps = 1e-5f;
}  // namespace

Result<std::unique_ptr<Model>> load_llama(std::shared_ptr<const gguf::GgufFile> file, const LoadOptions& opts) {
    return load_decoder(std::move(file), opts, "llama", kLlama, kEps);
}

Result<GpuRecipe> llama_gpu_recipe(const gguf::GgufFile& file, const LoadOptions& opts) {
    return decoder_gpu_recipe(file, opts, "llama", kLlama, kEps);
}

}  // namespace hearth::model
