// The transfer engine of pulls, over libcurl: small texts (manifests, Hub listings) and
// content-addressed blobs, from a primary source and its mirrors, on networks that drop, stall
// and restart.
//
// Sources. A Source is a base URL ("https://registry.ollama.ai", "https://huggingface.co");
// a file is fetched at base + path, so a mirror is any server laid out like the source it
// mirrors (HEARTH_MIRRORS, store/registry.h). Sources are tried in order: a failure or stall
// moves a transfer to the next one at once; only after every source has failed in a row does
// it back off (exponentially, up to TransferOptions::backoff_max) before going round again.
// Transient failures (connection refused or dropped, timeouts, stalls, 5xx, 408, 429) are
// retried up to max_failures times in a row per part (a transfer that made progress starts
// counting again); other 4xx answers drop that source for this transfer. Proxies are libcurl's:
// http_proxy, https_proxy, all_proxy and no_proxy from the environment, never overridden here.
//
// Blobs on disk, while they download (Ollama's layout, so either program resumes the other's):
//
//   blobs/sha256-<hex>-partial      the data, preallocated to the blob's size; bytes land at
//                                   their own offsets
//   blobs/sha256-<hex>-partial-<N>  part N's state, JSON {"N", "Offset", "Size", "Completed"}:
//                                   bytes [Offset, Offset + Completed) are on disk (synced before
//                                   the state says so)
//
// A blob of at least parallel_min_bytes is fetched as n_parts HTTP Range requests at once.
// When every part is complete the data file is hashed; a matching SHA-256 renames it to
// blobs/sha256-<hex> (fsynced, then the folder), so a blob is visible only once verified. A
// mismatch deletes the partial files; the blob is then fetched again from the next source,
// and with none left the download fails (corrupt, both digests in the message).
//
// Concurrency: one process at a time downloads a given blob. The partial data file carries an
// exclusive flock; a second downloader (another thread, another pull, another process) waits
// for it and then finds the finished blob, or resumes where the first stopped.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "base/status.h"

namespace hearth::store {

struct Source {
    std::string base_url;              // "https://host[:port]", no trailing '/'
    std::vector<std::string> headers;  // sent to this source only ("Authorization: Bearer ...")
};

struct TransferOptions {
    int64_t parallel_min_bytes = 64ll << 20;  // blobs at least this large go in parts
    int n_parts = 4;                          // Range requests in flight for such a blob
    int max_failures = 6;                     // transient failures in a row before giving up
    std::chrono::milliseconds backoff_first{500}, backoff_max{10000};
    std::chrono::milliseconds stall_timeout{30000};  // no byte for this long: drop and retry
    std::chrono::milliseconds connect_timeout{15000};
    std::chrono::milliseconds progress_interval{200};  // how often the progress callback runs
    // Plain http:// URLs may be used. Without it only https is spoken, also across redirects.
    bool allow_http = false;
    // Polled by the thread that called download_blob / fetch_text (about every 50 ms); true
    // stops the transfer (partial files stay, for a later resume) with an io_error "cancelled".
    std::function<bool()> cancelled;
};

struct TransferProgress {
    int64_t completed = 0;    // bytes of the blob on disk (resumed bytes included)
    int64_t total = 0;
    double bytes_per_s = 0;   // over the last few seconds of this transfer; 0 before it is known
    double eta_s = -1;        // -1: unknown
};
using ProgressFn = std::function<void(const TransferProgress&)>;

// GET base + path as text from the first source that answers 200 (at most max_bytes).
// `headers` go to every source (Accept). A 404 from the primary (sources[0]) is final: not_found
// "<url>: not found (HTTP 404)", with the body's error text when it has one; other 4xx are final
// for their source. Errors after every source failed name each source and why.
Result<std::string> fetch_text(const std::vector<Source>& sources, const std::string& path,
                               const std::vector<std::string>& headers, const TransferOptions& opts,
                               int64_t max_bytes = 64ll << 20);

// Bytes [start, start + length) of base + path, from the first source that answers (a 206
// for exactly that range, or a 200 whose body is the whole file). `ranged` (when given) says
// which: false for a server that ignored the Range header, whose first bytes are then what is
// returned (a 200 to a range that does not start at 0 is read up to the range and cut there,
// so a caller that can do without should stop at the first answer that was not ranged). Fewer
// than `length` bytes come back only when the file ends first. The transfer retries as
// fetch_text does, up to opts.max_failures; errors are fetch_text's (not_found for a 404 from
// the primary).
Result<std::string> fetch_range(const std::vector<Source>& sources, const std::string& path, int64_t start,
                                int64_t length, const TransferOptions& opts, bool* ranged = nullptr);

// Makes blobs_dir/sha256-<hex> hold the `size` bytes whose SHA-256 is `digest` ("sha256:<hex>"),
// fetched from base + path of `sources`, resuming partial files left by an earlier attempt.
// An existing blob of the right size is taken as is. `progress` runs on the calling thread.
// Errors: not_found (no source has it), corrupt (digest or size mismatch: the partial files are
// gone; when another source answered after a mismatch and then failed, still corrupt, naming
// both), io_error (network exhausted, disk, cancelled: the partial files stay for a resume
// unless not one byte arrived), invalid_argument (a malformed digest).
Status download_blob(const std::string& blobs_dir, const std::string& digest, int64_t size,
                     const std::vector<Source>& sources, const std::string& path, const TransferOptions& opts,
                     const ProgressFn& progress);

}  // namespace hearth::store
