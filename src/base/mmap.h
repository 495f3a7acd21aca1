// Read-only memory mapping of a whole file. Move-only; unmaps on destruction.
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <string>

#include "base/status.h"

namespace hearth {

class MappedFile {
public:
    static Result<std::shared_ptr<MappedFile>> open(const std::string& path);
    ~MappedFile();
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;

    std::span<const std::byte> bytes() const { return {data_, size_}; }
    const std::string& path() const { return path_; }

    // Pins every page in RAM (mlock), reading the file in as needed, so the weights can never
    // be paged out under memory pressure (Ollama's use_mlock). Unpinned when the mapping goes.
    // resource_exhausted with the fix (ulimit -l / CAP_IPC_LOCK) when the limit is too low.
    Status lock_in_memory();

private:
    MappedFile() = default;
    const std::byte* data_ = nullptr;
    size_t size_ = 0;
    std::string path_;
};

// Writes `bytes` to `path` crash-safely: a temporary name in the same folder, fsync, rename,
// fsync of the folder. On error the destination is untouched and the temporary removed.
Status write_file_atomic(const std::string& path, std::span<const std::byte> bytes);

}  // namespace hearth
