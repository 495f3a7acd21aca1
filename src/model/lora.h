// LoRA adapters in GGUF, applied at load as low-rank deltas on ops::Weight (never merged: the
// base weights stay mapped and untouched, and several adapters stack).
//
// The file is what llama.cpp's convert_lora_to_gguf.py writes and Ollama stores as an
// application/vnd.ollama.image.adapter layer: general.type = "adapter", adapter.type = "lora",
// general.architecture = the base model's, adapter.lora.alpha (f32; absent or 0: scale 1), and
// for each adapted base tensor <name> a pair <name>.lora_a, ne [n_in, rank] (A: n_in -> rank),
// and <name>.lora_b, ne [rank, n_out] (B: rank -> n_out), in any type the CPU matmul reads
// (F32, F16, BF16, Q8_0, ...). The effective weight is W + scale * B·A with scale = alpha / rank
// (rank = lora_b's ne[0]), as llama.cpp's llama_adapter_lora_weight::get_scale with an adapter
// scale of 1 (what a Modelfile's ADAPTER means).
//
// token_embd.weight is the exception llama.cpp makes: its pair is "flipped", lora_a ne
// [rank, n_vocab] and lora_b ne [rank, n_embd], delta[v][e] = scale * sum_r a[v][r] * b[e][r].
// It is turned into the same form as the others (lora_b transposed to f32 at load), so the
// embedding lookup applies it and a tied output matrix (no output.weight) carries it too: the
// model then behaves exactly as one whose token_embd had been merged.
//
// Tensors named *_norm.weight (trained norms) are ignored, as llama.cpp ignores them; any other
// tensor without a .lora_a/.lora_b suffix is an error.
#pragma once

#include <deque>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "base/status.h"
#include "gguf/gguf.h"
#include "ops/ops.h"

namespace hearth::model {

// One adapter file, validated on its own (no base model needed).
struct LoraAdapter {
    struct Pair {
        const gguf::TensorInfo* a = nullptr;  // <name>.lora_a
        const gguf::TensorInfo* b = nullptr;  // <name>.lora_b
        int64_t rank() const { return b->ne[0]; }
    };
    std::shared_ptr<const gguf::GgufFile> file;  // keeps the tensors' bytes mapped
    std::string source;                          // what messages call it: "adapter /path/lora.gguf"
    std::string architecture;                    // general.architecture
    float alpha = 0.0f;                          // adapter.lora.alpha; 0: scale 1
    std::map<std::string, Pair> pairs;           // by base tensor name
    std::vector<std::string> ignored;            // *_norm.weight tensors left aside

    float scale(const Pair& p) const { return alpha != 0.0f ? alpha / (float)p.rank() : 1.0f; }
};

// Checks general.type = adapter, adapter.type = lora, general.architecture, the alpha's type,
// and the tensors: every one a .lora_a or .lora_b (or an ignored *_norm.weight), each pair
// complete, 2-D, of a type hearth computes with, ranks agreeing (lora_a ne[1] == lora_b ne[0];
// flipped for token_embd), and at least one pair. Errors (invalid_argument for a file that is
// not a LoRA adapter, corrupt for a broken one, unsupported for a tensor type) begin with
// `source` and name the tensor or key.
Result<LoraAdapter> read_lora_adapter(std::shared_ptr<const gguf::GgufFile> file, std::string source);
// open_gguf + read_lora_adapter with source "adapter <path>".
Result<LoraAdapter> open_lora_adapter(const std::string& path);

// Checks an adapter against a base model file without loading the model: the same
// general.architecture, and every pair names a tensor of the base whose shape it fits. Run
// at create time; loading checks the same again against the weights the model actually uses.
Status check_lora_against(const LoraAdapter& adapter, const gguf::GgufFile& base);

// The adapters of one model load, in the order they apply. WeightLoader attaches the deltas of
// each weight it hands out; check_all_used then reports a pair that found no weight. Owns the
// adapter files' mappings and the transposed token_embd factors the deltas point into, so it
// must outlive the model's weights (Model holds it).
class LoraSet {
public:
    // Adds an adapter; its architecture must be `base_arch` (invalid_argument otherwise).
    Status add(LoraAdapter adapter, const std::string& base_arch);
    bool empty() const { return adapters_.empty(); }
    bool has(const std::string& name) const;
    // Appends to w.deltas one delta per adapter with a pair for `name` (w's type, data and ne
    // already set). Errors naming the tensor and the adapter: a shape that does not fit w
    // (invalid_argument), a 3-D weight such as an expert stack (unsupported). On error w.deltas
    // may hold the deltas of earlier adapters.
    Status attach(const std::string& name, ops::Weight& w);
    // invalid_argument naming the first pair that no weight of the model took (a tensor the
    // base model does not have or does not use).
    Status check_all_used() const;

private:
    std::vector<LoraAdapter> adapters_;
    std::vector<std::set<std::string>> used_;  // [adapter] base names attach() has served
    std::deque<std::vector<float>> owned_;     // transposed token_embd lora_b, f32; addresses stable
};

}  // namespace hearth::model
