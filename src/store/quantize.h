// Quantizing a GGUF model into another type (`hearth create --quantize`, POST /api/create with
// "quantize"): the per-tensor type mixes that Q4_K_M / Q5_K_M / Q3_K_M ... mean by llama.cpp's
// convention, multi-threaded, streaming so memory stays near one tensor.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "base/status.h"

namespace hearth::store {

struct QuantizeOptions {
    std::string type;   // "q4_K_M", "Q8_0", "f16", ... (case-insensitive; see quantize_type_names)
    int n_threads = 0;  // 0: one per core
    // Progress: bytes of output written so far and the total; any thread, often.
    std::function<void(int64_t done, int64_t total)> progress;
};

// The target names accepted by quantize_gguf, in the spelling Ollama and llama.cpp print.
std::vector<std::string> quantize_type_names();

// Reads the GGUF at in_path and writes it quantized to out_path (temporary name, fsync,
// rename: an interrupted run leaves nothing at out_path). Metadata is kept, with
// general.file_type updated. Errors: invalid_argument for an unknown type or a source that is
// already quantized below what it would need (requantizing Q4 to Q8 only loses), io_error for
// the disk, naming the file.
Status quantize_gguf(const std::string& in_path, const std::string& out_path, const QuantizeOptions& opt);

}  // namespace hearth::store
