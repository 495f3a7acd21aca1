// PrefixStore: round trips through the queue and the disk, a restart (a second store over the
// same folder), every way a file can be damaged or foreign, the disk budget's LRU, the bounded
// queue, stale temporary files, and concurrent callers.
#include "runtime/prefix_store.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <fcntl.h>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>

#include "runtime/block_pool.h"

namespace hearth::runtime {
namespace {

namespace fs = std::filesystem;

constexpr int kBlock = 32;
const std::string kModel = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const std::string kLayout = "f32;L2;k64,64;v64,64";

struct TempDir {
    fs::path path;
    TempDir() {
        std::string tmpl = (fs::temp_directory_path() / "hearth_prefix_store_XXXXXX").string();
        path = ::mkdtemp(tmpl.data());
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
    std::string str() const { return path.string(); }
};

struct Block {
    uint64_t hash = 0, parent = 0;
    std::vector<int32_t> tokens;
    std::vector<std::byte> payload;
};

// A chain of n blocks (each block's parent is the previous one's hash), seeded so different
// seeds give different tokens and payloads.
std::vector<Block> make_chain(int n, size_t payload_bytes, uint32_t seed) {
    std::mt19937 rng(seed);
    std::vector<Block> out(n);
    uint64_t parent = kChainSeed;
    for (Block& b : out) {
        b.tokens.resize(kBlock);
        for (int32_t& t : b.tokens) t = (int32_t)(rng() % 50000);
        b.payload.resize(payload_bytes);
        for (std::byte& x : b.payload) x = (std::byte)(rng() & 0xff);
        b.parent = parent;
        b.hash = chain_hash(parent, b.tokens);
        parent = b.hash;
    }
    return out;
}

std::unique_ptr<PrefixStore> open_store(const std::string& dir, int64_t max_bytes = 1ll << 30,
                                        int64_t max_queue_bytes = PrefixStore::kDefaultMaxQueueBytes,
                                        const std::string& model = kModel, const std::string& layout = kLayout,
                                        int block_size = kBlock) {
    auto s = PrefixStore::open(dir, model, layout, block_size, max_bytes, max_queue_bytes);
    EXPECT_TRUE(s.ok()) << s.status().message();
    return s.ok() ? std::move(s).value() : nullptr;
}

bool put(PrefixStore& s, const Block& b) { return s.put(b.hash, b.parent, b.tokens, b.payload); }

// get() into a fresh buffer; true only when it hits and the bytes are the block's.
bool get_ok(PrefixStore& s, const Block& b) {
    std::vector<std::byte> out(b.payload.size());
    return s.get(b.hash, b.parent, b.tokens, out) && out == b.payload;
}

std::string path_of(const TempDir& d, const Block& b) { return (d.path / PrefixStore::file_name(b.hash)).string(); }

std::vector<std::string> names_in(const TempDir& d) {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(d.path)) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
}

void set_mtime(const std::string& path, time_t sec) {
    struct timespec ts[2] = {{sec, 0}, {sec, 0}};
    ASSERT_EQ(::utimensat(AT_FDCWD, path.c_str(), ts, 0), 0) << path;
}

time_t mtime_of(const std::string& path) {
    struct stat st {};
    EXPECT_EQ(::stat(path.c_str(), &st), 0);
    return st.st_mtim.tv_sec;
}

TEST(PrefixStore, ChecksumIsXxh64) {
    // Values from libxxhash 0.8.1's XXH64(data, len, 0).
    auto cs = [](std::string_view s) { return PrefixStore::checksum(std::as_bytes(std::span(s.data(), s.size()))); };
    EXPECT_EQ(cs(""), 0xef46db3751d8e999ull);
    EXPECT_EQ(cs("a"), 0xd24ec4f1a98c6e5bull);
    EXPECT_EQ(cs("abc"), 0x44bc2cf5ad770999ull);
    EXPECT_EQ(cs("abcd"), 0xde0327b0d25d92ccull);
    EXPECT_EQ(cs("0123456789abcdef0123456789abcdef"), 0x642a94958e71e6c5ull);
    std::string long_msg;
    for (int r = 0; r < 4; ++r)
        for (int i = 0; i < 256; ++i) long_msg.push_back((char)i);
    long_msg += "xyz";
    EXPECT_EQ(cs(long_msg), 0xe146cb31b65bc21aull);
}

TEST(PrefixStore, DefaultDir) {
    EXPECT_EQ(PrefixStore::default_dir("/m", kModel, kLayout).substr(0, 28), "/m/kvcache/0123456789abcdef-");
    EXPECT_EQ(PrefixStore::default_dir("/m", kModel, kLayout).size(), 28u + 8u);
    EXPECT_NE(PrefixStore::default_dir("/m", kModel, kLayout), PrefixStore::default_dir("/m", kModel, "q8_0"));
    EXPECT_EQ(PrefixStore::default_dir("/m", "sha256-abc/../x", "l").substr(0, 20), "/m/kvcache/abc____x-");
}

TEST(PrefixStore, OpenRejectsBadArguments) {
    TempDir d;
    EXPECT_EQ(PrefixStore::open(d.str(), kModel, kLayout, 0, 1 << 20).status().code(), StatusCode::invalid_argument);
    EXPECT_EQ(PrefixStore::open(d.str(), kModel, kLayout, kBlock, -1).status().code(), StatusCode::invalid_argument);
    EXPECT_EQ(PrefixStore::open(d.str(), std::string(5000, 'k'), kLayout, kBlock, 1).status().code(),
              StatusCode::invalid_argument);
    const std::string file = (d.path / "plain").string();
    std::ofstream(file) << "x";
    EXPECT_EQ(PrefixStore::open(file, kModel, kLayout, kBlock, 1 << 20).status().code(), StatusCode::io_error);
    EXPECT_EQ(PrefixStore::open(file + "/sub", kModel, kLayout, kBlock, 1 << 20).status().code(),
              StatusCode::io_error);
}

TEST(PrefixStore, RoundTrip) {
    TempDir d;
    const std::string dir = (d.path / "a/b/c").string();  // created recursively
    auto s = open_store(dir);
    ASSERT_TRUE(s);
    const auto chain = make_chain(3, 4096, 1);
    for (const Block& b : chain) EXPECT_TRUE(put(*s, b));
    EXPECT_TRUE(put(*s, chain[0]));  // already queued or stored: accepted, not queued again
    for (const Block& b : chain) EXPECT_TRUE(s->contains(b.hash));
    s->flush();
    PrefixStoreStats st = s->stats();
    EXPECT_EQ(st.n_files, 3);
    EXPECT_EQ(st.n_writes, 3);
    EXPECT_EQ(st.n_puts, 3);
    EXPECT_EQ(st.n_queued, 0);
    EXPECT_EQ(st.queued_bytes, 0);
    EXPECT_EQ(st.disk_bytes, 3 * s->file_bytes(4096));
    for (const Block& b : chain) {
        EXPECT_TRUE(get_ok(*s, b));
        EXPECT_EQ((int64_t)fs::file_size(dir + "/" + PrefixStore::file_name(b.hash)), s->file_bytes(4096));
    }
    EXPECT_FALSE(s->contains(12345));
    std::vector<std::byte> out(4096);
    EXPECT_FALSE(s->get(12345, kChainSeed, chain[0].tokens, out));
    st = s->stats();
    EXPECT_EQ(st.n_hits, 3);
    EXPECT_EQ(st.n_misses, 1);
    EXPECT_EQ(st.n_corrupt_removed, 0);
}

TEST(PrefixStore, GetRightAfterPutFindsTheBlock) {
    // Queued, being written or on disk: a put block is always found.
    TempDir d;
    auto s = open_store(d.str());
    for (const Block& b : make_chain(40, 2048, 2)) {
        ASSERT_TRUE(put(*s, b));
        ASSERT_TRUE(get_ok(*s, b));
    }
}

TEST(PrefixStore, ReopenFindsTheFiles) {
    TempDir d;
    const auto chain = make_chain(5, 8192, 3);
    {
        auto s = open_store(d.str());
        for (const Block& b : chain) put(*s, b);
        // no flush: the destructor writes what is queued
    }
    auto s = open_store(d.str());
    ASSERT_TRUE(s);
    EXPECT_EQ(s->stats().n_files, 5);
    EXPECT_EQ(s->stats().disk_bytes, 5 * s->file_bytes(8192));
    for (const Block& b : chain) {
        EXPECT_TRUE(s->contains(b.hash));
        EXPECT_TRUE(get_ok(*s, b));
    }
    EXPECT_EQ(s->stats().n_hits, 5);
}

TEST(PrefixStore, WrongTokensParentOrSizeMiss) {
    TempDir d;
    auto s = open_store(d.str());
    const Block b = make_chain(1, 1024, 4)[0];
    put(*s, b);
    for (int flushed = 0; flushed < 2; ++flushed) {  // from the queue (maybe), then from disk
        std::vector<std::byte> out(b.payload.size());
        EXPECT_FALSE(s->get(b.hash, b.parent + 1, b.tokens, out));
        std::vector<int32_t> toks = b.tokens;
        toks[kBlock - 1] ^= 1;
        EXPECT_FALSE(s->get(b.hash, b.parent, toks, out));
        toks.pop_back();
        EXPECT_FALSE(s->get(b.hash, b.parent, toks, out));
        EXPECT_TRUE(get_ok(*s, b));  // the block itself is still there
        s->flush();
    }
    EXPECT_EQ(s->stats().n_corrupt_removed, 0);
    EXPECT_TRUE(fs::exists(path_of(d, b)));
    // A buffer of another size: the file does not fit this caller; it is dropped from the
    // index but left on disk.
    std::vector<std::byte> small(b.payload.size() - 1);
    EXPECT_FALSE(s->get(b.hash, b.parent, b.tokens, small));
    EXPECT_FALSE(s->contains(b.hash));
    EXPECT_EQ(s->stats().n_mismatched, 1);
    EXPECT_TRUE(fs::exists(path_of(d, b)));
}

// Writes one block, damages its file with `damage`, and checks that a fresh store misses it,
// deletes it, counts it, and accepts the block again afterwards.
void expect_removed_after(const std::function<void(const std::string&)>& damage, const std::string& what) {
    SCOPED_TRACE(what);
    TempDir d;
    const Block b = make_chain(1, 3000, 5)[0];
    {
        auto s = open_store(d.str());
        put(*s, b);
    }
    damage(path_of(d, b));
    auto s = open_store(d.str());
    ASSERT_TRUE(s->contains(b.hash));
    EXPECT_FALSE(get_ok(*s, b));
    EXPECT_FALSE(s->contains(b.hash));
    EXPECT_FALSE(fs::exists(path_of(d, b)));
    const PrefixStoreStats st = s->stats();
    EXPECT_EQ(st.n_corrupt_removed, 1);
    EXPECT_EQ(st.n_files, 0);
    EXPECT_EQ(st.disk_bytes, 0);
    EXPECT_EQ(st.n_misses, 1);
    // The request recomputes the block and stores it again.
    EXPECT_TRUE(put(*s, b));
    s->flush();
    EXPECT_TRUE(get_ok(*s, b));
}

TEST(PrefixStore, TruncatedFilesAreRemoved) {
    const int64_t full = 64 + (int64_t)kModel.size() + (int64_t)kLayout.size() + 4 * kBlock + 3000;
    for (int64_t len : {int64_t(0), int64_t(1), int64_t(8), int64_t(63), int64_t(64), int64_t(64 + 10),
                        int64_t(64 + kModel.size() + kLayout.size() + 5), full - 3000, full - 1500, full - 1}) {
        expect_removed_after([&](const std::string& p) { fs::resize_file(p, (uintmax_t)len); },
                             "truncated to " + std::to_string(len));
    }
    expect_removed_after([&](const std::string& p) { fs::resize_file(p, (uintmax_t)full + 1); }, "one byte longer");
}

TEST(PrefixStore, FlippedBytesAreRemoved) {
    const int64_t keys_at = 64, layout_at = 64 + (int64_t)kModel.size();
    const int64_t tokens_at = layout_at + (int64_t)kLayout.size(), payload_at = tokens_at + 4 * kBlock;
    const std::pair<int64_t, const char*> spots[] = {
        {0, "magic"},           {12, "n_tokens"},         {16, "hash"},
        {24, "parent"},         {32, "payload_bytes"},    {40, "model_key_bytes"},
        {44, "layout_key_bytes"}, {48, "payload checksum"}, {56, "header checksum"},
        {keys_at, "model_key"}, {layout_at + 3, "layout_key"}, {tokens_at, "first token"},
        {payload_at - 1, "last token"}, {payload_at, "first payload byte"},
        {payload_at + 1500, "mid payload"}, {payload_at + 2999, "last payload byte"},
    };
    for (const auto& spot : spots) {
        const int64_t at = spot.first;
        const char* what = spot.second;
        for (uint8_t mask : {0x01, 0x80}) {
            expect_removed_after(
                [&](const std::string& p) {
                    std::fstream f(p, std::ios::in | std::ios::out | std::ios::binary);
                    f.seekg(at);
                    char c = 0;
                    f.read(&c, 1);
                    c = (char)(c ^ mask);
                    f.seekp(at);
                    f.write(&c, 1);
                },
                std::string("flip in ") + what + " mask " + std::to_string(mask));
        }
    }
}

TEST(PrefixStore, FileUnderAnotherNameIsRemoved) {
    expect_removed_after(
        [](const std::string& p) {
            // Replace the block's file by a valid file of another block.
            TempDir other;
            const Block x = make_chain(1, 3000, 99)[0];
            {
                auto s = open_store(other.str());
                put(*s, x);
            }
            fs::copy_file(path_of(other, x), p, fs::copy_options::overwrite_existing);
        },
        "another block's file");
}

TEST(PrefixStore, UnknownVersionIsIgnoredNotDeleted) {
    TempDir d;
    const Block b = make_chain(1, 1000, 6)[0];
    { auto s = open_store(d.str()); put(*s, b); }
    {
        std::fstream f(path_of(d, b), std::ios::in | std::ios::out | std::ios::binary);
        f.seekp(8);
        const char v2[4] = {2, 0, 0, 0};
        f.write(v2, 4);
    }
    auto s = open_store(d.str());
    EXPECT_FALSE(get_ok(*s, b));
    EXPECT_FALSE(s->contains(b.hash));
    EXPECT_EQ(s->stats().n_mismatched, 1);
    EXPECT_EQ(s->stats().n_corrupt_removed, 0);
    EXPECT_TRUE(fs::exists(path_of(d, b)));
}

TEST(PrefixStore, OtherModelLayoutOrBlockSizeMiss) {
    TempDir d;
    const Block b = make_chain(1, 2048, 7)[0];
    { auto s = open_store(d.str()); put(*s, b); }
    {
        auto s = open_store(d.str(), 1ll << 30, PrefixStore::kDefaultMaxQueueBytes, "sha256:ffff", kLayout);
        EXPECT_TRUE(s->contains(b.hash));  // by name only, until read
        EXPECT_FALSE(get_ok(*s, b));
        EXPECT_FALSE(s->contains(b.hash));
        EXPECT_EQ(s->stats().n_mismatched, 1);
    }
    {
        auto s = open_store(d.str(), 1ll << 30, PrefixStore::kDefaultMaxQueueBytes, kModel, "q8_0;L2");
        EXPECT_FALSE(get_ok(*s, b));
        EXPECT_EQ(s->stats().n_mismatched, 1);
    }
    {
        // A store of another block size never even reads it: the tokens do not fit.
        auto s = open_store(d.str(), 1ll << 30, PrefixStore::kDefaultMaxQueueBytes, kModel, kLayout, 16);
        EXPECT_FALSE(get_ok(*s, b));
        EXPECT_FALSE(s->put(b.hash, b.parent, b.tokens, b.payload));
    }
    // Left alone for its own model.
    auto s = open_store(d.str());
    EXPECT_TRUE(get_ok(*s, b));
    EXPECT_EQ(s->stats().n_corrupt_removed, 0);
}

TEST(PrefixStore, BudgetEvictsLeastRecentlyUsed) {
    TempDir d;
    const size_t payload = 10000;
    const auto bl = make_chain(6, payload, 8);
    std::unique_ptr<PrefixStore> s = open_store(d.str(), 0);
    const int64_t f = s->file_bytes(payload);
    const int64_t budget = 3 * f + f / 2;
    s = open_store(d.str(), budget);
    for (int i = 0; i < 3; ++i) {
        put(*s, bl[i]);
        s->flush();
    }
    EXPECT_TRUE(get_ok(*s, bl[0]));  // 0 becomes the most recently used; 1 is now the oldest
    put(*s, bl[3]);
    s->flush();
    PrefixStoreStats st = s->stats();
    EXPECT_LE(st.disk_bytes, budget);
    EXPECT_EQ(st.n_files, 3);
    EXPECT_EQ(st.n_evicted, 1);
    EXPECT_FALSE(s->contains(bl[1].hash));
    EXPECT_FALSE(fs::exists(path_of(d, bl[1])));
    for (int i : {0, 2, 3}) EXPECT_TRUE(get_ok(*s, bl[i])) << i;

    // A block bigger than the whole budget is refused up front.
    const Block huge = make_chain(1, (size_t)budget, 9)[0];
    EXPECT_FALSE(put(*s, huge));
    EXPECT_EQ(s->stats().n_puts_dropped, 1);

    // The order survives a restart through mtimes: make 3 the oldest, 2 the newest.
    s.reset();
    set_mtime(path_of(d, bl[3]), 1000000000);
    set_mtime(path_of(d, bl[0]), 1000000100);
    set_mtime(path_of(d, bl[2]), 1000000200);
    s = open_store(d.str(), budget);
    put(*s, bl[4]);
    s->flush();
    EXPECT_FALSE(s->contains(bl[3].hash));
    for (int i : {0, 2, 4}) EXPECT_TRUE(s->contains(bl[i].hash)) << i;
    // get() refreshes the mtime, so a hit counts as a use after a restart too.
    EXPECT_TRUE(get_ok(*s, bl[0]));
    EXPECT_GT(mtime_of(path_of(d, bl[0])), 1000000100);

    // Opening with a smaller budget evicts the least recently used files at once. (File times
    // are coarse, so 4's write and 0's read may share a timestamp: age 4 by hand.)
    s.reset();
    set_mtime(path_of(d, bl[4]), 1000000300);
    s = open_store(d.str(), f);
    st = s->stats();
    EXPECT_EQ(st.n_files, 1);
    EXPECT_LE(st.disk_bytes, f);
    EXPECT_TRUE(s->contains(bl[0].hash));  // the most recently used
    EXPECT_EQ(names_in(d).size(), 2u);     // the file and .lock

    // max_bytes == 0 stores nothing.
    s.reset();
    s = open_store(d.str(), 0);
    EXPECT_EQ(s->stats().n_files, 0);
    EXPECT_FALSE(put(*s, bl[5]));
}

TEST(PrefixStore, FullQueueDropsPuts) {
    TempDir d;
    const auto bl = make_chain(50, 16384, 10);
    const int64_t cost = 16384 + 4 * kBlock;
    {
        // Smaller than one block: every put is dropped, deterministically.
        auto s = open_store(d.str(), 1ll << 30, cost - 1);
        for (const Block& b : bl) EXPECT_FALSE(put(*s, b));
        s->flush();
        const PrefixStoreStats st = s->stats();
        EXPECT_EQ(st.n_puts_dropped, 50);
        EXPECT_EQ(st.n_puts, 0);
        EXPECT_EQ(st.n_files, 0);
    }
    {
        // Room for two: puts beyond what the writer keeps up with are dropped and counted; the
        // caller never waits, and everything accepted is stored.
        auto s = open_store(d.str(), 1ll << 30, 2 * cost);
        int accepted = 0;
        for (const Block& b : bl) {
            if (put(*s, b)) ++accepted;
            EXPECT_LE(s->stats().queued_bytes, 2 * cost);
        }
        s->flush();
        const PrefixStoreStats st = s->stats();
        EXPECT_EQ(st.n_puts, accepted);
        EXPECT_EQ(st.n_puts + st.n_puts_dropped, 50);
        EXPECT_GE(accepted, 2);
        EXPECT_EQ(st.n_files, accepted);
        int found = 0;
        for (const Block& b : bl) found += get_ok(*s, b);
        EXPECT_EQ(found, accepted);
    }
}

TEST(PrefixStore, StaleTemporaryFilesAreRemovedAtOpen) {
    TempDir d;
    const std::string stale = (d.path / ".0123456789abcdef.kvb.tmp-AbC123").string();
    const std::string other_tmp = (d.path / ".notes.txt.tmp-AbC123").string();
    const std::string notes = (d.path / "notes.txt").string();
    for (const std::string& p : {stale, other_tmp, notes}) std::ofstream(p) << "partial";
    {
        auto s = open_store(d.str());
        EXPECT_EQ(s->stats().n_stale_temps_removed, 1);
        EXPECT_EQ(s->stats().n_files, 0);
        EXPECT_FALSE(fs::exists(stale));
        EXPECT_TRUE(fs::exists(other_tmp));  // not ours
        EXPECT_TRUE(fs::exists(notes));

        // While this store holds the folder, a second one leaves temporary files alone: they
        // may be the first one's writes in progress.
        std::ofstream(stale) << "partial";
        auto second = open_store(d.str());
        EXPECT_EQ(second->stats().n_stale_temps_removed, 0);
        EXPECT_TRUE(fs::exists(stale));
    }
    auto s = open_store(d.str());
    EXPECT_EQ(s->stats().n_stale_temps_removed, 1);
    EXPECT_FALSE(fs::exists(stale));
}

TEST(PrefixStore, FlushWritesEverythingQueued) {
    TempDir d;
    auto s = open_store(d.str());
    const auto bl = make_chain(20, 4096, 11);
    for (const Block& b : bl) put(*s, b);
    s->flush();
    const PrefixStoreStats st = s->stats();
    EXPECT_EQ(st.n_queued, 0);
    EXPECT_EQ(st.n_writes, 20);
    EXPECT_EQ(st.n_files, 20);
    int n_kvb = 0;
    for (const std::string& name : names_in(d)) {
        EXPECT_EQ(name.find(".tmp-"), std::string::npos) << name;
        n_kvb += name.size() > 4 && name.substr(name.size() - 4) == ".kvb";
    }
    EXPECT_EQ(n_kvb, 20);
    s->flush();  // nothing queued: returns at once
}

TEST(PrefixStore, WriteErrorsAreCountedNotFatal) {
    TempDir d;
    const std::string dir = (d.path / "store").string();
    auto s = open_store(dir);
    const auto bl = make_chain(2, 1024, 12);
    fs::remove_all(dir);  // the folder vanishes under the store
    EXPECT_TRUE(put(*s, bl[0]));
    s->flush();
    EXPECT_EQ(s->stats().n_write_errors, 1);
    EXPECT_EQ(s->stats().n_files, 0);
    EXPECT_EQ(s->stats().disk_bytes, 0);
    EXPECT_FALSE(get_ok(*s, bl[0]));
}

TEST(PrefixStore, ConcurrentPutAndGet) {
    TempDir d;
    // A budget of about 40 files forces evictions while other threads read.
    const size_t payload = 2048;
    std::unique_ptr<PrefixStore> probe = open_store(d.str(), 0);
    const int64_t budget = 40 * probe->file_bytes(payload);
    probe.reset();
    auto s = open_store(d.str(), budget, 24 * (payload + 4 * kBlock));
    // Threads share half their blocks, so puts and gets of the same hash collide.
    const auto shared = make_chain(15, payload, 13);
    std::atomic<int> bad{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&, t] {
            const auto own = make_chain(15, payload, 100 + (uint32_t)t);
            std::mt19937 rng((uint32_t)t);
            for (int i = 0; i < 15; ++i) {
                put(*s, own[i]);
                put(*s, shared[i]);
                for (int k = 0; k < 3; ++k) {
                    const Block& b = (rng() & 1) ? own[rng() % (i + 1)] : shared[rng() % (i + 1)];
                    std::vector<std::byte> out(payload);
                    // A miss is allowed (dropped, evicted); wrong bytes never are.
                    if (s->get(b.hash, b.parent, b.tokens, out) && out != b.payload) bad++;
                    s->contains(b.hash);
                }
                if (i % 5 == 4) s->flush();
            }
        });
    }
    for (auto& th : threads) th.join();
    s->flush();
    EXPECT_EQ(bad.load(), 0);
    const PrefixStoreStats st = s->stats();
    EXPECT_LE(st.disk_bytes, budget);
    EXPECT_EQ(st.n_queued, 0);
    EXPECT_EQ(st.n_write_errors, 0);
    EXPECT_EQ(st.n_corrupt_removed, 0);
    EXPECT_EQ(st.n_files, st.n_writes - st.n_evicted);
    int64_t on_disk = 0;
    for (const std::string& name : names_in(d)) on_disk += name.size() == 20;
    EXPECT_EQ(on_disk, st.n_files);
}

}  // namespace
}  // namespace hearth::runtime
