#include "base/sha256.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <memory>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>
#define HEARTH_SHA256_X86 1
#endif

namespace hearth {
namespace {

alignas(16) constexpr uint32_t kK[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

constexpr uint32_t kInit[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                               0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};

inline uint32_t rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

inline uint32_t load_be32(const uint8_t* p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

// Picked once per process; immutable afterwards.
using CompressFn = void (*)(uint32_t*, const uint8_t*, size_t);
CompressFn pick_compress() {
    return sha256_detail::has_sha_ni() ? sha256_detail::compress_sha_ni : sha256_detail::compress_scalar;
}

void compress(uint32_t state[8], const uint8_t* blocks, size_t n_blocks) {
    static const CompressFn fn = pick_compress();
    fn(state, blocks, n_blocks);
}

}  // namespace

namespace sha256_detail {

void compress_scalar(uint32_t state[8], const uint8_t* p, size_t n_blocks) {
    for (; n_blocks > 0; --n_blocks, p += 64) {
        uint32_t w[16];  // message schedule as a ring: w[t % 16] holds W_t
        for (int t = 0; t < 16; ++t) w[t] = load_be32(p + 4 * t);
        uint32_t a = state[0], b = state[1], c = state[2], d = state[3];
        uint32_t e = state[4], f = state[5], g = state[6], h = state[7];
        for (int t = 0; t < 64; ++t) {
            if (t >= 16) {
                const uint32_t w15 = w[(t - 15) & 15], w2 = w[(t - 2) & 15];
                const uint32_t s0 = rotr(w15, 7) ^ rotr(w15, 18) ^ (w15 >> 3);
                const uint32_t s1 = rotr(w2, 17) ^ rotr(w2, 19) ^ (w2 >> 10);
                w[t & 15] += s0 + w[(t - 7) & 15] + s1;
            }
            const uint32_t S1 = rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25);
            const uint32_t ch = (e & f) ^ (~e & g);
            const uint32_t t1 = h + S1 + ch + kK[t] + w[t & 15];
            const uint32_t S0 = rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22);
            const uint32_t maj = (a & b) ^ (a & c) ^ (b & c);
            const uint32_t t2 = S0 + maj;
            h = g;
            g = f;
            f = e;
            e = d + t1;
            d = c;
            c = b;
            b = a;
            a = t1 + t2;
        }
        state[0] += a;
        state[1] += b;
        state[2] += c;
        state[3] += d;
        state[4] += e;
        state[5] += f;
        state[6] += g;
        state[7] += h;
    }
}

#if HEARTH_SHA256_X86

bool has_sha_ni() {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return false;
    const bool ssse3 = c & (1u << 9), sse41 = c & (1u << 19);
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
    const bool sha = b & (1u << 29);
    return ssse3 && sse41 && sha;
}

// Intel's SHA extensions: the state is kept as two vectors {A,B,E,F} and {C,D,G,H};
// sha256rnds2 does two rounds, msg1/msg2 compute the message schedule four words at a time.
// Each group g of four rounds uses schedule vector m[g % 4]; the schedule for group g + 1 is
// finished (msg2) during group g and started (msg1) during group g - 2.
__attribute__((target("sha,sse4.1,ssse3"))) void compress_sha_ni(uint32_t state[8], const uint8_t* p,
                                                                  size_t n_blocks) {
    const __m128i kShuffle = _mm_set_epi64x(0x0c0d0e0f08090a0bll, 0x0405060700010203ll);  // BE words
    // state[0..7] = A..H in order; rearrange into the {A,B,E,F} / {C,D,G,H} pair (and back
    // at the end).
    __m128i tmp = _mm_loadu_si128((const __m128i*)&state[0]);
    __m128i st1 = _mm_loadu_si128((const __m128i*)&state[4]);
    tmp = _mm_shuffle_epi32(tmp, 0xB1);
    st1 = _mm_shuffle_epi32(st1, 0x1B);
    __m128i st0 = _mm_alignr_epi8(tmp, st1, 8);  // ABEF
    st1 = _mm_blend_epi16(st1, tmp, 0xF0);       // CDGH

    for (; n_blocks > 0; --n_blocks, p += 64) {
        const __m128i abef = st0, cdgh = st1;
        __m128i m[4];
#pragma GCC unroll 16
        for (int g = 0; g < 16; ++g) {
            if (g < 4) m[g] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i*)(p + 16 * g)), kShuffle);
            __m128i msg = _mm_add_epi32(m[g & 3], _mm_load_si128((const __m128i*)&kK[4 * g]));
            st1 = _mm_sha256rnds2_epu32(st1, st0, msg);
            if (g >= 3 && g <= 14) {
                const __m128i t = _mm_alignr_epi8(m[g & 3], m[(g - 1) & 3], 4);
                m[(g + 1) & 3] = _mm_sha256msg2_epu32(_mm_add_epi32(m[(g + 1) & 3], t), m[g & 3]);
            }
            msg = _mm_shuffle_epi32(msg, 0x0E);
            st0 = _mm_sha256rnds2_epu32(st0, st1, msg);
            if (g >= 1 && g <= 12) m[(g - 1) & 3] = _mm_sha256msg1_epu32(m[(g - 1) & 3], m[g & 3]);
        }
        st0 = _mm_add_epi32(st0, abef);
        st1 = _mm_add_epi32(st1, cdgh);
    }

    tmp = _mm_shuffle_epi32(st0, 0x1B);
    st1 = _mm_shuffle_epi32(st1, 0xB1);
    st0 = _mm_blend_epi16(tmp, st1, 0xF0);  // A B C D
    st1 = _mm_alignr_epi8(st1, tmp, 8);     // E F G H
    _mm_storeu_si128((__m128i*)&state[0], st0);
    _mm_storeu_si128((__m128i*)&state[4], st1);
}

#else

bool has_sha_ni() { return false; }
void compress_sha_ni(uint32_t state[8], const uint8_t* blocks, size_t n_blocks) {
    compress_scalar(state, blocks, n_blocks);
}

#endif

}  // namespace sha256_detail

void Sha256::reset() {
    std::memcpy(state_, kInit, sizeof(state_));
    buf_bytes_ = 0;
    total_bytes_ = 0;
}

void Sha256::update(const void* data, size_t n) {
    auto p = static_cast<const uint8_t*>(data);
    total_bytes_ += n;
    if (buf_bytes_ > 0) {
        const size_t take = std::min(n, kBlockBytes - buf_bytes_);
        std::memcpy(buf_ + buf_bytes_, p, take);
        buf_bytes_ += take;
        p += take;
        n -= take;
        if (buf_bytes_ < kBlockBytes) return;
        compress(state_, buf_, 1);
        buf_bytes_ = 0;
    }
    if (n >= kBlockBytes) {
        const size_t n_blocks = n / kBlockBytes;
        compress(state_, p, n_blocks);
        p += n_blocks * kBlockBytes;
        n -= n_blocks * kBlockBytes;
    }
    if (n > 0) {
        std::memcpy(buf_, p, n);
        buf_bytes_ = n;
    }
}

void Sha256::update(std::span<const std::byte> bytes) { update(bytes.data(), bytes.size()); }

Sha256::Digest Sha256::finish() {
    const uint64_t bit_len = total_bytes_ * 8;
    // 0x80, zeros up to 56 mod 64, then the bit length big-endian.
    uint8_t pad[kBlockBytes + 8] = {0x80};
    const size_t pad_bytes = (buf_bytes_ < 56 ? 56 : 120) - buf_bytes_;
    for (int i = 0; i < 8; ++i) pad[pad_bytes + i] = (uint8_t)(bit_len >> (56 - 8 * i));
    update(pad, pad_bytes + 8);
    Digest out;
    for (int i = 0; i < 8; ++i) {
        out[4 * i + 0] = (uint8_t)(state_[i] >> 24);
        out[4 * i + 1] = (uint8_t)(state_[i] >> 16);
        out[4 * i + 2] = (uint8_t)(state_[i] >> 8);
        out[4 * i + 3] = (uint8_t)state_[i];
    }
    reset();
    return out;
}

std::string to_hex(const Sha256::Digest& digest) {
    static constexpr char kHex[] = "0123456789abcdef";
    std::string s(2 * digest.size(), '\0');
    for (size_t i = 0; i < digest.size(); ++i) {
        s[2 * i] = kHex[digest[i] >> 4];
        s[2 * i + 1] = kHex[digest[i] & 15];
    }
    return s;
}

std::string sha256_hex(std::span<const std::byte> bytes) {
    Sha256 h;
    h.update(bytes);
    return to_hex(h.finish());
}

std::string sha256_hex(std::string_view s) {
    Sha256 h;
    h.update(s);
    return to_hex(h.finish());
}

Result<std::string> sha256_file(const std::string& path, const std::function<bool(int64_t, int64_t)>& progress) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        const int err = errno;
        return error(err == ENOENT ? StatusCode::not_found : StatusCode::io_error,
                     strformat("%s: cannot open: %s", path.c_str(), std::strerror(err)));
    }
    ::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    struct stat st {};
    const int64_t total = ::fstat(fd, &st) == 0 ? (int64_t)st.st_size : 0;
    int64_t done = 0;
    constexpr size_t kChunkBytes = size_t(4) << 20;
    std::unique_ptr<uint8_t[]> buf(new uint8_t[kChunkBytes]);
    Sha256 h;
    for (;;) {
        const ssize_t n = ::read(fd, buf.get(), kChunkBytes);
        if (n < 0) {
            if (errno == EINTR) continue;
            const int err = errno;
            ::close(fd);
            return error(StatusCode::io_error, strformat("%s: read: %s", path.c_str(), std::strerror(err)));
        }
        if (n == 0) break;
        h.update(buf.get(), (size_t)n);
        done += n;
        if (progress && !progress(done, total)) {
            ::close(fd);
            return error(StatusCode::io_error, "cancelled");
        }
    }
    ::close(fd);
    return to_hex(h.finish());
}

}  // namespace hearth
