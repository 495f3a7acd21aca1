// qwen2 (Qwen2/2.5: q/k/v biases), qwen3 (q/k RMS norms, no biases) and qwen3moe (qwen3
// attention with softmax-routed experts). RoPE rotates halves (neox).
#include "model/blocks.h"
#include "model/families.h"

namespace hearth::model {

static Result<std::unique_ptr<Model>> load_qwen(std::shared_ptr<const gguf::GgufFile> file, const LoadOptions& opts,
                                                const char* arch, DecoderSpec spec) {
    Hparams hp;
    hp.arch = arch;
    ArchKeys k(file->meta, hp.arch);
    HEARTH_TRY(read_common_hparams(k, hp));
    HEARTH_TRY(k.get_or("attention.layer_norm_rms_epsilon", hp.norm_eps, 1e-6f));
    HEARTH_TRY(read_vocab_size(*file, hp));
    hp.rope_neox = true;
    auto m = std::make_unique<Decoder>(file, hp, spec, opts.n_threads);
    HEARTH_TRY(m->load_weights());
    return std::unique_ptr<Model>(std::move(m));
}

Result<std::unique_ptr<Model>> load_qwen2(std::shared_ptr<const gguf::GgufFile> file, const LoadOptions& opts) {
    DecoderSpec spec;
    spec.qkv_bias = true;
    return load_qwen(std::move(file), opts, "qwen2", spec);
}

Result<std::unique_ptr<Model>> load_qwen3(std::shared_ptr<const gguf::GgufFile> file, const LoadOptions& opts) {
    DecoderSpec spec;
    spec.qk_norm = true;
    return load_qwen(std::move(file), opts, "qwen3", spec);
}

Result<std::unique_ptr<Model>> load_qwen3moe(std::shared_ptr<const gguf::GgufFile> file, const LoadOptions& opts) {
    DecoderSpec spec;
    spec.qk_norm = true;
    return load_qwen(std::move(file), opts, "qwen3moe", spec);
}

}  // namespace hearth::model
