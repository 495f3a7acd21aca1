// llama: Llama 2/3.x, Mistral, and Mixtral (the same architecture with experts).
// Pre-norm decoder, GQA, RoPE on adjacent pairs, optional rope_freqs (Llama 3.1 scaling),
// SwiGLU FFN or softmax-routed experts (model/blocks.*: Decoder).
#include "model/blocks.h"
#include "model/families.h"

namespace hearth::model {

Result<std::unique_ptr<Model>> load_llama(std::shared_ptr<const gguf::GgufFile> file, const LoadOptions& opts) {
    return load_decoder(std::move(file), opts, "llama", DecoderSpec{}, 1e-5f);
}

}  // namespace hearth::model
