#include "base/mmap.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/file_writer.h"

namespace hearth {

Result<std::shared_ptr<MappedFile>> MappedFile::open(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int err = errno;
        return error(err == ENOENT ? StatusCode::not_found : StatusCode::io_error,
                     strformat("%s: %s", path.c_str(), std::strerror(err)));
    }
    struct stat st {};
    if (fstat(fd, &st) != 0) {
        int err = errno;
        ::close(fd);
        return error(StatusCode::io_error, strformat("%s: %s", path.c_str(), std::strerror(err)));
    }
    if (!S_ISREG(st.st_mode)) {
        ::close(fd);
        return error(StatusCode::invalid_argument, path + ": not a regular file");
    }
    auto mf = std::shared_ptr<MappedFile>(new MappedFile());
    mf->path_ = path;
    mf->size_ = (size_t)st.st_size;
    if (mf->size_ > 0) {
        void* p = mmap(nullptr, mf->size_, PROT_READ, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED) {
            int err = errno;
            ::close(fd);
            return error(StatusCode::io_error, strformat("%s: mmap: %s", path.c_str(), std::strerror(err)));
        }
        mf->data_ = static_cast<const std::byte*>(p);
    }
    ::close(fd);
    return mf;
}

Status MappedFile::lock_in_memory() {
    if (!data_ || !size_) return {};
    if (mlock(data_, size_) == 0) return {};
    const int err = errno;
    if (err == ENOMEM || err == EPERM || err == EAGAIN)
        return error(StatusCode::resource_exhausted,
                     strformat("%s: cannot lock %zu bytes in memory (%s): raise the locked-memory limit "
                               "(ulimit -l, or LimitMEMLOCK=infinity for a service) or grant CAP_IPC_LOCK",
                               path_.c_str(), size_, std::strerror(err)));
    return error(StatusCode::io_error, strformat("%s: mlock: %s", path_.c_str(), std::strerror(err)));
}

MappedFile::~MappedFile() {
    if (data_ && size_) munmap(const_cast<std::byte*>(data_), size_);
}

Status write_file_atomic(const std::string& path, std::span<const std::byte> bytes) {
    HEARTH_ASSIGN(AtomicFileWriter out, AtomicFileWriter::create(path));
    HEARTH_TRY(out.write(bytes));
    return out.commit();
}

}  // namespace hearth
