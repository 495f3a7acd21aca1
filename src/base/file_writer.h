// Streaming, crash-safe creation of one file. Bytes go to a temporary file in the
// destination's folder (".<name>.tmp-XXXXXX"); commit() fsyncs it, renames it over the
// destination and fsyncs the folder, so a reader sees either the old file or the whole new one.
//
// Failure semantics: the first failing call (write error, disk full, fsync, rename) closes and
// removes the temporary file and returns io_error naming the destination and the OS reason;
// every later call returns an error too. The destination is touched only by a successful
// commit(). Destroying a writer that was not committed removes its temporary file.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "base/status.h"

namespace hearth {

class AtomicFileWriter {
public:
    // Creates the temporary file (mode 0644 once committed).
    static Result<AtomicFileWriter> create(const std::string& path);
    AtomicFileWriter(AtomicFileWriter&& other) noexcept;
    AtomicFileWriter& operator=(AtomicFileWriter&& other) noexcept;
    AtomicFileWriter(const AtomicFileWriter&) = delete;
    AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;
    ~AtomicFileWriter();

    // Allocates n_bytes of disk up front so a full disk fails here rather than after hours
    // of writing. A no-op where the file system cannot preallocate.
    Status reserve(uint64_t n_bytes);
    // Appends all of `bytes` (retries short writes and EINTR).
    Status write(std::span<const std::byte> bytes);
    Status write_zeros(uint64_t n_bytes);
    Status commit();
    // Removes the temporary file now; the destination stays as it was.
    void abandon();

    uint64_t bytes_written() const { return bytes_written_; }
    const std::string& path() const { return path_; }
    const std::string& temp_path() const { return tmp_path_; }  // empty once committed or abandoned

private:
    AtomicFileWriter() = default;
    Status fail(const char* what, int err);

    int fd_ = -1;              // open temporary file; -1 once committed, abandoned or failed
    std::string path_;         // destination
    std::string tmp_path_;     // temporary file while fd_ is open (or mid-commit)
    uint64_t bytes_written_ = 0;
    bool failed_ = false;      // a call failed: the temporary is gone and nothing more is accepted
};

}  // namespace hearth
