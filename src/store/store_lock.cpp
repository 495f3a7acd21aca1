#include "store/store_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <span>

#include "base/file_writer.h"

namespace hearth::store {

namespace fs = std::filesystem;

Result<StoreLock> StoreLock::take(const std::string& root) {
    std::error_code ec;
    fs::create_directories(root, ec);
    const std::string path = root + "/.lock";
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return error(StatusCode::io_error, path + ": cannot open the store lock: " + std::strerror(errno));
    while (::flock(fd, LOCK_EX) != 0) {
        if (errno == EINTR) continue;
        const int err = errno;
        ::close(fd);
        return error(StatusCode::io_error, path + ": cannot lock the store: " + std::strerror(err));
    }
    return StoreLock(fd);
}

StoreLock::~StoreLock() {
    if (fd_ >= 0) ::close(fd_);
}

Status write_atomic(const std::string& path, std::string_view text) {
    std::error_code ec;
    fs::create_directories(fs::path(path).parent_path(), ec);
    if (ec) return error(StatusCode::io_error, path + ": cannot create its folder: " + ec.message());
    HEARTH_ASSIGN(AtomicFileWriter w, AtomicFileWriter::create(path));
    HEARTH_TRY(w.write(std::as_bytes(std::span(text.data(), text.size()))));
    return w.commit();
}

}  // namespace hearth::store
