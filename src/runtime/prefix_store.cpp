#include "runtime/prefix_store.h"

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/file_writer.h"
#include "base/sha256.h"

namespace hearth::runtime {
namespace {

constexpr char kMagic[8] = {'H', 'E', 'A', 'R', 'T', 'H', 'K', 'V'};
constexpr const char* kSuffix = ".kvb";
constexpr size_t kHexDigits = 16;
constexpr size_t kOffChecksumHeader = 56;
// A sanity bound on n_tokens read from a file, so a damaged header cannot make get() allocate
// gigabytes before the header checksum is checked.
constexpr uint32_t kMaxTokensInFile = 1u << 20;

// ---- XXH64 (Yann Collet's xxHash, 64-bit variant) ----
constexpr uint64_t kP1 = 0x9E3779B185EBCA87ull, kP2 = 0xC2B2AE3D27D4EB4Full, kP3 = 0x165667B19E3779F9ull,
                   kP4 = 0x85EBCA77C2B2AE63ull, kP5 = 0x27D4EB2F165667C5ull;

inline uint64_t rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
inline uint64_t read_le64(const std::byte* p) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    if constexpr (std::endian::native == std::endian::big) v = __builtin_bswap64(v);
    return v;
}
inline uint32_t read_le32(const std::byte* p) {
    uint32_t v;
    std::memcpy(&v, p, 4);
    if constexpr (std::endian::native == std::endian::big) v = __builtin_bswap32(v);
    return v;
}
inline void write_le64(std::byte* p, uint64_t v) {
    if constexpr (std::endian::native == std::endian::big) v = __builtin_bswap64(v);
    std::memcpy(p, &v, 8);
}
inline void write_le32(std::byte* p, uint32_t v) {
    if constexpr (std::endian::native == std::endian::big) v = __builtin_bswap32(v);
    std::memcpy(p, &v, 4);
}
inline uint64_t xxh_round(uint64_t acc, uint64_t input) {
    acc += input * kP2;
    acc = rotl64(acc, 31);
    return acc * kP1;
}
inline uint64_t xxh_merge(uint64_t acc, uint64_t v) {
    acc ^= xxh_round(0, v);
    return acc * kP1 + kP4;
}

uint64_t xxh64(const std::byte* p, size_t len, uint64_t seed) {
    const std::byte* const end = p + len;
    uint64_t h;
    if (len >= 32) {
        uint64_t v1 = seed + kP1 + kP2, v2 = seed + kP2, v3 = seed, v4 = seed - kP1;
        const std::byte* const limit = end - 32;
        do {
            v1 = xxh_round(v1, read_le64(p));
            v2 = xxh_round(v2, read_le64(p + 8));
            v3 = xxh_round(v3, read_le64(p + 16));
            v4 = xxh_round(v4, read_le64(p + 24));
            p += 32;
        } while (p <= limit);
        h = rotl64(v1, 1) + rotl64(v2, 7) + rotl64(v3, 12) + rotl64(v4, 18);
        h = xxh_merge(h, v1);
        h = xxh_merge(h, v2);
        h = xxh_merge(h, v3);
        h = xxh_merge(h, v4);
    } else {
        h = seed + kP5;
    }
    h += (uint64_t)len;
    for (; p + 8 <= end; p += 8) {
        h ^= xxh_round(0, read_le64(p));
        h = rotl64(h, 27) * kP1 + kP4;
    }
    if (p + 4 <= end) {
        h ^= (uint64_t)read_le32(p) * kP1;
        h = rotl64(h, 23) * kP2 + kP3;
        p += 4;
    }
    for (; p < end; ++p) {
        h ^= (uint64_t)std::to_integer<uint8_t>(*p) * kP5;
        h = rotl64(h, 11) * kP1;
    }
    h ^= h >> 33;
    h *= kP2;
    h ^= h >> 29;
    h *= kP3;
    h ^= h >> 32;
    return h;
}

// "0123456789abcdef.kvb" -> hash; false for any other name.
bool parse_file_name(const std::string& name, uint64_t& hash) {
    if (name.size() != kHexDigits + std::strlen(kSuffix) || name.compare(kHexDigits, std::string::npos, kSuffix) != 0)
        return false;
    uint64_t h = 0;
    for (size_t i = 0; i < kHexDigits; ++i) {
        const char c = name[i];
        int d;
        if (c >= '0' && c <= '9') d = c - '0';
        else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
        else return false;
        h = h << 4 | (uint64_t)d;
    }
    hash = h;
    return true;
}

// ".0123456789abcdef.kvb.tmp-XXXXXX": AtomicFileWriter's temporary name for one of our files.
bool is_temp_name(const std::string& name) {
    uint64_t unused;
    const size_t tmp_at = 1 + kHexDigits + std::strlen(kSuffix);
    return name.size() > tmp_at + 5 && name[0] == '.' && name.compare(tmp_at, 5, ".tmp-") == 0 &&
           parse_file_name(name.substr(1, tmp_at - 1), unused);
}

// pread of exactly out.size() bytes; false on error or end of file.
bool pread_full(int fd, std::span<std::byte> out, uint64_t offset) {
    size_t done = 0;
    while (done < out.size()) {
        const size_t chunk = std::min<size_t>(out.size() - done, size_t(1) << 30);
        const ssize_t n = ::pread(fd, out.data() + done, chunk, (off_t)(offset + done));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        done += (size_t)n;
    }
    return true;
}

}  // namespace

uint64_t PrefixStore::checksum(std::span<const std::byte> bytes) { return xxh64(bytes.data(), bytes.size(), 0); }

std::string PrefixStore::file_name(uint64_t hash) { return strformat("%016llx", (unsigned long long)hash) + kSuffix; }

int64_t PrefixStore::file_bytes(size_t payload_bytes) const {
    return (int64_t)(kHeaderBytes + model_key_.size() + layout_key_.size() + sizeof(int32_t) * (size_t)block_size_ +
                     payload_bytes);
}

std::string PrefixStore::default_dir(const std::string& models_dir, const std::string& model_key,
                                     const std::string& layout_key) {
    std::string_view digest = model_key;
    for (std::string_view prefix : {"sha256:", "sha256-"})
        if (digest.substr(0, prefix.size()) == prefix) digest.remove_prefix(prefix.size());
    digest = digest.substr(0, 16);
    std::string key;
    for (char c : digest)
        key.push_back((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ? c : '_');
    if (key.empty()) key.push_back('_');
    return models_dir + "/kvcache/" + key + "-" + sha256_hex(std::string_view(layout_key)).substr(0, 8);
}

Result<std::unique_ptr<PrefixStore>> PrefixStore::open(const std::string& dir, const std::string& model_key,
                                                       const std::string& layout_key, int block_size,
                                                       int64_t max_bytes, int64_t max_queue_bytes) {
    namespace fs = std::filesystem;
    if (block_size < 1) return error(StatusCode::invalid_argument, strformat("prefix store: block_size %d < 1", block_size));
    if (max_bytes < 0 || max_queue_bytes < 0)
        return error(StatusCode::invalid_argument, "prefix store: max_bytes and max_queue_bytes must be >= 0");
    if (model_key.size() > kMaxKeyBytes || layout_key.size() > kMaxKeyBytes)
        return error(StatusCode::invalid_argument,
                     strformat("prefix store: model_key/layout_key longer than %zu bytes", kMaxKeyBytes));
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) return error(StatusCode::io_error, dir + ": cannot create the prefix store folder: " + ec.message());
    if (!fs::is_directory(dir, ec)) return error(StatusCode::io_error, dir + ": not a folder");

    std::unique_ptr<PrefixStore> s(new PrefixStore());
    s->dir_ = dir;
    s->model_key_ = model_key;
    s->layout_key_ = layout_key;
    s->block_size_ = block_size;
    s->max_bytes_ = max_bytes;
    s->max_queue_bytes_ = max_queue_bytes;

    const std::string lock_path = dir + "/.lock";
    s->lock_fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (s->lock_fd_ < 0)
        return error(StatusCode::io_error, strformat("%s: cannot open: %s", lock_path.c_str(), std::strerror(errno)));
    // Only the first store on the folder may delete temporary files: another live store's
    // writer may be in the middle of one.
    s->owns_dir_ = ::flock(s->lock_fd_, LOCK_EX | LOCK_NB) == 0;

    struct Found {
        uint64_t hash;
        int64_t file_bytes;
        struct timespec mtime;
    };
    std::vector<Found> found;
    std::vector<std::string> temps;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
        const std::string name = it->path().filename().string();
        uint64_t hash;
        if (parse_file_name(name, hash)) {
            struct stat st {};
            if (::lstat(it->path().c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
            found.push_back({hash, (int64_t)st.st_size, st.st_mtim});
        } else if (is_temp_name(name)) {
            temps.push_back(it->path().string());
        }
    }
    if (ec) return error(StatusCode::io_error, dir + ": cannot list the prefix store folder: " + ec.message());

    if (s->owns_dir_) {
        for (const std::string& p : temps)
            if (::unlink(p.c_str()) == 0) s->stats_.n_stale_temps_removed++;
    }
    // Least recently used first; ties by hash so the order is deterministic.
    std::sort(found.begin(), found.end(), [](const Found& a, const Found& b) {
        if (a.mtime.tv_sec != b.mtime.tv_sec) return a.mtime.tv_sec < b.mtime.tv_sec;
        if (a.mtime.tv_nsec != b.mtime.tv_nsec) return a.mtime.tv_nsec < b.mtime.tv_nsec;
        return a.hash < b.hash;
    });
    for (const Found& f : found) s->index_insert_locked(f.hash, f.file_bytes);
    std::vector<std::string> victims;
    s->make_room_locked(0, victims);
    for (const std::string& p : victims) ::unlink(p.c_str());

    s->writer_ = std::thread([p = s.get()] { p->run_writer(); });
    return s;
}

PrefixStore::~PrefixStore() {
    {
        std::lock_guard<std::mutex> lk(mu_);
        stopping_ = true;
    }
    work_cv_.notify_all();
    if (writer_.joinable()) writer_.join();  // the writer drains the queue before it exits
    if (lock_fd_ >= 0) ::close(lock_fd_);    // releases the flock
}

void PrefixStore::index_insert_locked(uint64_t hash, int64_t file_bytes) {
    auto [it, inserted] = index_.try_emplace(hash);
    if (!inserted) {
        stats_.disk_bytes -= it->second.file_bytes;
        lru_.erase(it->second.lru);
    } else {
        stats_.n_files++;
    }
    it->second.file_bytes = file_bytes;
    it->second.gen = next_gen_++;
    it->second.lru = lru_.insert(lru_.end(), hash);
    stats_.disk_bytes += file_bytes;
}

void PrefixStore::index_erase_locked(std::unordered_map<uint64_t, Entry>::iterator it) {
    stats_.disk_bytes -= it->second.file_bytes;
    stats_.n_files--;
    lru_.erase(it->second.lru);
    index_.erase(it);
}

void PrefixStore::make_room_locked(int64_t incoming, std::vector<std::string>& victims) {
    while (!lru_.empty() && stats_.disk_bytes + incoming > max_bytes_) {
        const uint64_t victim = lru_.front();
        index_erase_locked(index_.find(victim));
        victims.push_back(path_of(victim));
        stats_.n_evicted++;
    }
}

bool PrefixStore::contains(uint64_t hash) const {
    std::lock_guard<std::mutex> lk(mu_);
    return index_.count(hash) != 0 || queued_.count(hash) != 0;
}

bool PrefixStore::put(uint64_t hash, uint64_t parent, std::span<const int32_t> tokens,
                      std::span<const std::byte> payload) {
    const int64_t cost = (int64_t)(payload.size() + tokens.size_bytes());
    const bool fits_budget = file_bytes(payload.size()) <= max_bytes_;
    std::vector<std::byte> buf;
    {
        std::lock_guard<std::mutex> lk(mu_);
        const bool valid = tokens.size() == (size_t)block_size_;
        if (valid && (index_.count(hash) || queued_.count(hash))) return true;
        if (!valid || !fits_budget || stopping_ || stats_.queued_bytes + cost > max_queue_bytes_) {
            stats_.n_puts_dropped++;
            return false;
        }
        if (!spare_.empty()) {
            buf = std::move(spare_.back());
            spare_.pop_back();
            spare_bytes_ -= (int64_t)buf.capacity();
        }
    }
    // Copy outside the lock (megabytes for a real model's block), then check again.
    auto job = std::make_shared<Job>();
    job->hash = hash;
    job->parent = parent;
    job->tokens.assign(tokens.begin(), tokens.end());
    job->payload = std::move(buf);
    job->payload.assign(payload.begin(), payload.end());  // no allocation when a spare buffer fits
    {
        std::lock_guard<std::mutex> lk(mu_);
        if (index_.count(hash) || queued_.count(hash)) return true;
        if (stopping_ || stats_.queued_bytes + cost > max_queue_bytes_) {
            stats_.n_puts_dropped++;
            return false;
        }
        queue_.push_back(job);
        queued_.emplace(hash, std::move(job));
        stats_.queued_bytes += cost;
        stats_.n_queued++;
        stats_.n_puts++;
        n_enqueued_++;
    }
    work_cv_.notify_one();
    return true;
}

void PrefixStore::run_writer() {
    std::unique_lock<std::mutex> lk(mu_);
    for (;;) {
        work_cv_.wait(lk, [&] { return stopping_ || !queue_.empty(); });
        if (queue_.empty()) return;  // stopping, and everything is written
        const std::shared_ptr<Job> job = queue_.front();
        const int64_t bytes = file_bytes(job->payload.size());
        // A file already indexed (written by an earlier job or found at open) is not rewritten.
        const bool write = index_.count(job->hash) == 0;
        std::vector<std::string> victims;
        if (write) {
            make_room_locked(bytes, victims);
            stats_.disk_bytes += bytes;  // reserved while the file is written
        }
        lk.unlock();
        // Only this thread deletes evicted files or creates new ones, so unlinking a victim
        // cannot race with a new file of the same name.
        for (const std::string& p : victims) ::unlink(p.c_str());
        const Status st = write ? write_file(*job) : Status();
        lk.lock();
        if (write) {
            stats_.disk_bytes -= bytes;
            if (st.ok()) {
                index_insert_locked(job->hash, bytes);
                stats_.n_writes++;
            } else {
                stats_.n_write_errors++;
            }
        }
        queue_.pop_front();
        queued_.erase(job->hash);
        stats_.queued_bytes -= job->queued_bytes();
        stats_.n_queued--;
        n_written_++;
        // get() drops its references under mu_, so a count of 1 here means nobody reads the job.
        if (job.use_count() == 1 && spare_.size() < kMaxSpareBuffers &&
            spare_bytes_ + (int64_t)job->payload.capacity() <= kMaxSpareBytes) {
            spare_bytes_ += (int64_t)job->payload.capacity();
            spare_.push_back(std::move(job->payload));
        }
        idle_cv_.notify_all();
    }
}

Status PrefixStore::write_file(const Job& job) const {
    // Header, keys and tokens in one buffer; the payload is written from the job directly.
    std::vector<std::byte> head(kHeaderBytes + model_key_.size() + layout_key_.size() + job.tokens.size() * 4);
    std::byte* h = head.data();
    std::memcpy(h, kMagic, sizeof(kMagic));
    write_le32(h + 8, kFormatVersion);
    write_le32(h + 12, (uint32_t)job.tokens.size());
    write_le64(h + 16, job.hash);
    write_le64(h + 24, job.parent);
    write_le64(h + 32, job.payload.size());
    write_le32(h + 40, (uint32_t)model_key_.size());
    write_le32(h + 44, (uint32_t)layout_key_.size());
    write_le64(h + 48, checksum(job.payload));
    write_le64(h + kOffChecksumHeader, 0);
    std::byte* p = h + kHeaderBytes;
    std::memcpy(p, model_key_.data(), model_key_.size());
    p += model_key_.size();
    std::memcpy(p, layout_key_.data(), layout_key_.size());
    p += layout_key_.size();
    for (int32_t t : job.tokens) {
        write_le32(p, (uint32_t)t);
        p += 4;
    }
    write_le64(h + kOffChecksumHeader, checksum(head));

    HEARTH_ASSIGN(AtomicFileWriter out, AtomicFileWriter::create(path_of(job.hash)));
    HEARTH_TRY(out.write(head));
    HEARTH_TRY(out.write(job.payload));
    return out.commit();
}

PrefixStore::ReadResult PrefixStore::read_file(uint64_t hash, uint64_t parent, std::span<const int32_t> tokens,
                                               std::span<std::byte> payload_out) const {
    const std::string path = path_of(hash);
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno == ENOENT ? ReadResult::absent : ReadResult::io_error;
    struct Closer {
        int fd;
        ~Closer() { ::close(fd); }
    } closer{fd};

    struct stat st {};
    if (::fstat(fd, &st) != 0) return ReadResult::io_error;
    const uint64_t size = (uint64_t)st.st_size;
    std::byte fixed[kHeaderBytes];
    if (size < kHeaderBytes || !pread_full(fd, fixed, 0)) return ReadResult::corrupt;
    if (std::memcmp(fixed, kMagic, sizeof(kMagic)) != 0) return ReadResult::corrupt;
    const uint32_t version = read_le32(fixed + 8);
    const uint32_t n_tokens = read_le32(fixed + 12);
    const uint64_t payload_bytes = read_le64(fixed + 32);
    const uint32_t model_key_bytes = read_le32(fixed + 40), layout_key_bytes = read_le32(fixed + 44);
    // A later format may lay out everything after the version differently: not ours to judge.
    if (version != kFormatVersion) return ReadResult::mismatched;
    if (n_tokens > kMaxTokensInFile || model_key_bytes > kMaxKeyBytes || layout_key_bytes > kMaxKeyBytes)
        return ReadResult::corrupt;
    const uint64_t head_bytes = kHeaderBytes + (uint64_t)model_key_bytes + layout_key_bytes + 4ull * n_tokens;
    if (size < head_bytes || size - head_bytes != payload_bytes) return ReadResult::corrupt;  // truncated or extended

    std::vector<std::byte> head(head_bytes);
    std::memcpy(head.data(), fixed, kHeaderBytes);
    if (!pread_full(fd, std::span(head).subspan(kHeaderBytes), kHeaderBytes)) return ReadResult::corrupt;
    const uint64_t header_checksum = read_le64(head.data() + kOffChecksumHeader);
    write_le64(head.data() + kOffChecksumHeader, 0);
    if (checksum(head) != header_checksum) return ReadResult::corrupt;
    if (read_le64(head.data() + 16) != hash) return ReadResult::corrupt;  // the name lies

    const auto key_at = [&](size_t off, size_t n) { return std::string_view((const char*)head.data() + off, n); };
    if (key_at(kHeaderBytes, model_key_bytes) != model_key_ ||
        key_at(kHeaderBytes + model_key_bytes, layout_key_bytes) != layout_key_ || n_tokens != (uint32_t)block_size_ ||
        payload_bytes != payload_out.size())
        return ReadResult::mismatched;
    if (read_le64(head.data() + 24) != parent || tokens.size() != n_tokens) return ReadResult::collision;
    const std::byte* tp = head.data() + kHeaderBytes + model_key_bytes + layout_key_bytes;
    for (uint32_t i = 0; i < n_tokens; ++i)
        if ((int32_t)read_le32(tp + 4 * i) != tokens[i]) return ReadResult::collision;

    if (!pread_full(fd, payload_out, head_bytes)) return ReadResult::corrupt;
    if (checksum(payload_out) != read_le64(head.data() + 48)) return ReadResult::corrupt;
    ::futimens(fd, nullptr);  // mtime = now: the LRU order open() rebuilds after a restart
    return ReadResult::hit;
}

bool PrefixStore::get(uint64_t hash, uint64_t parent, std::span<const int32_t> tokens,
                      std::span<std::byte> payload_out) {
    std::shared_ptr<const Job> job;
    uint64_t gen = 0;
    {
        std::lock_guard<std::mutex> lk(mu_);
        if (tokens.size() != (size_t)block_size_) {
            stats_.n_misses++;
            return false;
        }
        if (auto q = queued_.find(hash); q != queued_.end()) {
            job = q->second;
        } else if (auto it = index_.find(hash); it != index_.end()) {
            gen = it->second.gen;
        } else {
            stats_.n_misses++;
            return false;
        }
    }

    if (job) {  // still queued: immutable, so it is read without the lock
        const bool hit = job->parent == parent && job->payload.size() == payload_out.size() &&
                         std::equal(tokens.begin(), tokens.end(), job->tokens.begin(), job->tokens.end());
        if (hit) std::memcpy(payload_out.data(), job->payload.data(), payload_out.size());
        std::lock_guard<std::mutex> lk(mu_);
        job.reset();  // under mu_: the writer recycles the payload only when it holds the last reference
        (hit ? stats_.n_hits : stats_.n_misses)++;
        return hit;
    }

    const ReadResult r = read_file(hash, parent, tokens, payload_out);
    std::lock_guard<std::mutex> lk(mu_);
    auto it = index_.find(hash);
    // Act on the index only when it still names the file that was read.
    const bool same = it != index_.end() && it->second.gen == gen;
    switch (r) {
        case ReadResult::hit:
            if (same) lru_.splice(lru_.end(), lru_, it->second.lru);
            stats_.n_hits++;
            return true;
        case ReadResult::corrupt:
            if (same) {
                index_erase_locked(it);
                ::unlink(path_of(hash).c_str());
                stats_.n_corrupt_removed++;
            }
            break;
        case ReadResult::mismatched:
            if (same) {
                index_erase_locked(it);
                stats_.n_mismatched++;
            }
            break;
        case ReadResult::absent:   // evicted or deleted behind our back
        case ReadResult::io_error: // unreadable: do not offer it again this run
            if (same) index_erase_locked(it);
            break;
        case ReadResult::collision:
            break;
    }
    stats_.n_misses++;
    return false;
}

void PrefixStore::flush() {
    std::unique_lock<std::mutex> lk(mu_);
    const uint64_t target = n_enqueued_;
    idle_cv_.wait(lk, [&] { return n_written_ >= target; });
}

PrefixStoreStats PrefixStore::stats() const {
    std::lock_guard<std::mutex> lk(mu_);
    return stats_;
}

}  // namespace hearth::runtime
