// Internal to backend/cuda: launchers of the matmul kernels (matmul.cu dispatches to them) and
// the small device helpers they share. Contract and numerics: matmul.h.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "backend/cuda/device.h"
#include "backend/cuda/rope.cuh"
#include "quant/iq4_nl.h"
#include "quant/mxfp4.h"
#include "quant/types.h"

namespace hearth::backend::cuda_kernels {

// Activations quantized for the dp4a kernels (q8_1-style, one block per 32 values), stored as
// two arrays so that both stay aligned: qs [n_tokens][n_in] int8 and ds [n_tokens][n_in / 32]
// {d, sum of the block's 32 quants as a float}; value i of token t is ds[t][i/32].x * qs[t][i].
struct ActQ8 {
    const int8_t* qs;
    const float2* ds;
};
// Byte size of one ActQ8 buffer, and where its ds array starts (16-byte aligned).
inline size_t act_q8_ds_offset(int64_t n_in, int64_t n_tokens) { return ((size_t)(n_in * n_tokens) + 15) & ~(size_t)15; }
inline size_t act_q8_bytes(int64_t n_in, int64_t n_tokens) {
    return act_q8_ds_offset(n_in, n_tokens) + (size_t)(n_in / 32) * n_tokens * sizeof(float2);
}

// x [n_tokens][n_in] f32 (n_in % 32 == 0, any 4-byte alignment) -> qs, ds as above.
// d = amax / 127, q = round_half_even(x * (127 / amax)) (0 for an all-zero block).
// With `pdl`, launched as a programmatic dependent (launch.cuh's contract).
cudaError_t quantize_q8(const float* x, int8_t* qs, float2* ds, int n_in, int n_tokens, cudaStream_t s,
                        bool pdl = false);
// xh[i] = f16(x[i]), round to nearest even, i < n.
cudaError_t convert_f16(const float* x, __half* xh, int64_t n, cudaStream_t s);

// dp4a matrix-vector product (matmul_vec.cu) for Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K,
// Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS and MXFP4; 1 <= n_tokens <= 8.
// One launch covers up to kMvMaxSegs matrices of the same type and n_in that read the same
// activations (Q, K and V; gate and up): their rows form one row space, matrix 0's first, and
// every output row is computed exactly as in a launch of its matrix alone (the per-row
// arithmetic depends on n_in only), so grouping changes no bits. Each matrix has its own output
// (MvKind):
//  - kMvF32: y[t][row] f32 at out + t * ld;
//  - kMvF16: the f16 cache row of token t, out + slots[t] * ld halves (the V write);
//  - kMvRopeF32 / kMvRopeF16: as those, the rows rotated first as rope_cuda rotates them
//    (rows = heads of rope.head_dim values, pairs (2i, 2i + 1), normal mode only; rope.cuh's
//    arithmetic, so the bits equal matvec + rope_kv_write_cuda); the matrix's row_begin and row
//    count must be even.
// W rows must be 2-byte aligned (MXFP4: any alignment); n_sm sizes the persistent grid. With `pdl` the kernel is
// launched as a programmatic dependent of the previous kernel on the stream: it starts
// streaming W before that kernel has finished and waits for it before reading the activations
// (launch.cuh's contract); it lets its own dependents launch at once.
constexpr int kMvMaxSegs = 3;
enum MvKind : int { kMvF32 = 0, kMvF16 = 1, kMvRopeF32 = 2, kMvRopeF16 = 3 };
struct MvSeg {
    const std::byte* w;
    size_t row_bytes;
    int row_begin;  // first row in the launch's row space (set by matvec_q8)
    int n_rows;
    int kind;       // MvKind
    void* out;      // f32 [n_tokens][ld] or f16 cache rows (ld halves apart)
    int64_t ld;
    // Experts chosen on the device (optional; kMvF32 only): w is a stack of matrices of id_rows
    // rows each, and row l of the segment is row l % id_rows of matrix ids[l / id_rows] (ids in
    // device memory, written by earlier work: such launches must not be programmatic). With
    // act_per_id (n_tokens = 1) row l reads the activations of token l / id_rows of the
    // activation buffer instead of token 0. id_rows must be a multiple of 4 (a row group never
    // spans two ids), row_begin too.
    const int32_t* ids = nullptr;
    int id_rows = 0;
    bool act_per_id = false;
};
struct MvArgs {
    MvSeg seg[kMvMaxSegs];
    int n_segs;
    int n_rows;                  // sum of the matrices' rows (set by matvec_q8)
    RopeConsts rope;             // rope kinds
    const int32_t* positions;    // [n_tokens] int32 (rope kinds)
    const int32_t* slots;        // [n_tokens] int32 cache rows (f16 kinds)
};
bool has_matvec_q8(quant::QuantType type);
cudaError_t matvec_q8(quant::QuantType type, MvArgs args, ActQ8 act, int n_in, int n_tokens, int n_sm, bool pdl,
                      cudaStream_t s);

// Batch-invariant integer tensor-core matmul (matmul_mma.cu) for Q4_0, Q8_0, Q4_K, Q6_K (has_mma;
// other types have none: matmul.cu runs the dp4a kernel for them):
// 1 <= n_tokens <= kMmaMaxTokens, weights read once for all tokens. Each output is summed in
// an order fixed by the matrix shape alone (mma_chains chains of super-units, added in order;
// see matmul_mma.cu), so a token's result does not depend on the other tokens of the call.
// W rows must be 2-byte aligned, act.qs 16-byte aligned. `clusters` (sm_90) allows splitting
// the sum over mma_chains(n_in, n_out) thread blocks of a cluster; without it every row is one
// chain (a different, equally fixed order). With `pdl` the kernel is a programmatic dependent
// of the previous kernel on the stream (it copies activations only after waiting for it).
constexpr int kMmaMaxTokens = 64;
bool has_mma(quant::QuantType type);
int mma_chains(int64_t n_in, int64_t n_out);
cudaError_t matmul_q8_mma(quant::QuantType type, const std::byte* w, size_t row_bytes, ActQ8 act, float* y, int n_in,
                          int n_out, int n_tokens, bool clusters, bool pdl, cudaStream_t s);
// The same kernels over up to kMmaMaxSegs matrices of one type and n_in that read the same
// activations (Q, K and V; gate and up), as one launch: their tiles form one grid, matrix 0's
// first, and no tile spans two matrices (any n_out). Each matrix is summed in n_chains chains
// (a power of two <= 8, at most the row's super-units; 1 without clusters), its own: a matrix's
// outputs are bitwise those of matmul_q8_mma with that chain count. The cluster size is the
// largest n_chains; a matrix with fewer chains puts several tiles in one cluster.
constexpr int kMmaMaxSegs = 3;
struct MmaSeg {
    const std::byte* w;
    size_t row_bytes;
    float* y;  // [n_tokens][n_out] f32
    int n_out;
    int n_chains;
};
cudaError_t matmul_q8_mma_grouped(quant::QuantType type, const MmaSeg* segs, int n_segs, ActQ8 act, int n_in,
                                  int n_tokens, bool pdl, cudaStream_t s);
// The same kernel over expert groups (matmul.h: matmul_cuda_q8_expert_groups): each seg is a
// stack of experts of n_out rows (n_chains must be 1: one chain), items (device, 16-byte aligned)
// n_items int4 {expert, first activation row, rows 1..max_rows, unused}; y of expert rows r of
// row t goes to seg.y[t * n_out + r]. Not programmatic: it waits for the work before it.
cudaError_t matmul_q8_mma_experts(quant::QuantType type, const MmaSeg* segs, int n_segs, const int4* items,
                                  int n_items, int max_rows, ActQ8 act, int n_in, cudaStream_t s);

// Tensor-core GEMM (matmul_gemm.cu) for F32, F16, BF16 and every type of has_matvec_q8: W 16-byte aligned with
// row_bytes % 16 == 0, n_in % 64 == 0; xh [n_tokens][n_in] f16, 16-byte aligned. n_sm sizes
// the split over K when the output has too few tiles to fill the device (y is then zeroed
// first and the two halves of K are added with atomics: a + b is exact-order independent).
bool has_gemm(quant::QuantType type);
cudaError_t gemm_f16(quant::QuantType type, const std::byte* w, size_t row_bytes, const __half* xh, float* y, int n_in,
                     int n_out, int n_tokens, int n_sm, cudaStream_t s);
// Rows [0, n_rows) of W (a has_gemm type, gemm_f16's alignment) as f16 into out [n_rows][n_in]
// (16-byte aligned), each value bit-identical to the one gemm_f16 puts in its shared-memory tile
// (F32 and BF16 weights rounded to f16). n_in % 32 == 0.
cudaError_t dequant_f16(quant::QuantType type, const std::byte* w, size_t row_bytes, __half* out, int n_in, int n_rows,
                        cudaStream_t s);

// ---- The cuBLAS prefill path (matmul_blas.cu): W dequantized to f16 into the stream scratch in
// chunks of rows, X converted to f16, cublasGemmEx with f32 accumulation and f32 output.

// Where matmul_cuda takes it (matmul_cuda_uses_blas), per HEARTH_CUDA_BLAS, read at every call
// so a bench may change it between calls: "0" never (the hand-written GEMM everywhere, for
// comparisons), "all" for every GEMM-eligible call (the bench's crossover figures), otherwise
// (unset) the shape rule of matmul.h.
enum class BlasMode { off, shape_rule, always };
BlasMode blas_mode();
// Rows of W dequantized per cuBLAS call for rows of n_in values (a multiple of 128; at least
// 128). HEARTH_CUDA_BLAS_CHUNK_ROWS overrides it (tests: small chunks), never upwards.
int64_t blas_chunk_rows(int64_t n_in);
// Scratch bytes of the path: X as f16, the cuBLAS workspace and one chunk of f16 weights (none
// for F16 weights, which cuBLAS reads in place).
size_t blas_scratch_bytes(quant::QuantType type, int64_t n_in, int64_t n_tokens);
// Y = W X^T through cuBLAS, with the arguments matmul_cuda checked (gemm_f16's conditions).
// `scratch`: blas_scratch_bytes, 256-byte aligned. Returns false, having queued nothing, when the
// stream is being captured and has no cuBLAS handle yet (creating one is not capture-safe): the
// caller then takes gemm_f16. Failures are recorded on `dev` (true is returned then).
bool matmul_blas(cuda::Device& dev, cudaStream_t s, void* scratch, quant::QuantType type, const std::byte* w,
                 size_t row_bytes, const float* x, float* y, int64_t n_in, int64_t n_out, int64_t n_tokens);

// ---- device helpers shared by the kernels

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float fp16_bits_to_f32(uint32_t h) {
    return __half2float(__ushort_as_half((unsigned short)(h & 0xffffu)));
}

// Exact int -> float for |i| < 2^22 with two full-rate instructions (I2F runs at quarter rate).
__device__ __forceinline__ float small_int_to_float(int i) {
    return __int_as_float(0x4B400000 + i) - 12582912.0f;  // 1.5 * 2^23
}

// Byte k (0..3) of `word` as a float, exactly, minus `bias`: builds the float 2^23 + byte
// with one byte permute, then subtracts (2^23 + bias).
template <int k>
__device__ __forceinline__ float byte_to_float(uint32_t word, float bias_plus_2p23) {
    return __uint_as_float(__byte_perm(word, 0x4B000000u, 0x7540 | k)) - bias_plus_2p23;
}

// 16-entry int8 code books as four little-endian words (entries 4i..4i+3 in word i), for lut16.
constexpr uint32_t pack_i8x4(const int8_t* v) {
    return (uint32_t)(uint8_t)v[0] | ((uint32_t)(uint8_t)v[1] << 8) | ((uint32_t)(uint8_t)v[2] << 16) |
           ((uint32_t)(uint8_t)v[3] << 24);
}
// (Scalars, not arrays: device code may read host constexpr scalars only.)
constexpr uint32_t kIq4Lut0 = pack_i8x4(quant::kIq4NlValues), kIq4Lut1 = pack_i8x4(quant::kIq4NlValues + 4);
constexpr uint32_t kIq4Lut2 = pack_i8x4(quant::kIq4NlValues + 8), kIq4Lut3 = pack_i8x4(quant::kIq4NlValues + 12);
constexpr uint32_t kMxLut0 = pack_i8x4(quant::kMxfp4Values), kMxLut1 = pack_i8x4(quant::kMxfp4Values + 4);
constexpr uint32_t kMxLut2 = pack_i8x4(quant::kMxfp4Values + 8), kMxLut3 = pack_i8x4(quant::kMxfp4Values + 12);

// Four 4-bit indices (the bytes of `codes`, each 0..15) looked up in a 16-entry int8 table
// (t0..t3 as above): the entries, one per byte. Two byte permutes (entries 0..7 and 8..15,
// selected by the low 3 bits) and a per-byte select on bit 3; the selector nibbles stay <= 7, so
// prmt's sign-replicate mode is never hit.
__device__ __forceinline__ uint32_t lut16(uint32_t codes, uint32_t t0, uint32_t t1, uint32_t t2, uint32_t t3) {
    const uint32_t x = codes & 0x07070707u;
    const uint32_t sel = (x & 0x7u) | ((x >> 4) & 0x70u) | ((x >> 8) & 0x700u) | ((x >> 12) & 0x7000u);
    const uint32_t lo = __byte_perm(t0, t1, sel), hi = __byte_perm(t2, t3, sel);
    const uint32_t m = ((codes >> 3) & 0x01010101u) * 0xffu;
    return (lo & ~m) | (hi & m);
}

__device__ __forceinline__ uint32_t iq4_lut(uint32_t codes) { return lut16(codes, kIq4Lut0, kIq4Lut1, kIq4Lut2, kIq4Lut3); }
__device__ __forceinline__ uint32_t mxfp4_lut(uint32_t codes) { return lut16(codes, kMxLut0, kMxLut1, kMxLut2, kMxLut3); }

// The 8 codes of a packed word (byte k: code of value k in the low nibble, of value k + 16 in
// the high nibble, as IQ4_NL/IQ4_XS/MXFP4 store them) looked up at once: lo = the entries of
// values 0..3, hi = those of values 16..19. The nibbles serve directly as prmt selectors (low 3
// bits, masked so prmt's sign mode stays off; entries 0..7 and 8..15 looked up apart, then
// picked per byte by bit 3 with a third prmt), which yields the values interleaved (0, 16, 1,
// 17 | 2, 18, 3, 19); two more prmt sort them. 12 instructions per 8 codes, about half of two
// lut16 calls (the single-token decode kernels are bound by such per-byte work).
__device__ __forceinline__ void lut16x8(uint32_t w, uint32_t t0, uint32_t t1, uint32_t t2, uint32_t t3, uint32_t& lo,
                                        uint32_t& hi) {
    const uint32_t x = w & 0x77777777u, xb = x >> 16;
    const uint32_t a = __byte_perm(__byte_perm(t0, t1, x), __byte_perm(t2, t3, x), 0x3210u | ((w >> 1) & 0x4444u));
    const uint32_t b = __byte_perm(__byte_perm(t0, t1, xb), __byte_perm(t2, t3, xb), 0x3210u | ((w >> 17) & 0x4444u));
    lo = __byte_perm(a, b, 0x6420u);
    hi = __byte_perm(a, b, 0x7531u);
}

// quant::e8m0_to_f32_half: 2^(e - 128), exact (subnormal for e < 2).
__device__ __forceinline__ float e8m0_half(uint32_t e) {
    return __uint_as_float(e < 2 ? 0x00200000u << e : (e - 1) << 23);
}

// Bit 4 of byte k set when bit k of `n` (0..15) is: the fifth code bit of four Q5 values.
__device__ __forceinline__ uint32_t spread_bit4(uint32_t n) { return (((n & 0xfu) * 0x00204081u) & 0x01010101u) << 4; }

// Q4_K scale and min of sub-block j (quant::detail::get_scale_min_k4) from the header words
// h1..h3 (scales[0..3], [4..7], [8..11]), without branches.
__device__ __forceinline__ void q4_k_scale_min(int j, uint32_t h1, uint32_t h2, uint32_t h3, uint32_t& sc, uint32_t& mn) {
    const int bsh = 8 * (j & 3);
    const uint32_t a = h1 >> bsh, b = h2 >> bsh, c = h3 >> bsh;
    sc = j < 4 ? (a & 63) : ((c & 0xF) | ((a >> 2) & 0x30));
    mn = j < 4 ? (b & 63) : (((c >> 4) & 0xF) | ((b >> 2) & 0x30));
}

// The activation quantization the dp4a matvecs read (q8_1-style, one f32 scale per 32 values):
// quantizes 4 values per lane of an 8-lane group (one block of 32). Every lane of the group must
// call it (shuffles); `active` lanes write their 4 codes at qs and, from lane 0, {d, sum} at ds.
// Used by quantize_q8_kernel and by the fused kernels in ops.cu, so both give the same bits.
__device__ __forceinline__ void quantize_4(const float (&v)[4], bool active, int sub, int8_t* qs, float2* ds) {
    float amax = fmaxf(fmaxf(fabsf(v[0]), fabsf(v[1])), fmaxf(fabsf(v[2]), fabsf(v[3])));
#pragma unroll
    for (int o = 4; o > 0; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
    const float d = amax / 127.0f;
    const float id = amax > 0.0f ? 127.0f / amax : 0.0f;
    int qv[4], sum = 0;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        qv[i] = __float2int_rn(v[i] * id);
        sum += qv[i];
    }
#pragma unroll
    for (int o = 4; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
    if (active) {
        *reinterpret_cast<uint32_t*>(qs) = (uint32_t)(qv[0] & 0xff) | ((uint32_t)(qv[1] & 0xff) << 8) |
                                           ((uint32_t)(qv[2] & 0xff) << 16) | ((uint32_t)(qv[3] & 0xff) << 24);
        if (sub == 0) *ds = make_float2(d, (float)sum);
    }
}

}  // namespace hearth::backend::cuda_kernels
