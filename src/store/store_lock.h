// The store's mutation lock and its small atomic writes, shared by every store writer (copy,
// remove, create, pull): an exclusive flock on <root>/.lock, so two daemons, or a daemon and a
// CLI sharing a store, never interleave manifest changes.
#pragma once

#include <string>
#include <string_view>

#include "base/status.h"

namespace hearth::store {

// Held for the life of the object; closing the descriptor drops the flock.
class StoreLock {
public:
    // Creates <root> when missing. io_error naming the lock file when it cannot be opened or locked.
    static Result<StoreLock> take(const std::string& root);
    StoreLock(StoreLock&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
    StoreLock& operator=(StoreLock&&) = delete;
    ~StoreLock();

private:
    explicit StoreLock(int fd) : fd_(fd) {}
    int fd_;
};

// Writes `text` to `path` through a temporary name, fsync and rename (its folder created).
Status write_atomic(const std::string& path, std::string_view text);

}  // namespace hearth::store
