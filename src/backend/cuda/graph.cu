#include "backend/cuda/graph.h"

#include <cuda_runtime.h>

namespace hearth::backend::cuda {

Graph::~Graph() { reset(); }

void Graph::reset() {
    if (exec_ != nullptr) (void)cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(exec_));
    exec_ = nullptr;
}

bool Graph::begin_capture(Stream& stream) {
    Device& dev = stream.device();
    if (dev.is_failed() || !dev.make_current()) return false;
    return dev.check(cudaStreamBeginCapture(static_cast<cudaStream_t>(stream.handle()),
                                            cudaStreamCaptureModeThreadLocal),
                     "cudaStreamBeginCapture");
}

bool Graph::end_capture(Stream& stream) {
    Device& dev = stream.device();
    cudaGraph_t graph = nullptr;
    // End the capture even when the device failed meanwhile, so the stream leaves capture mode.
    const cudaError_t end = cudaStreamEndCapture(static_cast<cudaStream_t>(stream.handle()), &graph);
    reset();
    bool ok = dev.check(end, "cudaStreamEndCapture") && !dev.is_failed();
    if (ok) {
        cudaGraphExec_t exec = nullptr;
        ok = dev.check(cudaGraphInstantiate(&exec, graph, 0), "cudaGraphInstantiate");
        if (ok) exec_ = exec;
    }
    if (graph != nullptr) (void)cudaGraphDestroy(graph);
    return ok;
}

bool Graph::launch(Stream& stream) {
    Device& dev = stream.device();
    if (exec_ == nullptr || dev.is_failed() || !dev.make_current()) return false;
    return dev.check(cudaGraphLaunch(static_cast<cudaGraphExec_t>(exec_), static_cast<cudaStream_t>(stream.handle())),
                     "cudaGraphLaunch");
}

}  // namespace hearth::backend::cuda
