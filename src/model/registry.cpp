#include <map>

#include "model/cuda_decoder.h"
#include "model/families.h"

namespace hearth::model {

static const std::map<std::string, ModelFactory>& registry() {
    static const std::map<std::string, ModelFactory> kRegistry = {
        {"llama", load_llama},
        {"qwen2", load_qwen2},
        {"qwen3", load_qwen3},
        {"qwen3moe", load_qwen3moe},
        {"bert", load_bert},
        {"gpt-oss", load_gpt_oss},
        {"llama4", load_llama4},
        {"deepseek2", load_deepseek2},
        {"phi3", load_phi3},
        {"gemma3", load_gemma3},
    };
    return kRegistry;
}

std::vector<std::string> supported_architectures() {
    std::vector<std::string> out;
    for (const auto& [name, f] : registry()) out.push_back(name);
    return out;
}

Status read_vocab_size(const gguf::GgufFile& file, Hparams& hp) {
    const gguf::TensorInfo* t = file.find_tensor("token_embd.weight");
    if (!t) return error(StatusCode::not_found, "tensor token_embd.weight is missing");
    if (t->n_dims != 2) return error(StatusCode::corrupt, "tensor token_embd.weight: expected 2 dimensions");
    hp.n_vocab = t->ne[1];
    return {};
}

Result<std::unique_ptr<Model>> load_model(std::shared_ptr<const gguf::GgufFile> file, const LoadOptions& opts) {
    const std::string arch = file->architecture();
    if (arch.empty()) return error(StatusCode::corrupt, "general.architecture is missing: not a model file");
    auto it = registry().find(arch);
    if (it == registry().end()) {
        std::string list;
        for (const auto& a : supported_architectures()) list += (list.empty() ? "" : ", ") + a;
        return error(StatusCode::unsupported, "architecture " + arch + " is not supported (supported: " + list + ")");
    }
    std::string placement_note;
    if (opts.num_gpu != 0 && !opts.adapters.empty()) {
        // LoRA deltas are applied by ops::Ops::matmul on the CPU; the CUDA executor
        // (cuda_decoder.*) uploads plain weights and has no low-rank path, so a model with
        // adapters runs on the CPU rather than on the GPU without them.
        placement_note = "running on the CPU: LoRA adapters are applied on the CPU only";
    } else if (opts.num_gpu != 0) {
        auto gpu = load_model_cuda(file, opts, 0);
        if (gpu.ok()) return gpu;
        placement_note = "running on the CPU: " + gpu.status().message();
    }
    auto r = it->second(std::move(file), opts);
    if (!r.ok()) return r.status().with_context(arch);
    if (!opts.adapters.empty()) {
        if (!r.value()->has_adapters())
            return error(StatusCode::unsupported, "architecture " + arch + " does not support LoRA adapters yet");
        HEARTH_TRY(r.value()->check_adapters());
    }
    r.value()->set_placement_note(std::move(placement_note));
    return r;
}

}  // namespace hearth::model
