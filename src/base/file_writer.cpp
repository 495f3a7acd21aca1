#include "base/file_writer.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <limits>
#include <sys/stat.h>
#include <unistd.h>

namespace hearth {
namespace {

std::string folder_of(const std::string& path) {
    std::filesystem::path dir = std::filesystem::path(path).parent_path();
    return dir.empty() ? std::string(".") : dir.string();
}

}  // namespace

Result<AtomicFileWriter> AtomicFileWriter::create(const std::string& path) {
    namespace fs = std::filesystem;
    const std::string name = fs::path(path).filename().string();
    if (name.empty() || name == "." || name == "..")
        return error(StatusCode::invalid_argument, path + ": not a file name");
    AtomicFileWriter w;
    w.path_ = path;
    w.tmp_path_ = folder_of(path) + "/." + name + ".tmp-XXXXXX";
    w.fd_ = mkostemp(w.tmp_path_.data(), O_CLOEXEC);
    if (w.fd_ < 0) {
        int err = errno;
        return error(err == ENOENT ? StatusCode::not_found : StatusCode::io_error,
                     strformat("%s: cannot create temporary file: %s", path.c_str(), std::strerror(err)));
    }
    return w;
}

AtomicFileWriter::AtomicFileWriter(AtomicFileWriter&& o) noexcept
    : fd_(o.fd_), path_(std::move(o.path_)), tmp_path_(std::move(o.tmp_path_)),
      bytes_written_(o.bytes_written_), failed_(o.failed_) {
    o.fd_ = -1;
    o.tmp_path_.clear();
}

AtomicFileWriter& AtomicFileWriter::operator=(AtomicFileWriter&& o) noexcept {
    if (this != &o) {
        abandon();
        fd_ = o.fd_;
        path_ = std::move(o.path_);
        tmp_path_ = std::move(o.tmp_path_);
        bytes_written_ = o.bytes_written_;
        failed_ = o.failed_;
        o.fd_ = -1;
        o.tmp_path_.clear();
    }
    return *this;
}

AtomicFileWriter::~AtomicFileWriter() { abandon(); }

void AtomicFileWriter::abandon() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    if (!tmp_path_.empty()) ::unlink(tmp_path_.c_str());
    tmp_path_.clear();
}

Status AtomicFileWriter::fail(const char* what, int err) {
    abandon();
    failed_ = true;
    return error(StatusCode::io_error, strformat("%s: %s: %s", path_.c_str(), what, std::strerror(err)));
}

Status AtomicFileWriter::reserve(uint64_t n_bytes) {
    if (fd_ < 0) return error(StatusCode::io_error, path_ + ": write after failure or commit");
    if (n_bytes == 0) return {};
    if (n_bytes > (uint64_t)std::numeric_limits<off_t>::max())
        return fail("reserve", EFBIG);
    for (;;) {
        // fallocate, not posix_fallocate: where the file system cannot preallocate, glibc's
        // fallback writes a byte per block, which would double the work for nothing.
        if (::fallocate(fd_, 0, 0, (off_t)n_bytes) == 0) return {};
        if (errno == EINTR) continue;
        if (errno == ENOSPC || errno == EFBIG || errno == EDQUOT) return fail("reserve", errno);
        return {};  // EOPNOTSUPP and friends: write() will report a full disk instead
    }
}

Status AtomicFileWriter::write(std::span<const std::byte> bytes) {
    if (fd_ < 0) return error(StatusCode::io_error, path_ + ": write after failure or commit");
    size_t done = 0;
    while (done < bytes.size()) {
        // Linux transfers at most ~2 GiB per call; ask for at most 1 GiB at a time.
        const size_t chunk = std::min<size_t>(bytes.size() - done, size_t(1) << 30);
        ssize_t n = ::write(fd_, bytes.data() + done, chunk);
        if (n < 0) {
            if (errno == EINTR) continue;
            return fail("write", errno);
        }
        if (n == 0) return fail("write", ENOSPC);  // no progress: treat as a full disk
        done += (size_t)n;
        bytes_written_ += (uint64_t)n;
    }
    return {};
}

Status AtomicFileWriter::write_zeros(uint64_t n_bytes) {
    static constexpr std::byte kZeros[4096] = {};
    while (n_bytes > 0) {
        const size_t n = (size_t)std::min<uint64_t>(n_bytes, sizeof(kZeros));
        HEARTH_TRY(write({kZeros, n}));
        n_bytes -= n;
    }
    return {};
}

Status AtomicFileWriter::commit() {
    if (fd_ < 0) return error(StatusCode::io_error, path_ + ": commit after failure or commit");
    // fallocate may have reserved more than was written; the file ends at the last write.
    if (::ftruncate(fd_, (off_t)bytes_written_) != 0) return fail("truncate", errno);
    if (::fchmod(fd_, 0644) != 0) return fail("chmod", errno);
    if (::fsync(fd_) != 0) return fail("fsync", errno);
    const int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) return fail("close", errno);
    if (::rename(tmp_path_.c_str(), path_.c_str()) != 0) return fail("rename", errno);
    tmp_path_.clear();
    // The rename is durable only once the folder is synced; the data already is.
    const std::string dir = folder_of(path_);
    int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        ::fsync(dfd);
        ::close(dfd);
    }
    return {};
}

}  // namespace hearth
