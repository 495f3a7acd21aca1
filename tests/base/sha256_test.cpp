// SHA-256: the NIST FIPS 180-4 example vectors, any split of a message into update() calls,
// the SHA-NI path against the scalar one, and sha256_file.
#include "base/sha256.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <unistd.h>
#include <vector>

namespace hearth {
namespace {

const char kMsg448[] = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
const char kMsg896[] =
    "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqr"
    "lmnopqrsmnopqrstnopqrstu";

TEST(Sha256, NistVectors) {
    EXPECT_EQ(sha256_hex(std::string_view("")),
              "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    EXPECT_EQ(sha256_hex(std::string_view("abc")),
              "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    ASSERT_EQ(std::strlen(kMsg448) * 8, 448u);
    EXPECT_EQ(sha256_hex(std::string_view(kMsg448)),
              "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    ASSERT_EQ(std::strlen(kMsg896) * 8, 896u);
    EXPECT_EQ(sha256_hex(std::string_view(kMsg896)),
              "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
    const std::string million(1000000, 'a');
    EXPECT_EQ(sha256_hex(std::string_view(million)),
              "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Sha256, MillionAOneByteAtATime) {
    Sha256 h;
    for (int i = 0; i < 1000000; ++i) h.update(std::string_view("a"));
    EXPECT_EQ(h.bytes_hashed(), 1000000u);
    EXPECT_EQ(to_hex(h.finish()), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Sha256, FinishResetsForReuse) {
    Sha256 h;
    h.update(std::string_view("abc"));
    EXPECT_EQ(to_hex(h.finish()), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    EXPECT_EQ(h.bytes_hashed(), 0u);
    EXPECT_EQ(to_hex(h.finish()), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    h.update(std::string_view("ab"));
    h.reset();
    h.update(std::string_view("abc"));
    EXPECT_EQ(to_hex(h.finish()), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

std::vector<std::byte> random_bytes(size_t n, uint32_t seed) {
    std::mt19937 rng(seed);
    std::vector<std::byte> v(n);
    for (auto& b : v) b = (std::byte)(rng() & 0xff);
    return v;
}

// Every length around the padding boundaries (55/56/63/64 mod 64), split at every awkward point
// (inside the buffered tail, exactly at a block edge, one either side), gives the one-shot digest.
TEST(Sha256, ChunkedUpdateMatchesOneShot) {
    const std::vector<std::byte> data = random_bytes(300, 7);
    for (size_t len : {0, 1, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 129, 191, 200, 256, 300}) {
        const std::span<const std::byte> msg(data.data(), len);
        const std::string want = sha256_hex(msg);
        for (size_t a = 0; a <= len; ++a) {
            for (size_t b : {a, a + 1, a + 63, a + 64, a + 65, len}) {
                if (b < a || b > len) continue;
                Sha256 h;
                h.update(msg.subspan(0, a));
                h.update(msg.subspan(a, b - a));
                h.update(msg.subspan(b));
                ASSERT_EQ(to_hex(h.finish()), want) << "len " << len << " split " << a << "," << b;
            }
        }
    }
}

TEST(Sha256, RandomChunkSizesMatchOneShot) {
    const std::vector<std::byte> data = random_bytes(1 << 20, 11);
    const std::string want = sha256_hex(data);
    std::mt19937 rng(3);
    for (int rep = 0; rep < 5; ++rep) {
        Sha256 h;
        size_t pos = 0;
        while (pos < data.size()) {
            const size_t n = std::min<size_t>(data.size() - pos, rng() % (rep < 2 ? 130 : 70000));
            h.update(std::span<const std::byte>(data).subspan(pos, n));
            pos += n;
        }
        EXPECT_EQ(to_hex(h.finish()), want);
    }
}

TEST(Sha256, ShaNiMatchesScalar) {
    if (!sha256_detail::has_sha_ni()) GTEST_SKIP() << "CPU has no SHA extensions";
    std::mt19937 rng(5);
    for (size_t n_blocks : {1, 2, 3, 17, 1000}) {
        const std::vector<std::byte> data = random_bytes(64 * n_blocks, (uint32_t)n_blocks);
        for (int rep = 0; rep < 4; ++rep) {
            uint32_t a[8], b[8];
            for (int i = 0; i < 8; ++i) a[i] = b[i] = rng();
            sha256_detail::compress_scalar(a, (const uint8_t*)data.data(), n_blocks);
            sha256_detail::compress_sha_ni(b, (const uint8_t*)data.data(), n_blocks);
            ASSERT_EQ(std::memcmp(a, b, sizeof(a)), 0) << n_blocks << " blocks";
        }
    }
}

TEST(Sha256, File) {
    namespace fs = std::filesystem;
    const fs::path dir = fs::temp_directory_path() / ("hearth_sha256_" + std::to_string(::getpid()));
    fs::create_directories(dir);
    // Larger than the 1 MiB read chunk and not a multiple of it or of 64.
    const std::vector<std::byte> data = random_bytes((3u << 20) + 4097, 9);
    const std::string path = (dir / "blob").string();
    {
        std::ofstream f(path, std::ios::binary);
        f.write((const char*)data.data(), (std::streamsize)data.size());
    }
    auto got = sha256_file(path);
    ASSERT_TRUE(got.ok()) << got.status().message();
    EXPECT_EQ(*got, sha256_hex(data));

    { std::ofstream f((dir / "empty").string(), std::ios::binary); }
    auto empty = sha256_file((dir / "empty").string());
    ASSERT_TRUE(empty.ok());
    EXPECT_EQ(*empty, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");

    auto missing = sha256_file((dir / "missing").string());
    ASSERT_FALSE(missing.ok());
    EXPECT_EQ(missing.status().code(), StatusCode::not_found);
    EXPECT_NE(missing.status().message().find("missing"), std::string::npos);

    auto is_dir = sha256_file(dir.string());
    EXPECT_FALSE(is_dir.ok());
    fs::remove_all(dir);
}

}  // namespace
}  // namespace hearth
