#include "runtime/block_pool.h"

#include <algorithm>
#include <cassert>

namespace hearth::runtime {

namespace {
// splitmix64's finalizer: a cheap full-avalanche 64-bit mix.
uint64_t mix64(uint64_t x) {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x;
}
}  // namespace

uint64_t chain_hash(uint64_t parent, std::span<const int32_t> tokens) {
    uint64_t h = mix64(parent ^ 0x243f6a8885a308d3ull);
    for (int32_t t : tokens) h = mix64(h ^ (uint64_t)(uint32_t)t) + 0x9e3779b97f4a7c15ull;
    return mix64(h ^ (uint64_t)tokens.size());
}

BlockPool::BlockPool(model::KvCache& kv) : kv_(&kv), block_size_(kv.block_size()) {
    const int n = kv.n_blocks();
    assert(kv.n_free() == n);
    refcount_.assign(n, 0);
    published_.assign(n, 0);
    hash_.assign(n, 0);
    parent_.assign(n, 0);
    tokens_.assign((size_t)n * block_size_, 0);
    prev_.assign(n, -1);
    next_.assign(n, -1);
    index_.reserve((size_t)n);
}

void BlockPool::lru_push_back(int32_t b) {
    prev_[b] = tail_;
    next_[b] = -1;
    if (tail_ >= 0) next_[tail_] = b;
    else head_ = b;
    tail_ = b;
    ++n_cached_;
}

void BlockPool::lru_remove(int32_t b) {
    if (prev_[b] >= 0) next_[prev_[b]] = next_[b];
    else head_ = next_[b];
    if (next_[b] >= 0) prev_[next_[b]] = prev_[b];
    else tail_ = prev_[b];
    prev_[b] = next_[b] = -1;
    --n_cached_;
}

void BlockPool::unpublish(int32_t b) {
    index_.erase(hash_[b]);
    published_[b] = 0;
}

int32_t BlockPool::alloc() {
    int32_t b = -1;
    if (kv_->n_free() > 0) {
        b = kv_->alloc_block().value();
    } else if (head_ >= 0) {
        b = head_;
        lru_remove(b);
        unpublish(b);
    } else {
        return -1;
    }
    refcount_[b] = 1;
    return b;
}

int BlockPool::match(std::span<const int32_t> tokens, int max_blocks, bool acquire, std::vector<int32_t>& blocks,
                     std::vector<uint64_t>& hashes, int* n_unreferenced) {
    blocks.clear();
    hashes.clear();
    int unref = 0;
    uint64_t parent = kChainSeed;
    const int n_full = (int)std::min<int64_t>(max_blocks, (int64_t)tokens.size() / block_size_);
    for (int i = 0; i < n_full; ++i) {
        auto chunk = tokens.subspan((size_t)i * block_size_, (size_t)block_size_);
        const uint64_t h = chain_hash(parent, chunk);
        auto it = index_.find(h);
        if (it == index_.end()) break;
        const int32_t b = it->second;
        if (parent_[b] != parent ||
            !std::equal(chunk.begin(), chunk.end(), tokens_.begin() + (int64_t)b * block_size_))
            break;  // hash collision: treat as a miss
        if (refcount_[b] == 0) ++unref;
        blocks.push_back(b);
        hashes.push_back(h);
        parent = h;
    }
    if (acquire)
        for (int32_t b : blocks)
            if (refcount_[b]++ == 0) lru_remove(b);
    if (n_unreferenced) *n_unreferenced = unref;
    return (int)blocks.size();
}

bool BlockPool::publish(int32_t block, uint64_t hash, uint64_t parent, std::span<const int32_t> tokens) {
    assert(refcount_[block] > 0 && !published_[block] && (int)tokens.size() == block_size_);
    if (!index_.emplace(hash, block).second) return false;
    published_[block] = 1;
    hash_[block] = hash;
    parent_[block] = parent;
    std::copy(tokens.begin(), tokens.end(), tokens_.begin() + (int64_t)block * block_size_);
    return true;
}

void BlockPool::release(int32_t block) {
    assert(refcount_[block] > 0);
    if (--refcount_[block] > 0) return;
    if (published_[block]) lru_push_back(block);
    else kv_->free_block(block);
}

void BlockPool::release(std::vector<int32_t>& table) {
    // Last block first, so a released chain's tail is evicted before its head (the head is the
    // part other requests are most likely to share).
    for (auto it = table.rbegin(); it != table.rend(); ++it) release(*it);
    table.clear();
}

}  // namespace hearth::runtime
