#include "backend/cuda/device.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <new>

namespace hearth::backend::cuda {

namespace {

std::string describe(cudaError_t err) {
    return strformat("%s (%s)", cudaGetErrorString(err), cudaGetErrorName(err));
}

class PinnedHostResource final : public std::pmr::memory_resource {
    void* do_allocate(size_t bytes, size_t alignment) override {
        void* p = nullptr;
        // cudaMallocHost returns page-aligned memory, enough for any alignment a container asks.
        if (alignment > 4096 || cudaMallocHost(&p, std::max<size_t>(bytes, 1)) != cudaSuccess) {
            (void)cudaGetLastError();
            throw std::bad_alloc();
        }
        return p;
    }
    void do_deallocate(void* p, size_t, size_t) override {
        if (cudaFreeHost(p) != cudaSuccess) (void)cudaGetLastError();  // e.g. at exit, after the runtime is gone
    }
    bool do_is_equal(const std::pmr::memory_resource& other) const noexcept override { return this == &other; }
};

}  // namespace

std::pmr::memory_resource* pinned_host_resource() {
    static PinnedHostResource resource;  // stateless: no mutable state behind it
    return &resource;
}

int device_count() {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        (void)cudaGetLastError();  // clear the non-sticky error so later calls start clean
        return 0;
    }
    return n;
}

std::string no_device_reason() {
    int n = 0;
    const cudaError_t err = cudaGetDeviceCount(&n);
    if (err != cudaSuccess) {
        (void)cudaGetLastError();
        return describe(err);
    }
    return n == 0 ? std::string("the CUDA runtime reports 0 devices") : std::string();
}

Result<DeviceInfo> query_device(int index) {
    const int n = device_count();
    if (n == 0) return error(StatusCode::not_found, "no CUDA device: " + no_device_reason());
    if (index < 0 || index >= n) {
        return error(StatusCode::out_of_range, strformat("CUDA device %d: only %d present", index, n));
    }
    cudaDeviceProp prop{};
    const cudaError_t err = cudaGetDeviceProperties(&prop, index);
    if (err != cudaSuccess) {
        return error(StatusCode::internal, strformat("cudaGetDeviceProperties(%d): ", index) + describe(err));
    }
    DeviceInfo info;
    info.index = index;
    info.name = prop.name;
    info.cc_major = prop.major;
    info.cc_minor = prop.minor;
    info.n_sm = prop.multiProcessorCount;
    info.total_mem_bytes = prop.totalGlobalMem;
    info.l2_bytes = (size_t)prop.l2CacheSize;
    info.mem_bus_bits = prop.memoryBusWidth;
    return info;
}

Result<std::unique_ptr<Device>> Device::open(int index) {
    HEARTH_ASSIGN(DeviceInfo info, query_device(index));
    std::unique_ptr<Device> dev(new Device(std::move(info)));
    if (!dev->make_current()) return dev->status();
    // Spelled out: nvcc (C++17 here) does not move implicitly into Result, g++ warns on std::move.
    return Result<std::unique_ptr<Device>>(std::move(dev));
}

Status Device::status() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return status_;
}

bool Device::is_failed() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return !status_.ok();
}

bool Device::check(int cuda_err, const char* what) {
    const auto err = static_cast<cudaError_t>(cuda_err);
    if (err == cudaSuccess) return true;
    std::lock_guard<std::mutex> lock(mutex_);
    if (status_.ok()) {
        const StatusCode code = err == cudaErrorMemoryAllocation ? StatusCode::resource_exhausted
                                                                  : StatusCode::internal;
        // (void): nvcc warns on the discarded Status& of a [[nodiscard]] class's operator=.
        (void)(status_ = error(code, strformat("CUDA device %d: %s: ", info_.index, what) + describe(err)));
    }
    return false;
}

void Device::fail(Status status) {
    if (status.ok()) return;
    std::lock_guard<std::mutex> lock(mutex_);
    if (status_.ok()) (void)(status_ = status.with_context(strformat("CUDA device %d", info_.index)));
}

bool Device::make_current() { return check(cudaSetDevice(info_.index), "cudaSetDevice"); }

Result<size_t> Device::free_memory() {
    if (!make_current()) return status();
    size_t free_b = 0, total_b = 0;
    const cudaError_t err = cudaMemGetInfo(&free_b, &total_b);
    if (err != cudaSuccess) return error(StatusCode::internal, "cudaMemGetInfo: " + describe(err));
    return free_b;
}

Stream::Stream(Device& device) : device_(&device) {
    if (!device.make_current()) return;
    cudaStream_t s = nullptr;
    if (device.check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreate")) stream_ = s;
}

Stream::~Stream() {
    if (stream_ == nullptr) return;
    device_->make_current();
    if (scratch_ != nullptr) {
        (void)cudaStreamSynchronize(static_cast<cudaStream_t>(stream_));
        (void)cudaFree(scratch_);
    }
    (void)cudaStreamDestroy(static_cast<cudaStream_t>(stream_));
}

void* Stream::scratch(size_t size_bytes) {
    if (size_bytes <= scratch_bytes_ && scratch_ != nullptr) return scratch_;
    if (stream_ == nullptr || device_->is_failed() || !device_->make_current()) return nullptr;
    auto* s = static_cast<cudaStream_t>(stream_);
    cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
    if (!device_->check(cudaStreamIsCapturing(s, &capture), "scratch: cudaStreamIsCapturing")) return nullptr;
    if (capture != cudaStreamCaptureStatusNone) {
        device_->fail(error(StatusCode::internal,
                            strformat("stream scratch must grow from %zu to %zu bytes during graph capture; "
                                      "reserve it before capturing",
                                      scratch_bytes_, size_bytes)));
        return nullptr;
    }
    if (scratch_ != nullptr) {  // queued kernels may still read the old buffer
        if (!device_->check(cudaStreamSynchronize(s), "scratch: stream synchronize")) return nullptr;
        device_->check(cudaFree(scratch_), "scratch: cudaFree");
        scratch_ = nullptr;
        scratch_bytes_ = 0;
    }
    const size_t bytes = std::max<size_t>(size_bytes, 1 << 20);  // small calls share one 1 MiB buffer
    void* p = nullptr;
    if (!device_->check(cudaMalloc(&p, bytes), "scratch: cudaMalloc")) return nullptr;
    scratch_ = p;
    scratch_bytes_ = bytes;
    return scratch_;
}

Status Stream::synchronize() {
    if (stream_ != nullptr && device_->make_current()) {
        device_->check(cudaStreamSynchronize(static_cast<cudaStream_t>(stream_)), "stream synchronize");
    }
    if (stream_ == nullptr && device_->status().ok()) {
        return error(StatusCode::internal, "CUDA stream was not created");
    }
    return device_->status();
}

Result<DeviceBuffer> DeviceBuffer::allocate(Device& device, size_t size_bytes) {
    if (!device.make_current()) return device.status();
    DeviceBuffer buf;
    buf.device_ = &device;
    buf.size_bytes_ = size_bytes;
    if (size_bytes == 0) return Result<DeviceBuffer>(std::move(buf));
    const cudaError_t err = cudaMalloc(&buf.ptr_, size_bytes);
    if (err != cudaSuccess) {
        (void)cudaGetLastError();
        buf.ptr_ = nullptr;
        return error(StatusCode::resource_exhausted,
                     strformat("CUDA device %d: cudaMalloc(%zu bytes): ", device.index(), size_bytes) + describe(err));
    }
    return Result<DeviceBuffer>(std::move(buf));
}

DeviceBuffer::~DeviceBuffer() { release(); }

DeviceBuffer::DeviceBuffer(DeviceBuffer&& other) noexcept
    : device_(other.device_), ptr_(other.ptr_), size_bytes_(other.size_bytes_) {
    other.ptr_ = nullptr;
    other.size_bytes_ = 0;
}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& other) noexcept {
    if (this != &other) {
        release();
        device_ = other.device_;
        ptr_ = other.ptr_;
        size_bytes_ = other.size_bytes_;
        other.ptr_ = nullptr;
        other.size_bytes_ = 0;
    }
    return *this;
}

void DeviceBuffer::release() {
    if (ptr_ != nullptr) {
        device_->make_current();
        device_->check(cudaFree(ptr_), "cudaFree");
        ptr_ = nullptr;
    }
}

namespace {
bool check_range(Device& dev, size_t buffer_bytes, size_t offset, size_t n, const char* what) {
    if (offset <= buffer_bytes && n <= buffer_bytes - offset) return true;
    // Not a CUDA error code, but the same sticky path: a caller bug that must surface.
    dev.check(cudaErrorInvalidValue, what);
    return false;
}
}  // namespace

void DeviceBuffer::upload(Stream& stream, const void* src, size_t size_bytes, size_t offset_bytes) {
    Device& dev = stream.device();
    if (dev.is_failed() || !check_range(dev, size_bytes_, offset_bytes, size_bytes, "upload out of range")) return;
    if (size_bytes == 0 || !dev.make_current()) return;
    dev.check(cudaMemcpyAsync(static_cast<std::byte*>(ptr_) + offset_bytes, src, size_bytes,
                              cudaMemcpyHostToDevice, static_cast<cudaStream_t>(stream.handle())),
              "upload");
}

void DeviceBuffer::download(Stream& stream, void* dst, size_t size_bytes, size_t offset_bytes) const {
    Device& dev = stream.device();
    if (dev.is_failed() || !check_range(dev, size_bytes_, offset_bytes, size_bytes, "download out of range")) return;
    if (size_bytes == 0 || !dev.make_current()) return;
    dev.check(cudaMemcpyAsync(dst, static_cast<const std::byte*>(ptr_) + offset_bytes, size_bytes,
                              cudaMemcpyDeviceToHost, static_cast<cudaStream_t>(stream.handle())),
              "download");
}

}  // namespace hearth::backend::cuda
