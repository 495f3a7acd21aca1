// The cuBLAS prefill path of matmul_cuda (declared in matmul_kernels.cuh; numerics: matmul.h):
// W is dequantized to f16 into the stream scratch by dequant_f16 (the hand-written GEMM's own
// tile dequantization, so both paths multiply the same f16 weights), X is converted to f16, and
// cublasGemmEx multiplies them with f32 accumulation into the f32 Y. For large token counts this
// beats gemm_f16, which dequantizes every weight tile once per 128-token tile of X and runs its
// mma.sync loop at well under the tensor cores' rate; here W is dequantized once per call
// (2 bytes written per weight, then read by cuBLAS) and the product runs at cuBLAS's rate.
//
// Column-major view (cuBLAS's): Y^T [n_out x n_tokens] (ldc n_out) = op(A) B with A = the f16 rows
// of W as a column-major [n_in x rows] matrix (transposed: OP_T) and B = X^T [n_in x n_tokens]
// (the row-major [n_tokens][n_in] X, ldb n_in): the "TN" form, cuBLAS's fastest.
//
// Scratch layout (256-byte aligned parts): [X as f16: n_tokens * n_in][cuBLAS workspace]
// [f16 rows of W: blas_chunk_rows(n_in) * n_in]. The workspace is set on the handle at every call,
// so cuBLAS allocates nothing itself and the calls can be captured into a CUDA graph.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <utility>

#include "backend/cuda/matmul.h"
#include "backend/cuda/matmul_kernels.cuh"

namespace hearth::backend::cuda_kernels {
namespace {

using quant::QuantType;

// cuBLAS's recommended workspace for Hopper (its kernels with split-K reductions use it).
constexpr size_t kWorkspaceBytes = size_t(32) << 20;
// Weights dequantized per cuBLAS call, in elements: 128 MiB of f16, so every matrix of an 8B
// model (the largest, 14336 x 4096, has 58.7 M) takes one dequantization and one GEMM; only
// vocabulary-sized matrices are cut into chunks of rows. Chunks small enough to stay in the
// 50 MB L2 lose more in GEMM efficiency than they save in traffic: 8B Q4_K_M pp512 on an H100
// with HEARTH_CUDA_BLAS_CHUNK_ROWS 4096 / 2048 / 1024 gave 14,504 / 13,028 / 11,326 t/s against
// 14,695 and 14,277 unchunked in the same run.
constexpr int64_t kChunkElems = int64_t(64) << 20;

size_t align256(size_t bytes) { return (bytes + 255) & ~size_t(255); }

// One cuBLAS handle per (device ordinal, cudaStream_t), created at a stream's first call outside
// graph capture. Process-wide because the Stream object (device.h) has no slot for it; keyed by
// the stream handle, and the stream and workspace are set on the handle at every call, so a new
// stream that reuses a destroyed one's handle value is served correctly. Handles are never
// destroyed (they may be in use until exit, after the CUDA runtime's teardown order is unknown);
// their number is bounded by the number of streams a process creates. A Stream is driven by one
// thread at a time (device.h), so a handle is too; the mutex guards only the table.
struct HandleTable {
    std::mutex mutex;
    std::map<std::pair<int, cudaStream_t>, cublasHandle_t> handles;  // guarded by mutex; only grows
};
HandleTable& handle_table() {
    static HandleTable* table = new HandleTable;  // intentionally leaked (see above)
    return *table;
}

bool check_blas(cuda::Device& dev, cublasStatus_t st, const char* what) {
    if (st == CUBLAS_STATUS_SUCCESS) return true;
    dev.fail(error(StatusCode::internal, strformat("%s: %s (%d)", what, cublasGetStatusString(st), (int)st)));
    return false;
}

// The chunk rows without the environment's override: what the scratch is sized for.
int64_t default_chunk_rows(int64_t n_in) {
    const int64_t rows = kChunkElems / std::max<int64_t>(n_in, 1) / 128 * 128;
    return std::max<int64_t>(rows, 128);
}

}  // namespace

BlasMode blas_mode() {
    const char* e = std::getenv("HEARTH_CUDA_BLAS");
    if (e != nullptr && std::strcmp(e, "0") == 0) return BlasMode::off;
    if (e != nullptr && std::strcmp(e, "all") == 0) return BlasMode::always;
    return BlasMode::shape_rule;
}

int64_t blas_chunk_rows(int64_t n_in) {
    const int64_t rows = default_chunk_rows(n_in);
    const char* e = std::getenv("HEARTH_CUDA_BLAS_CHUNK_ROWS");
    const long long v = e != nullptr ? std::atoll(e) : 0;
    return v > 0 ? std::min<int64_t>(rows, v) : rows;
}

size_t blas_scratch_bytes(QuantType type, int64_t n_in, int64_t n_tokens) {
    size_t bytes = align256((size_t)n_in * n_tokens * sizeof(__half)) + kWorkspaceBytes;
    if (type != QuantType::f16) bytes += (size_t)default_chunk_rows(n_in) * n_in * sizeof(__half);
    return bytes;
}

bool matmul_blas(cuda::Device& dev, cudaStream_t s, void* scratch, QuantType type, const std::byte* w,
                 size_t row_bytes, const float* x, float* y, int64_t n_in, int64_t n_out, int64_t n_tokens) {
    cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
    if (!dev.check(cudaStreamIsCapturing(s, &capture), "matmul_cuda (cuBLAS): cudaStreamIsCapturing")) return true;
    cublasHandle_t h = nullptr;
    {
        HandleTable& table = handle_table();
        std::lock_guard<std::mutex> lock(table.mutex);
        const auto key = std::make_pair(dev.index(), s);
        const auto it = table.handles.find(key);
        if (it != table.handles.end()) {
            h = it->second;
        } else {
            if (capture != cudaStreamCaptureStatusNone) return false;
            if (!check_blas(dev, cublasCreate(&h), "matmul_cuda: cublasCreate")) return true;
            table.handles.emplace(key, h);
        }
    }
    auto* base = static_cast<std::byte*>(scratch);
    const size_t xh_bytes = align256((size_t)n_in * n_tokens * sizeof(__half));
    auto* xh = reinterpret_cast<__half*>(base);
    void* workspace = base + xh_bytes;
    auto* wh = reinterpret_cast<__half*>(base + xh_bytes + kWorkspaceBytes);
    if (!check_blas(dev, cublasSetStream(h, s), "matmul_cuda: cublasSetStream") ||
        !check_blas(dev, cublasSetWorkspace(h, workspace, kWorkspaceBytes), "matmul_cuda: cublasSetWorkspace")) {
        return true;
    }
    if (!dev.check(convert_f16(x, xh, n_in * n_tokens, s), "matmul_cuda (cuBLAS) convert launch")) return true;
    const float alpha = 1.0f, beta = 0.0f;
    auto gemm = [&](const __half* a, int64_t lda, int64_t rows, float* c) {
        return check_blas(dev,
                          cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, (int)rows, (int)n_tokens, (int)n_in, &alpha, a,
                                       CUDA_R_16F, (int)lda, xh, CUDA_R_16F, (int)n_in, &beta, c, CUDA_R_32F,
                                       (int)n_out, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                          "matmul_cuda: cublasGemmEx");
    };
    if (type == QuantType::f16) {  // already f16: cuBLAS reads W in place (rows row_bytes apart)
        gemm(reinterpret_cast<const __half*>(w), (int64_t)(row_bytes / sizeof(__half)), n_out, y);
        return true;
    }
    // Chunks of about equal size (a last chunk of a few rows would run at a poor rate).
    const int64_t max_rows = blas_chunk_rows(n_in);
    const int64_t n_chunks = (n_out + max_rows - 1) / max_rows;
    const int64_t per = std::min(max_rows, ((n_out + n_chunks - 1) / n_chunks + 127) / 128 * 128);
    for (int64_t r0 = 0; r0 < n_out; r0 += per) {
        const int64_t rows = std::min(per, n_out - r0);
        if (!dev.check(dequant_f16(type, w + (size_t)r0 * row_bytes, row_bytes, wh, (int)n_in, (int)rows, s),
                       "matmul_cuda (cuBLAS) dequantize launch") ||
            !gemm(wh, n_in, rows, y + r0)) {
            return true;
        }
    }
    return true;
}

}  // namespace hearth::backend::cuda_kernels
