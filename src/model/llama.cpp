// llama: Llama 2/3.x, Mistral, and Mixtral (the same architecture with experts).
// Pre-norm decoder, GQA, RoPE on adjacent pairs, optional rope_freqs (Llama 3.1 scaling),
// SwiGLU FFN or softmax-routed experts.
#include "model/blocks.h"
#include "model/families.h"

namespace hearth::model {

Result<std::unique_ptr<Model>> load_llama(std::shared_ptr<const gguf::GgufFile> file, const LoadOptions& opts) {
    Hparams hp;
    hp.arch = "llama";
    ArchKeys k(file->meta, hp.arch);
    HEARTH_TRY(read_common_hparams(k, hp));
    HEARTH_TRY(k.get_or("attention.layer_norm_rms_epsilon", hp.norm_eps, 1e-5f));
    HEARTH_TRY(read_vocab_size(*file, hp));
    hp.rope_neox = false;
    DecoderSpec spec;
    auto m = std::make_unique<Decoder>(file, hp, spec, opts.n_threads);
    HEARTH_TRY(m->load_weights());
    return std::unique_ptr<Model>(std::move(m));
}

}  // namespace hearth::model
