// Ollama's `options` object (the Modelfile PARAMETERs of the same names; peers.md §1.4): what a
// request may set, with Ollama's types. A model's params layer and then the request's options
// are applied over the defaults, in that order.
//
// Like Ollama's Options.FromMap: a known option of the wrong type is an error naming it
// ("option \"temperature\" must be of type number"); integer options take any JSON number
// (truncated, as Go's float64 -> int); unknown options are ignored (reported in `ignored` so
// the request log can say so). Options hearth accepts but has no use for on this machine
// (main_gpu, use_mmap, numa, low_vram, f16_kv, vocab_only, logits_all,
// penalize_newline, mirostat*, tfs_z) are type-checked and otherwise ignored, as Ollama does
// with the ones it dropped.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "base/status.h"
#include "runtime/sampler.h"

namespace hearth::server {

struct RequestOptions {
    runtime::SamplingOptions sampling;
    int64_t num_predict = -1;  // -1: until the context is full (-2, "fill the context", means the same here)
    std::vector<std::string> stop;
    std::optional<int64_t> num_keep;    // tokens kept at the front when a prompt is truncated
    std::optional<int64_t> num_ctx;     // load-time: positions per sequence
    std::optional<int64_t> num_batch;   // load-time: tokens per scheduler step
    std::optional<int64_t> num_thread;  // load-time: worker threads
    std::optional<int64_t> num_gpu;     // load-time: 0 = CPU only, -1 = automatic, > 0 = layers on the GPU
    std::optional<bool> use_mlock;      // load-time: pin the mapped weights in RAM
    std::vector<std::string> ignored;   // unknown option names
};

// Applies a JSON object of options over `out`. invalid_argument naming the option for a wrong
// type, or when `options` is not an object (null is accepted and changes nothing).
Status apply_options(const nlohmann::json& options, RequestOptions& out);

// Checks values (sampling ranges, num_ctx > 0, ...); invalid_argument naming the option.
Status validate_options(const RequestOptions& o);

}  // namespace hearth::server
