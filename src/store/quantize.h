// Quantizing a GGUF model into another type (`hearth create --quantize`, POST /api/create with
// "quantize"): the per-tensor type mixes that Q4_K_M / Q5_K_M / Q3_K_M ... mean by llama.cpp's
// convention, multi-threaded, streaming so memory stays near one tensor.
//
// The mixes follow llama-quantize (llama.cpp src/llama-quant.cpp, llama_tensor_get_type, at the
// commit that made the shared test data) without an importance matrix, rule by rule:
//   - only tensors named *weight with at least 2 dimensions (ggml's count: trailing 1s do not
//     count) are converted, and not norms, the MoE router (ffn_gate_inp), bert's position and
//     token-type embeddings and a few small per-architecture tensors; the others keep their
//     source type (1-D norms and biases stay F32);
//   - output.weight (token_embd.weight when the output is tied to it) is Q6_K in every quantized
//     mix but Q8_0 (which keeps Q8_0) and MXFP4_MOE (Q8_0), or Q8_0 when its rows do not fill
//     the mix's blocks;
//   - attn_v (and fused attn_qkv, MLA's attn_kv_b), ffn_down, attn_output and attn_k get more
//     bits in some mixes and layers (Q4_K_M/Q5_K_M: Q6_K on the "more bits" layers: the first
//     and last eighth and every third between; Q3_K_M, Q3_K_L, Q4_K_S, Q2_K, IQ4_NL/IQ4_XS with
//     grouped-query attention, 8-expert models, 70B llamas: see quantize.cpp);
//   - a row length that is not a multiple of the chosen type's block falls back: IQ4_XS ->
//     IQ4_NL, Q2_K/Q3_K -> Q4_0, Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0, then F16 (where
//     llama-quantize has no fallback, e.g. Q8_0 rows of 16, it stops; hearth uses F16);
//   - F16/BF16/F32 targets convert every eligible tensor, with no per-tensor rules.
// MoE expert tensors ([n_embd, n_ff, n_expert]) are quantized row by row like any matrix: without
// an importance matrix each row is independent, so the expert slicing llama.cpp does changes
// nothing.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "gguf/gguf.h"
#include "quant/types.h"

namespace hearth::store {

struct QuantizeOptions {
    std::string type;   // "q4_K_M", "Q8_0", "f16", ... (case-insensitive; see quantize_type_names)
    int n_threads = 0;  // 0: one per core
    // Progress: bytes of tensor data written so far and their total; any thread, often.
    std::function<void(int64_t done, int64_t total)> progress;
    // A source tensor that is already quantized (Q4_K, Q8_0, ...) and would change type is
    // refused, as Ollama refuses to quantize a quantized model: requantizing compounds the
    // rounding of both types. true: dequantize and requantize it anyway (llama-quantize
    // --allow-requantize), reported through on_note.
    bool allow_requantize = false;
    // One line per noteworthy decision (row-length fallbacks, requantized tensors); calling thread.
    std::function<void(const std::string& line)> on_note;
};

// The target names accepted by quantize_gguf, in the spelling Ollama and llama.cpp print.
std::vector<std::string> quantize_type_names();

// A quantization target: the mix's name, its default tensor type and llama.cpp's file type.
struct QuantizeTarget {
    std::string name;                               // "Q4_K_M"
    quant::QuantType base = quant::QuantType::f16;  // the type of every tensor no rule changes
    uint32_t file_type = 1;                         // general.file_type (LLAMA_FTYPE_MOSTLY_*)
};
// Case-insensitive; Q3_K, Q4_K and Q5_K mean their _M mix, as in llama-quantize. Errors
// (invalid_argument) list the accepted names.
Result<QuantizeTarget> parse_quantize_type(std::string_view name);

struct TensorQuantization {
    quant::QuantType from = quant::QuantType::f32;  // the source tensor's type
    quant::QuantType to = quant::QuantType::f32;    // what it is written as (== from: copied)
    bool fallback = false;  // `to` replaces the mix's choice: the rows do not fill its blocks
    uint64_t n_bytes = 0;   // output bytes (unpadded)
};

struct QuantizePlan {
    QuantizeTarget target;
    std::vector<TensorQuantization> tensors;  // [file.tensors.size()], in the file's order
    uint64_t tensor_bytes = 0;                // sum of n_bytes
    // The output file's size, within a few bytes: the source's header (metadata, tensor infos)
    // plus each tensor padded to the alignment. Exact for the tensor data.
    uint64_t file_bytes = 0;
    std::vector<std::string> notes;           // one line per kind of fallback
};

// The types llama-quantize would give each tensor of `file` for `type`, from the metadata and
// tensor shapes only (no tensor byte is read, so a GgufFile parsed from a header will do): what
// quantize_gguf writes, and how store::fit sizes the other quantizations of a model. Source
// types do not matter here (quantize_gguf decides whether it may convert them).
Result<QuantizePlan> plan_quantize(const gguf::GgufFile& file, std::string_view type);

// Reads the GGUF at in_path and writes it quantized to out_path (temporary name, fsync,
// rename: an interrupted or failed run leaves nothing at out_path, and an existing file there
// untouched). Metadata is kept, with general.file_type and general.quantization_version set and
// split.* removed; tensors keep their order. Memory: the largest output tensor plus one f32 row
// per thread (the source is mapped, and each tensor's pages are released once it is written).
// Errors: invalid_argument for an unknown type or an already-quantized source tensor that would
// have to be requantized (see allow_requantize), unsupported for a source type hearth cannot
// read, corrupt for a source tensor holding NaN or infinity, io_error for the disk, naming the
// file.
Status quantize_gguf(const std::string& in_path, const std::string& out_path, const QuantizeOptions& opt);

}  // namespace hearth::store
