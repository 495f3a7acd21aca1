// Helpers of the CUDA backend tests: random data and device copies (poisoned with NaN bytes
// when there is no source, so that an unwritten output fails its check). Only for builds with
// CUDA (HEARTH_HAVE_CUDA).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <limits>
#include <random>
#include <vector>

#include "backend/cuda/device.h"

// Opens CUDA device 0 as `dev` (a cuda::Device&), or skips the test with the reason.
#define CUDA_OPEN_DEVICE_OR_SKIP(dev)                                                                      \
    auto dev##_result = ::hearth::backend::cuda::Device::open(0);                                        \
    if (!dev##_result.ok()) GTEST_SKIP() << "no CUDA device, CUDA tests skipped: " << dev##_result.status().message(); \
    ::hearth::backend::cuda::Device& dev = **dev##_result

namespace hearth::backend {

inline std::vector<float> randn(size_t n, uint32_t seed, float scale = 1.0f) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> dist(0.0f, scale);
    std::vector<float> v(n);
    for (auto& x : v) x = dist(rng);
    return v;
}

// A device copy of a host vector (poisoned with NaN bytes when `src` is null).
template <class T>
cuda::DeviceBuffer to_device(cuda::Device& dev, cuda::Stream& s, const T* src, size_t n) {
    auto buf = cuda::DeviceBuffer::allocate(dev, std::max<size_t>(n, 1) * sizeof(T));
    EXPECT_TRUE(buf.ok());
    if (src) {
        buf->upload(s, src, n * sizeof(T));
    } else {
        const std::vector<float> nan((n * sizeof(T) + 3) / 4, std::numeric_limits<float>::quiet_NaN());
        buf->upload(s, nan.data(), n * sizeof(T));
    }
    EXPECT_TRUE(s.synchronize().ok());
    return std::move(buf).value();
}

template <class T>
std::vector<T> from_device(cuda::Stream& s, const cuda::DeviceBuffer& b, size_t n) {
    std::vector<T> v(n);
    b.download(s, v.data(), n * sizeof(T));
    EXPECT_TRUE(s.synchronize().ok()) << s.synchronize().message();
    return v;
}

}  // namespace hearth::backend
