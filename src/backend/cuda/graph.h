// CUDA graphs of work queued on a Stream: capture once, replay many times (the decode step, so
// that per-kernel launch overhead disappears). The header includes no CUDA header.
//
// Capture records kernels, device-side copies and memsets issued to the stream between
// begin_capture and end_capture; it must not include host<->pageable-memory copies or anything
// that synchronizes (Stream::scratch growth refuses itself during capture: reserve first).
// A replay runs exactly the recorded kernels with the recorded arguments: whatever changes
// between steps must live in device memory the kernels read (token ids, positions, slots).
//
// Failure semantics: errors are recorded on the Device (sticky); a failed capture leaves the
// Graph empty (is_ready() false) and the stream out of capture mode.
#pragma once

#include "backend/cuda/device.h"

namespace hearth::backend::cuda {

class Graph {
public:
    Graph() = default;
    ~Graph();
    Graph(const Graph&) = delete;
    Graph& operator=(const Graph&) = delete;

    // Starts recording `stream` (thread-local capture mode). Returns false on failure (recorded).
    bool begin_capture(Stream& stream);
    // Ends recording and instantiates the graph, replacing any earlier one.
    bool end_capture(Stream& stream);
    // Queues one replay on `stream`.
    bool launch(Stream& stream);
    bool is_ready() const { return exec_ != nullptr; }
    void reset();

private:
    void* exec_ = nullptr;  // cudaGraphExec_t, owned
};

}  // namespace hearth::backend::cuda
