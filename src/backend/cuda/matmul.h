// CUDA matmul: Y[t][o] = sum_i W[o][i] * X[t][i], the contract of backend/ref/matmul.h with
// every pointer in device memory (W, X, Y from DeviceBuffers on the stream's device).
// W: n_out rows of n_in elements quantized as `type`, rows `row_bytes` apart;
// X: [n_tokens][n_in] f32; Y: [n_tokens][n_out] f32; X and Y do not alias.
//
// Paths (matmul_cuda picks one; each is tested against the reference, see the test for the
// derivation of its tolerance):
//  - Quantized weights (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL,
//    IQ4_XS, MXFP4: can_matmul_cuda_q8), n_tokens < kMatmulGemmMinTokens: X is first
//    quantized on the device to int8 blocks of 32 with an f32 scale d = amax/127 and the sum of
//    the quants (q8_1-style, like the CPU's vec_dot_type but with one scale per 32 values for
//    every type). For Q4_0, Q8_0, Q4_K and Q6_K an integer tensor-core kernel (mma.sync s8,
//    matmul_mma.cu) then streams W once per group of up to 64 tokens. It is batch-invariant:
//    every output is summed in an order fixed by the matrix shape alone, so a token's outputs are
//    bitwise the same whatever other tokens share the call and wherever it sits among them
//    (matmul_cuda_q8 the same). The other int8 types have no tensor-core kernel yet and take the
//    dp4a kernel (matmul_vec.cu, W once per 8 tokens), which is not batch-invariant.
//    Error against the exact product of the dequantized weights: each activation moves by at
//    most half a step, |x - d*q| <= amax_32/254, so |y - y_exact| <= sum_i |w_i| amax_32(i)/254
//    plus f32 rounding (~1e-6 of sum|w*x|). The reference's own activation rounding (Q8_0 per
//    32 with an fp16 scale, Q8_K per 256) adds its half step: the two differ by at most the sum.
//    Measured on the test's random data with outliers: |y - y_ref| <= 1.3e-4 of sum|w*x| for
//    Q8_0/Q4_0 (the reference also scales per 32), <= 1.1e-2 for Q4_K/Q6_K (it scales per 256),
//    at most 27 % of the derived bound; against the exact model of the path, <= 1e-6.
//    (Per-type figures for the other types: the test's [ info ] lines.)
//  - Any supported type, n_tokens >= kMatmulGemmMinTokens (prefill): a tensor-core GEMM
//    (mma.sync m16n8k16, f16 operands, f32 accumulation). Weight tiles are dequantized to f16 in
//    shared memory (F32 and BF16 weights rounded to f16, so they too must stay below 65504); X
//    is rounded to f16 (so |X| must stay below 65504). Error: each product
//    is off by at most ~2^-10 relative (both operands rounded to f16), |y - y_exact| <~
//    1e-3 * sum|w*x|.
//    Mostly (matmul_cuda_uses_blas) the same product goes through cuBLAS (matmul_blas.cu): W is
//    dequantized to f16 into the stream scratch by the GEMM's own tile code (bit-identical f16
//    weights; F16 weights are read in place), X is rounded to f16 the same way, and
//    cublasGemmEx (CUBLAS_COMPUTE_32F) accumulates in f32 and writes f32 Y. So the operands and
//    the error bound are the GEMM's; only the f32 summation order differs (cuBLAS's choice of
//    kernel, fixed for a shape, cuBLAS version and GPU: repeated calls give the same bits, but
//    the bits are not the hand-written GEMM's). f16 rather than bf16 operands: bf16 keeps 8
//    significant bits against f16's 11, which would loosen the bound ~8x for no gain in range
//    that the GEMM path (f16) already requires.
//  - F16, BF16 and F32 weights, n_tokens < kMatmulGemmMinTokens: f32 activations, f32
//    accumulation (~1e-6).
//
// Scratch: the activations are converted into Stream::scratch (matmul_cuda_scratch_bytes);
// reserve it before graph capture. The cuBLAS path also keeps its 32 MiB workspace and up to
// 64 M f16 weights there (~160 MiB for any call of >= kMatmulGemmMinTokens tokens, since the
// size cannot depend on n_out; larger matrices go in chunks of rows), and needs the stream's
// cuBLAS handle, made at its first call outside capture: a stream captured before any such call
// takes the hand-written GEMM instead (same operands and bound). Both GEMM paths need W and
// row_bytes 16-byte aligned and n_in % 64 == 0 (GGUF rows of the usual shapes are); otherwise prefill takes the int8
// kernel in groups of 64 tokens (F16/BF16/F32: the matrix-vector kernel). The int8 kernels take
// any even alignment (MXFP4, whose blocks are 17 bytes: any alignment).
//
// The int8-activation kernels are launched as programmatic dependents of the kernel before
// them on the stream (Hopper PDL): they start copying W while that kernel (normally the
// activation quantizer) still runs and wait for it before reading activations. So W must not be
// written by the kernel launched just before such a matmul (copies, memsets and earlier kernels
// are fine). They read W in aligned 16-byte chunks, so they may touch up to 15 bytes before the
// first and after the last row (never outside those 16-byte chunks): pad weight allocations to
// a multiple of 16 bytes (the test does, and compute-sanitizer's memcheck then stays clean).
//
// Failure semantics: an unsupported type or bad shape records invalid_argument / unsupported
// on the Device (sticky) and launches nothing; launch errors are recorded likewise. Y is then
// unspecified. Check Stream::synchronize().
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>

#include "backend/cuda/device.h"
#include "backend/ref/rope.h"
#include "quant/types.h"

namespace hearth::backend {

// Token count from which matmul_cuda uses the f16 tensor-core GEMM (below: int8 activations
// and the batch-invariant integer tensor-core kernel).
constexpr int64_t kMatmulGemmMinTokens = 16;
// Prefill (n_tokens >= kMatmulGemmMinTokens, the GEMM's alignment) takes the cuBLAS path
// (matmul_blas.cu: W dequantized to f16 in memory, cublasGemmEx) except where the hand-written
// GEMM measured faster (cuda_matmul_bench --prefill, H100): weights other than F16, at most
// kMatmulGemmOnlyMaxTokens tokens (one 128-token tile of X), and more than n_sm / 2 tiles of 128
// rows (on 132 SMs n_out > 8448: the 14336-row FFN matrices of an 8B model, Q4_K 73-79 us
// against 100-104 us at 16-128 tokens), where the GEMM fills the device in one wave and writing
// an f16 copy of W first costs more than the product. Elsewhere cuBLAS is 1.3-5x faster (Q4_K
// 4096 x 4096 at 512 tokens: 45.5 us against 80.9 us; 14336 x 4096: 151.8 against 294.3).
// HEARTH_CUDA_BLAS=0 keeps the hand-written GEMM everywhere (comparisons); HEARTH_CUDA_BLAS=all
// takes cuBLAS for every prefill call. Read at every call.
constexpr int64_t kMatmulGemmOnlyMaxTokens = 128;

// Types with a CUDA matmul kernel: F32, F16, BF16 and every can_matmul_cuda_q8 type.
bool can_matmul_cuda(quant::QuantType type);
// Types with the int8-activation path (quantize_activations_cuda + matmul_cuda_q8 and the
// grouped/fused launches below): Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K,
// IQ4_NL, IQ4_XS, MXFP4. Float weights (F32, F16, BF16) are multiplied with f32 activations.
bool can_matmul_cuda_q8(quant::QuantType type);

// Whether matmul_cuda takes the cuBLAS path for this shape on `dev` (when W meets the GEMM's
// alignment conditions), under the current HEARTH_CUDA_BLAS (see kMatmulGemmOnlyMaxTokens).
bool matmul_cuda_uses_blas(const cuda::Device& dev, quant::QuantType type, int64_t n_out, int64_t n_tokens);

// Stream scratch bytes matmul_cuda needs for this shape (0 for float weights with few tokens).
size_t matmul_cuda_scratch_bytes(quant::QuantType type, int64_t n_in, int64_t n_tokens);

void matmul_cuda(cuda::Stream& stream, quant::QuantType type, const std::byte* w, size_t row_bytes,
                 const float* x, float* y, int64_t n_in, int64_t n_out, int64_t n_tokens);

// The two steps of the dp4a path, for callers that multiply one activation by several
// matrices (Q, K and V; gate and up) and so quantize it once:
// quantize_activations_cuda writes X ([n_tokens][n_in] f32, n_in % 32 == 0) as int8 blocks into
// `xq` (device memory of activation_q8_bytes(n_in, n_tokens) bytes, 16-byte aligned);
// matmul_cuda_q8 then computes Y from them for any can_matmul_cuda_q8 type, any n_tokens (Q4_0,
// Q8_0, Q4_K, Q6_K: W read once per 64 tokens, batch-invariant as above; the other types have no
// tensor-core kernel and always take the dp4a kernel below, whatever `kernel` says).
// MatmulQ8Kernel::dp4a picks the earlier dp4a matrix-vector kernels instead (matmul_vec.cu: W
// read once per 8 tokens; the float sums are ordered differently for 1 token and for 2..8, so
// a token's bits depend on the batch): kept to compare against (benches, HEARTH_CUDA_MATVEC).
enum class MatmulQ8Kernel { mma, dp4a };
// The number of chains (ranges of the row summed apart, then added in order) the int8 path
// splits each output into for this shape on `dev`: a function of the shape alone (1 below sm_90).
int matmul_cuda_q8_chains(const cuda::Device& dev, int64_t n_in, int64_t n_out);
size_t activation_q8_bytes(int64_t n_in, int64_t n_tokens);
void quantize_activations_cuda(cuda::Stream& stream, const float* x, void* xq, int64_t n_in, int64_t n_tokens);
void matmul_cuda_q8(cuda::Stream& stream, quant::QuantType type, const std::byte* w, size_t row_bytes,
                    const void* xq, float* y, int64_t n_in, int64_t n_out, int64_t n_tokens,
                    MatmulQ8Kernel kernel = MatmulQ8Kernel::mma);

// ---- Grouped launches of the dp4a kernels for the single-stream decode step, where each
// matrix alone is too small to keep the GPU busy (a launch ramps up and drains once for all).

// A quantized matrix in device memory (a can_matmul_cuda_q8 type; W and row_bytes 2-byte aligned
// except MXFP4, allocations padded as above).
struct MatmulQ8Matrix {
    quant::QuantType type = quant::QuantType::q4_k;
    const std::byte* w = nullptr;
    size_t row_bytes = 0;
    int64_t n_out = 0;
};
struct MatmulQ8Out {
    MatmulQ8Matrix m;
    float* y = nullptr;  // [n_tokens][m.n_out] f32
};

// How a grouped launch of the tensor-core kernel cuts each matrix's sums into chains (the
// numerics of matmul_cuda_q8_chains):
//  - own: each matrix its own matmul_cuda_q8_chains(n_in, n_out): every output bit-identical to
//    matmul_cuda_q8 of that matrix alone;
//  - joint: the matrices of one launch (one weight type) share matmul_cuda_q8_chains(n_in, the
//    sum of their n_out), the count of the stacked matrix: each output bit-identical to
//    matmul_cuda_q8 of its matrix split into that many chains, so it differs from the separate
//    call (in the last bits: the same terms, summed in another order) where the counts differ
//    (8B: Q 4096 rows 4 chains, K and V 1024 rows 8, Q+K+V 6144 rows 4; gate and up 14336 rows
//    2 each, 1 together). Fewer, longer chains for the small matrices, fewer blocks in all.
//    Measured (H100, cuda_matmul_bench --decode, 8B Q4_K_M, us at 8 / 32 / 64 tokens): Q+K+V
//    Q4_K separate 25.4 / 52.9 / 78.2, own 15.2 / 32.0 / 59.5, joint 17.6 / 37.5 / 47.4; Q+K
//    Q4_K and V Q6_K 26.3 / 53.3 / 79.0, own 22.4 / 43.1 / 63.8, joint 19.9 / 39.1 / 58.4; gate+up
//    44.9 / 74.9 / 120.6, own 37.9 / 64.4 / 117.1, joint 37.6 / 58.6 / 93.9.
// Either way a function of the shapes alone, so a token's bits still do not depend on the
// batch.
enum class MatmulQ8Chains { own, joint };

// matmul_cuda_q8(..., kernel) for 1..3 matrices that read the same activations (xq:
// [n_tokens][n_in] as quantize_activations_cuda writes them), as one launch per distinct weight
// type (matrices of one type share a launch; per group of 64 tokens for the tensor-core kernel).
// MatmulQ8Kernel::dp4a: every output bit-identical to the separate calls (a row's arithmetic
// depends on n_in alone). MatmulQ8Kernel::mma (types without a tensor-core kernel take the dp4a
// launch): each matrix's tiles are its own (no tile spans two matrices; any n_out), summed in the
// chains `chains` says (above).
void matmul_cuda_q8_grouped(cuda::Stream& stream, const void* xq, int64_t n_in, int64_t n_tokens,
                            std::initializer_list<MatmulQ8Out> outs, MatmulQ8Kernel kernel = MatmulQ8Kernel::dp4a,
                            MatmulQ8Chains chains = MatmulQ8Chains::own);

// The expert matrices of a mixture-of-experts decode step, chosen on the device (no copy to
// the host, so the step can be a CUDA graph). Each out.m is a stack of expert matrices of
// out.m.n_out rows each (expert e's first row at e * n_out); for j < k:
//   out.y[j * n_out + r] = row r of expert ids[j] · x_j,
// with x_j token 0 of xq for every j (shared input: gate and up), or, with per_expert_input,
// token j of xq (xq then holds k tokens: the down projection of each expert's own input).
// ids: [k] int32 in device memory, written by earlier work on the stream (the launch is not a
// programmatic dependent, so it waits for it). dp4a kernels; every output bit-identical to
// matmul_cuda_q8(dp4a) of that expert's matrix over that token. n_out % 4 == 0, up to 3 stacks
// (one launch per distinct type), k * n_out < 2^31.
void matmul_cuda_q8_experts(cuda::Stream& stream, const void* xq, int64_t n_in, const int32_t* ids, int k,
                            bool per_expert_input, std::initializer_list<MatmulQ8Out> outs);

// The expert matrices of a mixture-of-experts step routed on the host (prompt steps), on the
// tensor cores: one launch per weight type for every expert, where a call per expert paid a
// dequantization, a conversion and a GEMM launch each (128 experts x 3 matrices per layer).
// xq: n_rows activation rows (quantize_activations_cuda of [n_rows][n_in]) grouped by expert;
// items: n_items x 4 int32 in device memory, 16-byte aligned, {expert, first row, row count
// (1..kMatmulQ8ExpertGroupRows), 0}, each a group of rows of one expert (an expert's rows cut
// into groups of at most that many); max_rows: the largest count (sizes the kernel). For each
// item and each out (a stack of expert matrices of out.m.n_out rows each, expert e's first row
// at e * n_out):
//   out.y[(first + i) * n_out + r] = row r of expert `expert` · xq row (first + i),  i < count;
// other rows of y are not written. Each output is summed in one chain (matmul.h's chain numerics;
// bit-identical to matmul_cuda_q8 of that expert over those rows where matmul_cuda_q8_chains of
// the expert's shape is 1). Types: can_matmul_cuda_q8_expert_groups. Not a programmatic launch:
// it runs after the work before it (the table's upload included). Bad arguments record
// invalid_argument (unsupported for a type without the kernel); nothing is launched.
constexpr int kMatmulQ8ExpertGroupRows = 64;
bool can_matmul_cuda_q8_expert_groups(quant::QuantType type);
void matmul_cuda_q8_expert_groups(cuda::Stream& stream, const void* xq, int64_t n_in, int64_t n_rows,
                                  const int32_t* items, int n_items, int max_rows,
                                  std::initializer_list<MatmulQ8Out> outs);

// Where the Q/K/V projections of matmul_qkv_rope_cuda go.
struct QkvRopeCuda {
    int n_head = 0, n_head_kv = 0, head_dim_k = 0, head_dim_v = 0;
    RopeConfig rope;                     // normal mode only (neox: invalid_argument); freq_factors on the device
    const int32_t* positions = nullptr;  // [n_tokens] int32, device
    const int32_t* slots = nullptr;      // [n_tokens] int32 cache rows, device; distinct
    void* k_cache = nullptr;             // f16 rows, k_row_stride halves apart (attention.h's layout)
    int64_t k_row_stride = 0;
    void* v_cache = nullptr;
    int64_t v_row_stride = 0;
};

// The Q, K and V projections of a decode step with rope and the KV write done by the matmul
// kernel as it stores its outputs: the bits of matmul_cuda_q8(dp4a) for wq, wk and wv (the same
// xq) followed by rope_kv_write_cuda (ops.h) over q, k, v, without the k and v f32 outputs and
// the extra kernel. q: [n_tokens][n_head * head_dim_k] f32, receives q rotated; K and V rows go
// to the cache rows slots[t] only. wq.n_out = n_head * head_dim_k, wk.n_out = n_head_kv *
// head_dim_k, wv.n_out = n_head_kv * head_dim_v; one launch per distinct weight type (Q4_K_M's
// Q6_K V matrices take their own). Bad arguments record invalid_argument; nothing is launched.
void matmul_qkv_rope_cuda(cuda::Stream& stream, const void* xq, int64_t n_in, int64_t n_tokens,
                          const MatmulQ8Matrix& wq, const MatmulQ8Matrix& wk, const MatmulQ8Matrix& wv, float* q,
                          const QkvRopeCuda& r);

}  // namespace hearth::backend
