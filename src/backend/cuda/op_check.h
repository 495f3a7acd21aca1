// Internal to backend/cuda: the entry check every op wrapper (ops.cu, moe.cu) makes before it
// launches anything (STYLE.md §6: bad arguments are recorded on the Device, never a crash).
#pragma once

#include <cstdint>

#include "backend/cuda/device.h"

namespace hearth::backend::cuda_kernels {

// False (nothing to launch) when the device already failed, the arguments are bad (recorded as
// invalid_argument naming `what`) or there is no work; else makes the device current.
inline bool begin_op(cuda::Stream& stream, bool args_ok, const char* what, int64_t work) {
    cuda::Device& dev = stream.device();
    if (dev.is_failed()) return false;
    if (!args_ok) {
        dev.fail(error(StatusCode::invalid_argument, strformat("%s: bad arguments", what)));
        return false;
    }
    return work > 0 && dev.make_current();
}

}  // namespace hearth::backend::cuda_kernels
