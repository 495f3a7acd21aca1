// The CUDA device layer: device query, a device handle that owns the sticky error Status,
// streams and device buffers. This header includes no CUDA header, so plain C++ code (tests,
// benches, ops/) can use it; the CUDA types appear only as opaque handles.
//
// Errors (STYLE.md §6): every CUDA call made through these objects that fails records the
// first failure in its Device's sticky Status; later work on that device is skipped (kernels
// are not launched, copies are not issued) and the Status surfaces at the next sync point
// (Stream::synchronize, Device::status). Nothing here aborts or throws.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <memory_resource>
#include <mutex>
#include <string>

#include "base/status.h"

namespace hearth::backend::cuda {

struct DeviceInfo {
    int index = -1;               // CUDA runtime ordinal (after CUDA_VISIBLE_DEVICES)
    std::string name;             // e.g. "NVIDIA H100 80GB HBM3"
    int cc_major = 0, cc_minor = 0;
    int n_sm = 0;                 // streaming multiprocessors
    size_t total_mem_bytes = 0;
    size_t l2_bytes = 0;
    int mem_bus_bits = 0;
};

// Number of usable CUDA devices; 0 when there is no driver, no GPU, or the driver is older
// than the runtime. Never fails: a CPU-only machine is a normal case, not an error.
int device_count();
// Why device_count() is 0, in words ("no CUDA-capable device is detected", ...); empty if > 0.
std::string no_device_reason();
Result<DeviceInfo> query_device(int index);

// One GPU. Owns the sticky Status of all work issued to it. Not copyable; lives at least as
// long as its Streams and DeviceBuffers. Thread safety: record_error may be called from any
// thread; everything else is meant for one thread of control at a time.
class Device {
public:
    // not_found "no CUDA device ..." when device_count() is 0; out_of_range for a bad index.
    static Result<std::unique_ptr<Device>> open(int index = 0);
    Device(const Device&) = delete;
    Device& operator=(const Device&) = delete;

    const DeviceInfo& info() const { return info_; }
    int index() const { return info_.index; }

    // The first error since open (ok if none). Sticky: once set it never clears.
    Status status() const;
    bool is_failed() const;
    // Records `cuda_err` (a cudaError_t) if it is an error and none is recorded yet, with
    // `what` as context. Returns true when `cuda_err` was success.
    bool check(int cuda_err, const char* what);
    // Records a non-CUDA failure (bad argument to a kernel wrapper) the same sticky way.
    void fail(Status status);
    // Makes this the calling thread's current device; records failure.
    bool make_current();
    // Device memory free now (cudaMemGetInfo: other processes' allocations count as used).
    // A query failure is returned, not recorded.
    Result<size_t> free_memory();

private:
    explicit Device(DeviceInfo info) : info_(std::move(info)) {}
    DeviceInfo info_;
    mutable std::mutex mutex_;  // guards status_
    Status status_;             // first failure; ok until then
};

// An in-order queue of work on one device (a cudaStream_t). Errors go to the Device.
class Stream {
public:
    explicit Stream(Device& device);  // on failure the Device is marked failed; handle() is null
    ~Stream();
    Stream(const Stream&) = delete;
    Stream& operator=(const Stream&) = delete;

    Device& device() const { return *device_; }
    void* handle() const { return stream_; }  // cudaStream_t
    // Waits for all work queued so far; returns the Device's sticky Status (ok if all went well).
    Status synchronize();

    // Device scratch memory for the temporaries of kernels queued on this stream (quantized or
    // converted activations of matmul_cuda). At least `size_bytes`, 256-byte aligned; its
    // contents are dead between calls (work on one stream runs in order, so one scratch serves
    // every call). Grows on demand and never shrinks. Growing synchronizes the stream and frees
    // the old buffer, so it is refused while the stream is being captured into a CUDA graph:
    // reserve the largest size before capturing (the decode step then allocates nothing).
    // Returns nullptr after recording the failure on the Device (sticky).
    void* scratch(size_t size_bytes);
    size_t scratch_bytes() const { return scratch_bytes_; }

    // Programmatic dependent launches (sm_90): when on, the decode-step kernels of ops.h,
    // attention.h and matmul.h's int8 path are queued so that each may start while the kernel
    // before it finishes (it waits for it before touching its results: backend/cuda/launch.cuh).
    // Results are the same bits either way; only the gaps between kernels shrink. Off by default.
    void set_programmatic(bool on) { programmatic_ = on; }
    bool programmatic() const { return programmatic_; }

private:
    Device* device_;
    bool programmatic_ = false;
    void* stream_ = nullptr;     // cudaStream_t, owned
    void* scratch_ = nullptr;    // device memory, owned; scratch_bytes_ bytes
    size_t scratch_bytes_ = 0;
};

// Page-locked host memory (cudaMallocHost) as a memory resource, for host buffers that device
// copies fill every step (logits): copies into it run asynchronously at the link's full speed
// instead of through the driver's pageable staging. Process-wide and stateless, like
// std::pmr::new_delete_resource(); allocation failure throws std::bad_alloc as operator new does.
// Page-locking is slow (milliseconds per MB): keep such buffers and reuse them.
std::pmr::memory_resource* pinned_host_resource();

// Device memory (cudaMalloc: 256-byte aligned). Move-only; frees on destruction.
class DeviceBuffer {
public:
    DeviceBuffer() = default;
    // resource_exhausted when the allocation fails (the Device is not marked failed: a failed
    // allocation leaves the device usable, so callers can retry smaller).
    static Result<DeviceBuffer> allocate(Device& device, size_t size_bytes);
    ~DeviceBuffer();
    DeviceBuffer(DeviceBuffer&& other) noexcept;
    DeviceBuffer& operator=(DeviceBuffer&& other) noexcept;

    void* data() const { return ptr_; }
    size_t size_bytes() const { return size_bytes_; }
    template <typename T> T* as() const { return static_cast<T*>(ptr_); }

    // Asynchronous copies on `stream` (host memory must stay valid until the stream is
    // synchronized; pageable host memory makes them synchronous in practice). A range outside
    // the buffer records invalid_argument on the Device and copies nothing.
    void upload(Stream& stream, const void* src, size_t size_bytes, size_t offset_bytes = 0);
    void download(Stream& stream, void* dst, size_t size_bytes, size_t offset_bytes = 0) const;

private:
    void release();
    Device* device_ = nullptr;
    void* ptr_ = nullptr;
    size_t size_bytes_ = 0;
};

}  // namespace hearth::backend::cuda
