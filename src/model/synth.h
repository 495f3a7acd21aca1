// Random-weight models with the real shapes and metadata of known checkpoints (`hearth synth`).
// They load like the real thing (in hearth and in llama.cpp: same GGUF keys, tensor names and
// shapes), so benchmarks, memory planning and loaders can be exercised without downloading
// weights. The outputs are meaningless.
//
// Weights are N(0, s) per tensor kind, from xoshiro256** + Box-Muller seeded by (seed, tensor
// name, row): generation parallelizes over rows and the file is the same for any thread count.
//   token_embd, position_embd, token_types   s = 0.02
//   output (untied)                          s = 1/sqrt(n_embd)         (logits of unit scale)
//   attn_q/k/v, ffn_gate/up, *_exps gate/up  s = 1/sqrt(fan_in)
//   attn_output, ffn_down, ffn_down_exps     s = 1/sqrt(fan_in) / sqrt(2 n_layer): the 2 n_layer
//       residual branches then add up to unit variance at any depth (GPT-2's scaled init), and
//       still dominate the 0.02 embeddings, so tied models do not just echo their input
//   ffn_gate_inp (router)                    s = 1/sqrt(n_embd)         (routing logits ~ N(0,1))
//   norm weights                             1 + N(0, 0.02)
//   biases                                   N(0, 0.02)
//   rope_freqs (Llama 3.x)                   the llama3 rope-scaling factors, exactly as
//                                            llama.cpp's converter computes them
// No tensor is all zeros.
//
// Tensor types: a "pure" type (F16, Q4_K, ...) for every 2-D/3-D weight, or one of llama-quantize's
// default mixes (Q3_K_M, Q4_K_S, Q4_K_M, Q5_K_S, Q5_K_M, MXFP4_MOE) reproduced rule by rule from
// llama_tensor_get_type (no importance matrix):
//   output (or token_embd when tied)  Q6_K (Q8_0 when its rows do not fit 256-blocks; MXFP4_MOE: Q8_0)
//   attn_v    Q4_K_M/Q5_K_M: Q6_K on the "more bits" layers (first 1/8, last 1/8, every 3rd between);
//             Q4_K_S: Q5_K on layers 0-3; Q3_K_M: Q5_K on layers 0-1 else Q4_K; 8 experts: Q8_0
//   attn_k    8 experts: Q8_0
//   ffn_down (and _exps)  Q4_K_M/Q5_K_M: Q6_K on the "more bits" layers; Q4_K_S: Q5_K on the first
//             1/8; Q3_K_M: Q5_K on the first 1/16, else Q4_K
//   attn_output  Q3_K_M: Q4_K; 8 experts (Q3_K_M, Q4_K_S, Q4_K_M): Q5_K
//   MXFP4_MOE    expert tensors MXFP4, every other weight Q8_0
//   everything else: the mix's base type (Q3_K, Q4_K or Q5_K)
// 1-D tensors (norms, biases, rope_freqs), the router and bert's position/token-type embeddings
// stay F32. A row length that is not a multiple of the chosen type's block falls back as
// llama-quantize does (Q2_K/Q3_K/IQ4_XS -> IQ4_NL, Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0, then
// F16); each fallback is reported through SynthOptions::on_note.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "gguf/gguf.h"
#include "quant/types.h"

namespace hearth::model {

// The kind of tokenizer a family ships with; picks the default vocabulary file.
enum class SynthVocab { bpe, spm, wordpiece };

// Shapes and metadata of one checkpoint. Dimension names follow model/hparams.h.
struct SynthConfig {
    std::string preset;        // "llama3.1-8b"
    std::string family;        // llama, mixtral, qwen2, qwen3, qwen3moe, bert (--arch accepts these too)
    std::string arch;          // general.architecture: llama, qwen2, qwen3, qwen3moe, bert
    std::string model_name;    // general.name
    int64_t n_vocab = 0;
    int64_t n_embd = 0;
    int n_layer = 0;
    int n_head = 0;
    int n_head_kv = 0;
    int head_dim = 0;          // per-head q/k/v size (qwen3: not n_embd / n_head)
    int64_t n_ff = 0;          // dense FFN width (llama with experts: also the expert width)
    int n_expert = 0;          // 0: dense
    int n_expert_used = 0;
    int64_t n_ff_exp = 0;      // per-expert FFN width
    int64_t n_ctx = 0;         // context_length (bert: position_embd rows)
    float rope_freq_base = 10000.0f;
    float norm_eps = 1e-5f;    // rms eps (bert: layer-norm eps)
    bool tied_output = false;  // no output.weight: token_embd is the output matrix
    // Llama 3.x rope scaling (stored as rope_freqs.weight); factor 0: none.
    float rope_scale_factor = 0.0f;
    float rope_low_freq_factor = 1.0f;
    float rope_high_freq_factor = 4.0f;
    int64_t rope_orig_ctx = 8192;
    SynthVocab vocab = SynthVocab::bpe;
};

// Every preset, in listing order.
const std::vector<SynthConfig>& synth_presets();
// The preset named `name`. "tiny" means the tiny preset of `arch` (llama when arch is empty).
// `arch` (a GGUF architecture or a family name, "" for any) must match the preset's.
// Errors (invalid_argument) list the known presets / architectures.
Result<SynthConfig> find_synth_preset(std::string_view name, std::string_view arch);

// Dimension overrides (--layers, --embd, ...); unset fields keep the preset's value.
struct SynthOverrides {
    std::optional<int64_t> n_layer, n_embd, n_ff, n_head, n_head_kv, head_dim, n_expert, n_expert_used,
        n_ff_exp, n_vocab, n_ctx;
};
// Applies and validates (heads divide evenly, even head size, experts only where the
// architecture has them, ...). When n_embd or n_head change and the preset's head size was
// n_embd / n_head, the head size follows. On error `cfg` may be partly modified.
Status apply_synth_overrides(SynthConfig& cfg, const SynthOverrides& ov);

// A --type value: a pure tensor type or a llama-quantize mix.
struct SynthType {
    std::string name;                              // as given, upper case: "Q4_K_M"
    quant::QuantType base = quant::QuantType::f16; // the mix's default type, or the pure type
    bool is_mix = false;
    uint32_t file_type = 1;                        // general.file_type (llama_ftype)
};
// Errors name the known types; types hearth cannot quantize or compute with are rejected.
Result<SynthType> parse_synth_type(std::string_view name);
// Names accepted by parse_synth_type, pure types first.
std::vector<std::string> synth_type_names();

struct SynthTensor {
    std::string name;
    std::vector<int64_t> ne;   // ggml order
    quant::QuantType type = quant::QuantType::f32;
    uint64_t n_bytes = 0;
    float mean = 0.0f, stddev = 0.0f;  // values are mean + N(0, stddev), then stored as `type`
    bool is_rope_freqs = false;        // values are llama3_rope_factors() instead
};

// What will be written: metadata, tensors with their final types, sizes.
struct SynthPlan {
    SynthConfig config;          // n_vocab as actually written (vocabulary may change it)
    gguf::Metadata meta;
    std::vector<SynthTensor> tensors;
    uint64_t n_params = 0;
    uint64_t tensor_bytes = 0;   // sum of tensor sizes (file size is this plus header and padding)
    std::vector<std::string> notes;  // fallbacks and vocabulary adjustments, one line each
};

struct SynthProgress {
    int tensor = 0;              // tensors finished
    int n_tensors = 0;
    uint64_t bytes_done = 0;     // of tensor data
    uint64_t bytes_total = 0;
    std::string_view name;       // the tensor being generated ("" when done)
};

struct SynthOptions {
    SynthConfig config;
    SynthType type;
    uint64_t seed = 0;
    int n_threads = 0;                     // 0: one per hardware thread
    // Source of the tokenizer.* metadata (tokens padded to n_vocab with <|reserved_token_N|>,
    // type UNUSED); null: a built-in minimal vocabulary (256 GPT-2 byte tokens, no merges,
    // pre "gpt-2", family specials; bert: a small WordPiece vocabulary).
    const gguf::Metadata* vocab = nullptr;
    std::function<void(const SynthProgress&)> on_progress;  // called before each tensor and at the end
};

// Builds the plan (no weights generated). Errors: a vocabulary without tokenizer.ggml.tokens,
// or a vocabulary size too small for the built-in vocabulary.
Result<SynthPlan> plan_synth(const SynthOptions& opts);

// Generates every tensor and writes the GGUF to `path` (temporary file + fsync + rename),
// one tensor in memory at a time. Fails before writing anything when the destination folder
// is missing or has less free space than the file needs. On error no file is left at `path`
// (an existing one is untouched). Returns the file size in bytes.
Result<uint64_t> write_synth(const SynthOptions& opts, const SynthPlan& plan, const std::string& path);

// The llama3 rope-scaling factors ([head_dim / 2]), as convert_hf_to_gguf.py computes them.
std::vector<float> llama3_rope_factors(const SynthConfig& cfg);

}  // namespace hearth::model
