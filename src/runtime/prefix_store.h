// The on-disk tier of the prefix cache: full KV blocks, content-addressed by their chain hash
// (block_pool.h), kept in one folder per (model, KV layout) so that a long system prompt or a
// large document read again after a restart is loaded instead of prefilled.
//
// Files are never trusted: get() returns true only when every field of the file matches what
// the caller expects and both checksums hold. A damaged file (truncated, bit flips, a name that
// does not match its header) is deleted; a well-formed file written for another model, KV
// layout, block size or format version is dropped from the index and left alone; a file whose
// hash matches but whose tokens or parent differ (a 64-bit collision) is just a miss.
//
// Writes are asynchronous: put() copies the block into a bounded in-memory queue and returns;
// one writer thread writes each block to a temporary file, fsyncs it and renames it into place
// (base/file_writer.h), so a crash leaves at most a stale temporary file, removed at the next
// open(). When the queue is full, put() drops the block (counted) instead of waiting: the cache
// is an optimisation and the caller is the scheduler.
//
// Disk budget: the files together stay within max_bytes. Before a file is written, least
// recently used files are deleted until it fits. "Use" is a write or a successful get(); a get()
// also sets the file's mtime, and open() orders the files it finds by mtime, so the LRU order
// survives a restart.
//
// Several PrefixStore objects (or processes) may open the same folder: an advisory lock
// (<dir>/.lock) decides which one removes stale temporary files at open, and every other
// conflict (a file evicted or replaced by the other store) costs a miss, never wrong data. Each
// store budgets only the files it knows about, so share a folder only for short overlaps (a
// daemon restarting).
//
// File: <dir>/<hash as 16 lower-case hex digits>.kvb, little-endian:
//   offset  bytes  field
//        0      8  magic "HEARTHKV"
//        8      4  u32 format version (kFormatVersion)
//       12      4  u32 n_tokens: tokens in the block (== the store's block_size)
//       16      8  u64 hash: the block's chain hash; must equal the hash in the file name
//       24      8  u64 parent: the previous block's chain hash (kChainSeed for the first block)
//       32      8  u64 payload_bytes
//       40      4  u32 model_key_bytes (at most kMaxKeyBytes)
//       44      4  u32 layout_key_bytes (at most kMaxKeyBytes)
//       48      8  u64 payload_checksum: checksum() of the payload
//       56      8  u64 header_checksum: checksum() of everything before the payload, with these
//                  8 bytes taken as zero
//       64         model_key (no terminator), then layout_key, then n_tokens i32 tokens, then
//                  the payload (opaque KV bytes, in whatever layout layout_key names)
// and the file size is exactly the sum of these parts.
//
// Thread safety: every public member may be called from any number of threads at once (one
// mutex guards the index, the queue and the counters; file reads in get() run outside it).
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <list>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "base/status.h"

namespace hearth::runtime {

struct PrefixStoreStats {
    int64_t n_files = 0;            // blocks on disk (indexed)
    int64_t disk_bytes = 0;         // their total size, plus a file being written; <= max_bytes
    int64_t n_queued = 0;           // blocks waiting for the writer (including the one in flight)
    int64_t queued_bytes = 0;       // their payload + token bytes; <= max_queue_bytes
    int64_t n_puts = 0;             // puts accepted into the queue
    int64_t n_puts_dropped = 0;     // puts refused: queue full, block larger than the budget, bad size
    int64_t n_writes = 0;           // files written
    int64_t n_write_errors = 0;     // writes that failed (disk full, I/O error); the block is dropped
    int64_t n_evicted = 0;          // files deleted to stay within max_bytes
    int64_t n_corrupt_removed = 0;  // damaged files found by get() and deleted
    int64_t n_mismatched = 0;       // well-formed files for another model/layout/version, ignored
    int64_t n_stale_temps_removed = 0;  // temporary files of interrupted writes deleted at open
    int64_t n_hits = 0;             // get() calls that filled the payload (from disk or the queue)
    int64_t n_misses = 0;           // get() calls that returned false
};

class PrefixStore {
public:
    static constexpr uint32_t kFormatVersion = 1;
    static constexpr size_t kHeaderBytes = 64;
    static constexpr size_t kMaxKeyBytes = 4096;
    static constexpr int64_t kDefaultMaxQueueBytes = 256ll << 20;
    static constexpr size_t kMaxSpareBuffers = 8;
    static constexpr int64_t kMaxSpareBytes = 64ll << 20;

    // Opens (creating it and its parents when missing) the store folder `dir` for one model and
    // KV layout: model_key is the model file's digest, layout_key an opaque description of the
    // KV layout and type (model::KvCache::layout_key()); both go into every file and are checked
    // on read. Indexes the *.kvb files there by name (contents are checked lazily, by get()),
    // deletes stale temporary files, then deletes least recently used files while the total
    // exceeds max_bytes. Starts the writer thread.
    // Errors: invalid_argument (block_size < 1, max_bytes or max_queue_bytes < 0, a key longer
    // than kMaxKeyBytes); io_error when the folder cannot be created, listed or locked. Nothing
    // on disk is changed by a failed open() except folders it created.
    static Result<std::unique_ptr<PrefixStore>> open(const std::string& dir, const std::string& model_key,
                                                     const std::string& layout_key, int block_size,
                                                     int64_t max_bytes,
                                                     int64_t max_queue_bytes = kDefaultMaxQueueBytes);
    // Writes everything still queued (flush()), then stops the writer thread.
    ~PrefixStore();
    PrefixStore(const PrefixStore&) = delete;
    PrefixStore& operator=(const PrefixStore&) = delete;

    // True when the block is on disk (as far as the index knows) or queued. A true answer is a
    // hint: get() may still miss (the file turned out damaged, or was evicted meanwhile).
    bool contains(uint64_t hash) const;

    // Queues the block (hash, parent, tokens, payload) for writing and returns at once; the
    // caller's buffers are copied. Returns true when the block is queued or already stored
    // (nothing is queued twice), false when it was dropped: tokens.size() != block_size, the
    // file would exceed max_bytes on its own, or the queue would exceed max_queue_bytes.
    bool put(uint64_t hash, uint64_t parent, std::span<const int32_t> tokens,
             std::span<const std::byte> payload);

    // Fills payload_out with the stored block and returns true only when a block with this hash,
    // parent and tokens is stored (or still queued) for this model_key and layout_key, its
    // payload is exactly payload_out.size() bytes and both checksums hold. Synchronous: one file
    // read. On false, payload_out's contents are unspecified (they may hold part of a damaged
    // file) and the caller must compute the block itself.
    bool get(uint64_t hash, uint64_t parent, std::span<const int32_t> tokens, std::span<std::byte> payload_out);

    // Waits until every block queued before the call has been written (or has failed).
    void flush();

    PrefixStoreStats stats() const;
    const std::string& dir() const { return dir_; }
    int block_size() const { return block_size_; }
    int64_t max_bytes() const { return max_bytes_; }

    // The file a block is stored in, relative to dir(): "<16 hex>.kvb".
    static std::string file_name(uint64_t hash);
    // Size of the file for one block of this store.
    int64_t file_bytes(size_t payload_bytes) const;
    // The checksum of the file format: XXH64 with seed 0 (bit-compatible with libxxhash), about
    // 10 GB/s. Detects truncation and flipped bits with probability 1 - 2^-64.
    static uint64_t checksum(std::span<const std::byte> bytes);
    // "<models_dir>/kvcache/<first 16 characters of model_key's hex digest>-<first 8 hex digits
    // of sha256(layout_key)>": a "sha256:" or "sha256-" prefix of model_key is skipped and
    // characters other than [0-9A-Za-z] become '_'.
    static std::string default_dir(const std::string& models_dir, const std::string& model_key,
                                   const std::string& layout_key);

private:
    struct Job {  // one queued block; immutable while in queue_
        uint64_t hash = 0, parent = 0;
        std::vector<int32_t> tokens;    // [block_size]
        std::vector<std::byte> payload; // [payload_bytes]
        int64_t queued_bytes() const { return (int64_t)(payload.size() + tokens.size() * sizeof(int32_t)); }
    };
    struct Entry {  // one file in the index
        int64_t file_bytes = 0;
        uint64_t gen = 0;  // unique per insertion, so a reader can tell its file from a newer one
        std::list<uint64_t>::iterator lru;
    };
    enum class ReadResult { hit, absent, corrupt, mismatched, collision, io_error };

    PrefixStore() = default;
    void run_writer();
    Status write_file(const Job& job) const;
    ReadResult read_file(uint64_t hash, uint64_t parent, std::span<const int32_t> tokens,
                         std::span<std::byte> payload_out) const;
    std::string path_of(uint64_t hash) const { return dir_ + "/" + file_name(hash); }
    // Under mu_: index a file as most recently used.
    void index_insert_locked(uint64_t hash, int64_t file_bytes);
    void index_erase_locked(std::unordered_map<uint64_t, Entry>::iterator it);
    // Under mu_: drops least recently used files from the index until `incoming` more bytes fit
    // in max_bytes; appends their paths (to delete outside the lock) to `victims`.
    void make_room_locked(int64_t incoming, std::vector<std::string>& victims);

    std::string dir_, model_key_, layout_key_;
    int block_size_ = 0;
    int64_t max_bytes_ = 0, max_queue_bytes_ = 0;
    int lock_fd_ = -1;  // <dir>/.lock, flock()ed when owns_dir_
    bool owns_dir_ = false;

    mutable std::mutex mu_;
    std::condition_variable work_cv_;  // the writer waits here for a job or stopping_
    std::condition_variable idle_cv_;  // flush() waits here for queue_ to drain
    // ---- under mu_ ----
    // Invariant: index_ and lru_ hold the same hashes; lru_ runs least recently used first.
    std::unordered_map<uint64_t, Entry> index_;
    std::list<uint64_t> lru_;
    // Blocks not yet written, oldest first. The front one is being written; it leaves queue_
    // and queued_ together with its file entering index_, so a block is always findable.
    std::deque<std::shared_ptr<Job>> queue_;
    std::unordered_map<uint64_t, std::shared_ptr<Job>> queued_;  // the same jobs, by hash
    // Payload buffers of written jobs, reused by put(): a fresh multi-megabyte allocation costs
    // the caller page faults, ~10x the copy itself. At most kMaxSpareBuffers buffers and
    // kMaxSpareBytes of capacity are kept.
    std::vector<std::vector<std::byte>> spare_;
    int64_t spare_bytes_ = 0;
    uint64_t next_gen_ = 1;
    // Jobs ever queued / ever finished by the writer (FIFO, so flush() waits for n_written_ to
    // reach the n_enqueued_ it saw).
    uint64_t n_enqueued_ = 0, n_written_ = 0;
    bool stopping_ = false;
    PrefixStoreStats stats_;  // n_files, disk_bytes, n_queued and queued_bytes kept current

    std::thread writer_;  // started last by open()
};

}  // namespace hearth::runtime
