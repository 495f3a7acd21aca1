// Internal to backend/cuda: programmatic dependent launch (Hopper PDL), shared by the kernels of
// the decode step.
//
// A kernel launched with the programmatic attribute (launch_kernel(pdl = true, ...)) may start
// while the kernel before it on the stream is still running: as soon as every block of that
// kernel has called pdl_launch_dependents() (or exited). The contract every such kernel keeps:
//  - it calls pdl_wait() in every thread before it reads memory that earlier work on the stream
//    wrote, and before it writes memory that earlier work reads (pdl_wait returns once the
//    previous kernel has completed and its writes are visible; nothing else is ordered);
//  - so it never completes before the kernel before it, and waiting on the previous kernel
//    alone orders it after everything earlier on the stream (by induction).
// Reading memory nothing on the stream writes (weights, tables uploaded before the step) may
// come first: the matrix-vector kernels start streaming weights before pdl_wait.
// A kernel that never calls pdl_wait must never be launched with the attribute.
// pdl_launch_dependents() only lets the next kernel be scheduled early; its blocks then take
// SM resources (and wait) as they are freed, so every kernel here calls it at its start.
// Both are no-ops below sm_90 and for kernels launched without the attribute.
#pragma once

#include <cuda_runtime.h>

#include <utility>

namespace hearth::backend::cuda_kernels {

__device__ __forceinline__ void pdl_launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;");
#endif
}

__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// kernel<<<grid, block, smem, s>>>(args...), as a programmatic dependent of the previous kernel
// on `s` when `pdl` is set (the kernel must keep the contract above).
template <class... KArgs, class... Args>
cudaError_t launch_kernel(bool pdl, void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem, cudaStream_t s,
                          Args&&... args) {
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = s;
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = attr;
    cfg.numAttrs = pdl ? 1 : 0;
    return cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...);
}

}  // namespace hearth::backend::cuda_kernels
