#include "quant/float.h"

#include <cmath>

#include "base/fp16.h"
#include "quant/lanes.h"
#include "quant/quant_helpers.h"

HEARTH_QUANT_STRICT_FP

namespace hearth::quant {

namespace detail {
namespace {

// tinyBLAS<16, __m512>'s dot of one A row and one B row (k a multiple of 16): 16 float lanes,
// acc[l] = fma(x[c+l], y[c+l], acc[l]) for c = 0, 16, ...; then _mm512_reduce_add_ps (hsum16).
// `to_f32` widens one stored element (identity, fp16 or bf16).
template <class T, class ToF32>
float tinyblas16_dot(const T* x, const T* y, int64_t n, ToF32 to_f32) {
    float acc[16] = {};
    for (int64_t c = 0; c < n; c += 16) {
        for (int l = 0; l < 16; ++l) acc[l] = std::fmaf(to_f32(x[c + l]), to_f32(y[c + l]), acc[l]);
    }
    return hsum16(acc);
}

// ggml_vec_dot_f32 / ggml_vec_dot_f16 with AVX-512 (GGML_F32_STEP 64, EPR 16, 4 accumulators):
// over the first n & ~63 elements, sum[j][l] = fma(x[i+16j+l], y[i+16j+l], sum[j][l]); then
// sum[0] += sum[2], sum[1] += sum[3], sum[0] += sum[1] (lane-wise) and hsum16(sum[0]). The
// remaining elements are added one by one, in double for F16 (ggml_float sumf, exact products)
// and in float for F32. ggml's F32 leftover loop (sumf += x[i]*y[i]) is compiled by GCC -O3 into
// an in-order vectorized reduction for the first multiple of 8 leftovers (products rounded,
// then added one by one) and fused multiply-adds for the last < 8; this matches a GCC 12
// build of the reference bit for bit and the stories260K goldens (k = 172) best.
template <class T, class ToF32>
float ggml_vec_dot16x4(const T* x, const T* y, int64_t n, ToF32 to_f32, bool leftovers_in_f64) {
    const int64_t np = n & ~int64_t{63};
    float sum[4][16] = {};
    for (int64_t i = 0; i < np; i += 64) {
        for (int j = 0; j < 4; ++j) {
            for (int l = 0; l < 16; ++l) {
                const int64_t k = i + 16 * j + l;
                sum[j][l] = std::fmaf(to_f32(x[k]), to_f32(y[k]), sum[j][l]);
            }
        }
    }
    for (int l = 0; l < 16; ++l) {
        sum[0][l] = sum[0][l] + sum[2][l];
        sum[1][l] = sum[1][l] + sum[3][l];
    }
    for (int l = 0; l < 16; ++l) sum[0][l] = sum[0][l] + sum[1][l];
    const float reduced = hsum16(sum[0]);
    if (leftovers_in_f64) {
        double sumd = reduced;
        for (int64_t i = np; i < n; ++i) sumd += (double)(to_f32(x[i]) * to_f32(y[i]));
        return (float)sumd;
    }
    float sumf = reduced;
    const int64_t nv = np + ((n - np) & ~int64_t{7});
    for (int64_t i = np; i < nv; ++i) sumf = sumf + to_f32(x[i]) * to_f32(y[i]);
    for (int64_t i = nv; i < n; ++i) sumf = std::fmaf(to_f32(x[i]), to_f32(y[i]), sumf);
    return sumf;
}

}  // namespace
}  // namespace detail

void dequantize_row_f32(const float* x, float* y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] = x[i];
}

void quantize_row_f32(const float* x, float* y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] = x[i];
}

// Prompts (>= 2 tokens) run llamafile's tinyBLAS<16, __m512> when n is a multiple of 16 (and the
// row count a multiple of 4): 16 float lanes, lane l takes elements l, l+16, ... as
// acc[l] = fma(x, y, acc[l]), then hsum16. Otherwise ggml_vec_dot_f32 runs (vec_dot_f32_gemv).
float vec_dot_f32(const float* x, const float* y, int64_t n) {
    if (n % 16 == 0) return detail::tinyblas16_dot(x, y, n, [](float v) { return v; });
    return vec_dot_f32_gemv(x, y, n);
}

float vec_dot_f32_gemv(const float* x, const float* y, int64_t n) {
    return detail::ggml_vec_dot16x4(x, y, n, [](float v) { return v; }, /*leftovers_in_f64=*/false);
}

void dequantize_row_f16(const uint16_t* x, float* y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] = fp16_to_f32(x[i]);
}

void quantize_row_f16(const float* x, uint16_t* y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] = f32_to_fp16(x[i]);
}

// Prompts run tinyBLAS<16, __m512> on F16 when n is a multiple of 16 (as vec_dot_f32; each product
// of two halves is exact, so fma and multiply-then-add agree). Otherwise ggml_vec_dot_f16
// (vec_dot_f16_gemv: as ggml_vec_dot_f32 but its leftovers are summed in double).
float vec_dot_f16(const uint16_t* x, const uint16_t* y, int64_t n) {
    if (n % 16 == 0) return detail::tinyblas16_dot(x, y, n, fp16_to_f32);
    return vec_dot_f16_gemv(x, y, n);
}

float vec_dot_f16_gemv(const uint16_t* x, const uint16_t* y, int64_t n) {
    return detail::ggml_vec_dot16x4(x, y, n, fp16_to_f32, /*leftovers_in_f64=*/true);
}

void dequantize_row_bf16(const uint16_t* x, float* y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] = bf16_to_f32(x[i]);
}

void quantize_row_bf16(const float* x, uint16_t* y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] = f32_to_bf16(x[i]);
}

// Prompts run tinyBLAS<16, __m512> on BF16 when n is a multiple of 16 (as vec_dot_f32; products of
// two bfloat16 values are exact). This assumes no AVX512-BF16: with it, tinyBLAS<32> would use
// vdpbf16ps instead. Otherwise ggml_vec_dot_bf16 (vec_dot_bf16_gemv).
float vec_dot_bf16(const uint16_t* x, const uint16_t* y, int64_t n) {
    if (n % 16 == 0) return detail::tinyblas16_dot(x, y, n, bf16_to_f32);
    return vec_dot_bf16_gemv(x, y, n);
}

// ggml_vec_dot_bf16 with AVX-512F: two 16-lane accumulators over 32-element chunks (c1 takes
// elements 0..15 of each chunk, c2 16..31, c += x * y), then in double: sum = hsum16(c1),
// sum += hsum16(c2), and the leftover products one by one.
float vec_dot_bf16_gemv(const uint16_t* x, const uint16_t* y, int64_t n) {
    float c1[16] = {}, c2[16] = {};
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        for (int l = 0; l < 16; ++l) {
            c1[l] = bf16_to_f32(x[i + l]) * bf16_to_f32(y[i + l]) + c1[l];
            c2[l] = bf16_to_f32(x[i + 16 + l]) * bf16_to_f32(y[i + 16 + l]) + c2[l];
        }
    }
    double sum = detail::hsum16(c1);
    sum += detail::hsum16(c2);
    for (; i < n; ++i) sum += (double)(bf16_to_f32(x[i]) * bf16_to_f32(y[i]));
    return (float)sum;
}

}  // namespace hearth::quant
