// SHA-256 (FIPS 180-4): streaming hasher, one-shot hex helper, and a whole-file hash. Content
// addresses in the model store ("sha256-<hex>" blobs, pull verification) and cache keys use it.
//
// Written here rather than taken from libssl so that base/ keeps no dependencies: the scalar
// path is portable, and on x86-64 CPUs with the SHA extensions (Intel since Ice Lake / Goldmont,
// AMD since Zen) a SHA-NI path is picked at run time, about 2 GB/s per core, as fast as
// OpenSSL's. Both paths are tested against each other and against the NIST vectors
// (tests/base/sha256_test.cpp).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>

#include "base/status.h"

namespace hearth {

class Sha256 {
public:
    static constexpr size_t kDigestBytes = 32;
    static constexpr size_t kBlockBytes = 64;
    using Digest = std::array<uint8_t, kDigestBytes>;

    Sha256() { reset(); }

    // Appends bytes to the message; any split of a message into update() calls gives the same
    // digest.
    void update(std::span<const std::byte> bytes);
    void update(const void* data, size_t n_bytes);
    void update(std::string_view s) { update(s.data(), s.size()); }

    // Pads, returns the digest of everything updated since the last reset, and resets the
    // hasher to the empty message so it can be reused.
    Digest finish();
    void reset();

    uint64_t bytes_hashed() const { return total_bytes_; }  // since the last reset

private:
    uint32_t state_[8];        // running hash H0..H7
    uint8_t buf_[kBlockBytes]; // [buf_bytes_] the tail of the message not yet compressed
    size_t buf_bytes_ = 0;     // < kBlockBytes between calls
    uint64_t total_bytes_ = 0; // message length so far
};

// Lower-case hex of a digest (64 characters).
std::string to_hex(const Sha256::Digest& digest);

std::string sha256_hex(std::span<const std::byte> bytes);
std::string sha256_hex(std::string_view s);

// The lower-case hex SHA-256 of a file's contents, read in 4 MiB chunks (constant memory).
// not_found when the file does not exist, io_error for any other open/read failure; the
// message names the path. `progress(done, total)` (total: the file's size when opened) is
// called after every chunk and cancels by returning false (io_error "cancelled").
Result<std::string> sha256_file(const std::string& path,
                                const std::function<bool(int64_t done, int64_t total)>& progress = {});

namespace sha256_detail {
// Compresses n_blocks consecutive 64-byte blocks into state. Exposed so the tests can check
// the hardware path against the scalar one; everything else goes through Sha256.
void compress_scalar(uint32_t state[8], const uint8_t* blocks, size_t n_blocks);
// Precondition: has_sha_ni().
void compress_sha_ni(uint32_t state[8], const uint8_t* blocks, size_t n_blocks);
// True when this CPU (and build) can run compress_sha_ni.
bool has_sha_ni();
}  // namespace sha256_detail

}  // namespace hearth
