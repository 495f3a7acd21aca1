#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <span>
#include <string>
#include <unistd.h>
#include <vector>

#include "base/fp16.h"
#include "base/mmap.h"
#include "base/thread_pool.h"

namespace hearth {
namespace {

TEST(ThreadPool, EveryIndexExactlyOnce) {
    for (int threads : {1, 2, 5}) {
        ThreadPool pool(threads);
        for (int64_t n : {0, 1, 3, 17, 1000}) {
            std::vector<std::atomic<int>> hits(n);
            for (int rep = 0; rep < 20; ++rep)
                pool.parallel_for(n, 1, [&](int64_t b, int64_t e) {
                    for (int64_t i = b; i < e; ++i) hits[i]++;
                });
            for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 20);
        }
    }
}

// Dynamic pieces cover [0, n) exactly once, pieces are contiguous runs of at most `piece`
// items, for piece sizes below, at and above n.
TEST(ThreadPool, DynamicPiecesCoverEveryIndexOnce) {
    for (int threads : {1, 2, 5}) {
        ThreadPool pool(threads);
        for (int64_t n : {0, 1, 3, 17, 1000}) {
            for (int64_t piece : {0, 1, 4, 16, 5000}) {
                std::vector<std::atomic<int>> hits(n);
                std::atomic<bool> oversized{false};
                pool.parallel_dynamic(n, piece, [&](int64_t b, int64_t e) {
                    if (e - b > std::max<int64_t>(piece, 1) && n > piece) oversized = true;
                    for (int64_t i = b; i < e; ++i) hits[i]++;
                });
                for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << n << " " << piece << " " << i;
                EXPECT_FALSE(oversized.load());
            }
        }
    }
}

TEST(ThreadPool, ChunkIndicesAreDistinct) {
    ThreadPool pool(4);
    std::vector<std::atomic<int>> used(4);
    pool.parallel_chunks(100, 1, [&](int chunk, int64_t, int64_t) { used[chunk]++; });
    for (auto& u : used) EXPECT_LE(u.load(), 1);
}

// Many short jobs back to back, with spinning on (the default), off (every wait sleeps), and
// with a spin so short that workers fall asleep between jobs: no job is lost or run twice, and
// a chunk's writes are visible to the caller when parallel_for returns.
TEST(ThreadPool, ManyShortJobsEverySpinMode) {
    for (int64_t spin_us : {-1, 0, 1}) {
        for (int threads : {2, 3}) {
            ThreadPool pool(threads, spin_us);
            std::vector<int64_t> out(64);
            int64_t expect = 0;
            for (int job = 0; job < 8000; ++job) {
                pool.parallel_for((int64_t)out.size(), 1, [&](int64_t b, int64_t e) {
                    for (int64_t i = b; i < e; ++i) out[i] += i + job;
                });
                expect += job;
                if (job % 1000 == 999) {
                    for (int64_t i = 0; i < (int64_t)out.size(); ++i)
                        ASSERT_EQ(out[i], expect + (job + 1) * i) << "spin " << spin_us << " threads " << threads;
                    // A pause longer than the spin: the next job must wake sleeping workers.
                    if (job % 4000 == 3999) std::this_thread::sleep_for(std::chrono::milliseconds(2));
                }
            }
        }
    }
}

TEST(Fp16, RoundTripsEveryHalf) {
    for (uint32_t h = 0; h < 65536; ++h) {
        const float f = fp16_to_f32((uint16_t)h);
        if (std::isnan(f)) continue;
        ASSERT_EQ(f32_to_fp16(f), h) << h;
    }
    EXPECT_EQ(fp16_to_f32(0x3c00), 1.0f);
    EXPECT_EQ(fp16_to_f32(0x0001), std::ldexp(1.0f, -24));  // smallest subnormal
    EXPECT_EQ(f32_to_fp16(65520.0f), 0x7c00);                // rounds to inf
    EXPECT_EQ(f32_to_fp16(1.0f + std::ldexp(1.0f, -11)), 0x3c00);  // tie to even
    EXPECT_EQ(f32_to_fp16(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);
}

TEST(Bf16, RoundsToNearestEven) {
    EXPECT_EQ(f32_to_bf16(1.0f), 0x3f80);
    EXPECT_EQ(bf16_to_f32(0x3f80), 1.0f);
    EXPECT_EQ(f32_to_bf16(bits_to_f32(0x3f808000)), 0x3f80);  // tie, even stays
    EXPECT_EQ(f32_to_bf16(bits_to_f32(0x3f818000)), 0x3f82);  // tie, odd rounds up
    EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(NAN))));
}

TEST(WriteFileAtomic, WritesReplacesAndCleansUp) {
    namespace fs = std::filesystem;
    const fs::path dir = fs::temp_directory_path() / ("hearth_base_" + std::to_string(::getpid()));
    fs::create_directories(dir);
    const std::string p = (dir / "f.bin").string();
    const std::string a = "first", b = "second version";
    ASSERT_TRUE(write_file_atomic(p, std::as_bytes(std::span(a))).ok());
    ASSERT_TRUE(write_file_atomic(p, std::as_bytes(std::span(b))).ok());
    std::ifstream f(p);
    std::string got((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    EXPECT_EQ(got, b);
    Status st = write_file_atomic((dir / "missing" / "x").string(), std::as_bytes(std::span(a)));
    EXPECT_EQ(st.code(), StatusCode::not_found);  // the folder does not exist
    EXPECT_NE(st.message().find("missing"), std::string::npos);
    size_t n = 0;
    for (auto& e : fs::directory_iterator(dir)) { (void)e; ++n; }
    EXPECT_EQ(n, 1u);  // no temporary files left behind
    fs::remove_all(dir);
}

// use_mlock: the pages of a mapped file are pinned (VmLck grows by the file's size).
TEST(MappedFile, LockInMemoryPinsThePages) {
    namespace fs = std::filesystem;
    const fs::path path = fs::temp_directory_path() / ("hearth_mlock_" + std::to_string(::getpid()));
    std::vector<char> data(1 << 20, 'x');
    ASSERT_TRUE(write_file_atomic(path.string(), std::as_bytes(std::span(data))).ok());
    auto vm_locked_kb = [] {
        std::ifstream in("/proc/self/status");
        for (std::string line; std::getline(in, line);)
            if (line.rfind("VmLck:", 0) == 0) return std::stoll(line.substr(6));
        return -1ll;
    };
    {
        auto m = MappedFile::open(path.string());
        ASSERT_TRUE(m.ok());
        const long long before = vm_locked_kb();
        Status st = (*m)->lock_in_memory();
        if (st.code() == StatusCode::resource_exhausted) {
            // Not allowed here (RLIMIT_MEMLOCK below 1 MiB without CAP_IPC_LOCK): the message says how to fix it.
            EXPECT_NE(st.message().find("ulimit -l"), std::string::npos) << st.message();
        } else {
            ASSERT_TRUE(st.ok()) << st.message();
            if (before >= 0) {
                EXPECT_GE(vm_locked_kb() - before, 1024);
            }
        }
    }
    fs::remove(path);
}

TEST(MappedFile, MissingFileIsNotFound) {
    auto m = MappedFile::open("/nonexistent/hearth/file");
    EXPECT_EQ(m.status().code(), StatusCode::not_found);
    EXPECT_NE(m.status().message().find("/nonexistent/hearth/file"), std::string::npos);
}

}  // namespace
}  // namespace hearth
