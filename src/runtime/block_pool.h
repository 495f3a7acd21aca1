// KV block ownership for the serving runtime: reference counts, the automatic prefix cache and
// its LRU, on top of model::KvCache's free list.
//
// Every block of the KvCache is in exactly one of three states:
//   free        on KvCache's free list; refcount 0; not indexed
//   used        refcount > 0; owned by one sequence (private) or shared read-only by several
//               (only published blocks are ever shared)
//   cached      refcount 0 but published: its K/V still holds a known token prefix, it sits in
//               the LRU and in the index, and alloc() may evict it (it then becomes used)
// so kv.n_free() + n_cached() + n_used() == kv.n_blocks() at all times.
//
// Prefix caching: a full block is named by the hash chain of its tokens,
// hash_i = chain_hash(hash_{i-1}, tokens of block i), hash_{-1} = kChainSeed. Position p of a
// sequence always lives in slot p % block_size of table[p / block_size], so equal chains mean
// equal K/V (the forward pass is bit-exact whatever the batch composition, tests/model/
// batch_test.cpp). The index also stores each block's tokens and parent hash and compares them
// on lookup, so a 64-bit hash collision costs a cache miss, never wrong K/V.
//
// Not thread-safe: the engine's scheduler thread is the only user.
#pragma once

#include <cstdint>
#include <span>
#include <unordered_map>
#include <vector>

#include "model/kv_cache.h"

namespace hearth::runtime {

constexpr uint64_t kChainSeed = 0x9e3779b97f4a7c15ull;

// The chain hash of one full block: depends on the previous block's hash and this block's tokens.
uint64_t chain_hash(uint64_t parent, std::span<const int32_t> tokens);

class BlockPool {
public:
    // Takes over allocation of kv's blocks. Preconditions: every block of kv is free; kv outlives
    // the pool.
    explicit BlockPool(model::KvCache& kv);

    int block_size() const { return block_size_; }
    int n_total() const { return (int)refcount_.size(); }
    int n_free() const { return kv_->n_free(); }
    int n_cached() const { return n_cached_; }  // unreferenced, published, evictable
    int n_used() const { return n_total() - n_free() - n_cached(); }
    // Blocks alloc() can still hand out: free ones plus evictable cached ones.
    int n_available() const { return n_free() + n_cached(); }

    // A private block with refcount 1: a free one, else the least recently used cached one,
    // which leaves the index (its prefix is forgotten). -1 when every block is used (nothing
    // changes then).
    int32_t alloc();

    // The longest published chain that prefixes `tokens`, at most max_blocks blocks. Fills
    // `blocks` (cleared first) and `hashes` (their chain hashes) and returns the count; takes a
    // reference on each block only when acquire is true. n_unreferenced (optional) receives how
    // many of the found blocks are currently cached (refcount 0): acquiring them removes them
    // from n_available().
    int match(std::span<const int32_t> tokens, int max_blocks, bool acquire, std::vector<int32_t>& blocks,
              std::vector<uint64_t>& hashes, int* n_unreferenced = nullptr);

    // Indexes a used, full, private block under `hash` (its tokens and parent hash are stored
    // for verification). Returns false and changes nothing when that hash is already indexed
    // (another sequence computed the same prefix at the same time): the block then stays
    // private and is freed on release.
    bool publish(int32_t block, uint64_t hash, uint64_t parent, std::span<const int32_t> tokens);

    // Drops one reference. At zero a published block becomes cached (most recently used end of
    // the LRU); an unpublished one goes back to the free list.
    void release(int32_t block);
    void release(std::vector<int32_t>& table);  // every block of the table, then clears it

    int refcount(int32_t block) const { return refcount_[block]; }
    bool is_published(int32_t block) const { return published_[block] != 0; }

private:
    void lru_push_back(int32_t b);
    void lru_remove(int32_t b);
    void unpublish(int32_t b);

    model::KvCache* kv_;
    int block_size_;
    int n_cached_ = 0;
    std::vector<int32_t> refcount_;     // [n_blocks] sequences referencing the block
    std::vector<uint8_t> published_;    // [n_blocks] 1: in index_ (cached or used)
    std::vector<uint64_t> hash_;        // [n_blocks] chain hash; valid when published
    std::vector<uint64_t> parent_;      // [n_blocks] previous block's chain hash; valid when published
    std::vector<int32_t> tokens_;       // [n_blocks * block_size] the tokens of each published block
    // Intrusive doubly-linked LRU of cached blocks, least recently used at head_: [n_blocks]
    // neighbours, -1 at the ends. A block is linked iff it is cached.
    std::vector<int32_t> prev_, next_;
    int32_t head_ = -1, tail_ = -1;
    std::unordered_map<uint64_t, int32_t> index_;  // chain hash -> published block
};

}  // namespace hearth::runtime
