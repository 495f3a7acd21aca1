// BlockPool: reference counts, prefix publication and lookup, LRU eviction, and the invariant
// free + cached + used == total through every transition.
#include "runtime/block_pool.h"

#include <gtest/gtest.h>

#include <numeric>

namespace hearth::runtime {
namespace {

model::KvCache make_kv(int n_blocks, int block_size) {
    model::KvLayout l;
    l.n_layer = 1;
    l.k_width = {2};
    l.v_width = {2};
    return model::KvCache::create(l, n_blocks, block_size).value();
}

void expect_accounting(const BlockPool& p) {
    EXPECT_EQ(p.n_free() + p.n_cached() + p.n_used(), p.n_total());
    EXPECT_GE(p.n_free(), 0);
    EXPECT_GE(p.n_cached(), 0);
    EXPECT_GE(p.n_used(), 0);
}

// Publishes `table` (full blocks of `toks`) as one sequence would.
void publish_chain(BlockPool& p, const std::vector<int32_t>& table, const std::vector<int32_t>& toks) {
    uint64_t parent = kChainSeed;
    for (size_t i = 0; i < table.size(); ++i) {
        std::span<const int32_t> chunk(toks.data() + i * p.block_size(), (size_t)p.block_size());
        const uint64_t h = chain_hash(parent, chunk);
        p.publish(table[i], h, parent, chunk);
        parent = h;
    }
}

TEST(BlockPool, ChainHashDependsOnParentAndTokens) {
    const std::vector<int32_t> a = {1, 2, 3, 4}, b = {1, 2, 3, 5};
    EXPECT_NE(chain_hash(kChainSeed, a), chain_hash(kChainSeed, b));
    EXPECT_NE(chain_hash(kChainSeed, a), chain_hash(chain_hash(kChainSeed, b), a));
    EXPECT_EQ(chain_hash(7, a), chain_hash(7, a));
}

TEST(BlockPool, PublishedBlocksAreSharedCachedAndEvictedLast) {
    auto kv = make_kv(4, 2);
    BlockPool p(kv);
    std::vector<int32_t> toks = {1, 2, 3, 4, 5};
    std::vector<int32_t> table = {p.alloc(), p.alloc(), p.alloc()};
    EXPECT_EQ(p.n_used(), 3);
    publish_chain(p, {table[0], table[1]}, toks);  // the third block is partial: never published
    expect_accounting(p);

    std::vector<int32_t> got;
    std::vector<uint64_t> hashes;
    int unref = -1;
    // A second sequence with the same first 4 tokens finds both full blocks, both referenced.
    EXPECT_EQ(p.match(toks, 8, true, got, hashes, &unref), 2);
    EXPECT_EQ(unref, 0);
    EXPECT_EQ(got, (std::vector<int32_t>{table[0], table[1]}));
    EXPECT_EQ(p.refcount(table[0]), 2);
    // max_blocks caps the match; a different second block stops it after the first.
    EXPECT_EQ(p.match(toks, 1, false, got, hashes), 1);
    EXPECT_EQ(p.match(std::vector<int32_t>{1, 2, 9, 9}, 8, false, got, hashes), 1);

    p.release(got = {table[0], table[1]});
    p.release(table);  // the published pair becomes cached, the partial block free
    EXPECT_EQ(p.n_cached(), 2);
    EXPECT_EQ(p.n_free(), 2);
    expect_accounting(p);
    EXPECT_EQ(p.match(toks, 8, false, got, hashes, &unref), 2);
    EXPECT_EQ(unref, 2);

    // Free blocks go first; then the LRU evicts the chain's tail before its head.
    const int32_t f1 = p.alloc(), f2 = p.alloc();
    EXPECT_EQ(p.n_cached(), 2);
    const int32_t e1 = p.alloc();
    EXPECT_EQ(e1, got[1]);
    EXPECT_EQ(p.match(toks, 8, false, got, hashes), 1);
    const int32_t e2 = p.alloc();
    EXPECT_EQ(p.alloc(), -1);
    EXPECT_EQ(p.match(toks, 8, false, got, hashes), 0);
    std::vector<int32_t> all = {f1, f2, e1, e2};
    p.release(all);
    EXPECT_EQ(p.n_free(), 4);
    expect_accounting(p);
}

TEST(BlockPool, DuplicatePublishKeepsTheBlockPrivate) {
    auto kv = make_kv(3, 2);
    BlockPool p(kv);
    const std::vector<int32_t> toks = {7, 8};
    std::vector<int32_t> a = {p.alloc()}, b = {p.alloc()};
    const uint64_t h = chain_hash(kChainSeed, toks);
    EXPECT_TRUE(p.publish(a[0], h, kChainSeed, toks));
    EXPECT_FALSE(p.publish(b[0], h, kChainSeed, toks));
    EXPECT_FALSE(p.is_published(b[0]));
    p.release(b);
    EXPECT_EQ(p.n_free(), 2);
    p.release(a);
    EXPECT_EQ(p.n_cached(), 1);
    expect_accounting(p);
}

}  // namespace
}  // namespace hearth::runtime
