// `hearth pull` / POST /api/pull: a model name -> its manifest and blobs in the store.
//
// Order of work, and what a crash at any point leaves (nothing half-visible):
//   1. resolve the name and fetch the manifest (or build it, for the Hub: store/registry.h);
//   2. download each blob not already in blobs/ (store/download.h: resumable partial files,
//      visible only once its SHA-256 matched); a blob already present with the right size is
//      kept: blobs only ever land in place after verification;
//   3. under the store's lock (<root>/.lock, the one Store::copy/remove take), check every blob
//      is still there (a concurrent `rm` may have pruned one: it is fetched again), write the
//      manifest atomically (temp file, fsync, rename), then delete blobs that only the tag's
//      previous manifest used (as Ollama prunes).
// The lock is held for step 3 only, so pulls of different models run in parallel; two pulls of
// one blob take turns on its partial file.
//
// Progress goes out as Ollama's status sequence: "pulling manifest"; per blob
// {"status":"pulling <first 12 hex>","digest","total","completed"} (repeated as bytes arrive);
// "verifying sha256 digest"; "writing manifest"; "success".
//
// Fit before the download. Between "pulling manifest" and the first blob, the weights' GGUF
// header is read (from the blob or its partial download when the store has the first bytes,
// else with HTTP Range requests: a first small one, grown until the metadata and tensor infos
// are in) and store/fit.h's report is computed for this machine: one more status,
// {"status":"fits in memory: needs 5.1 GiB of 30.2 GiB available","fit":{...}} or
// {"status":"does not fit: needs 40.1 GiB, 30.2 GiB available; try Q4_K_M (needs 20.3 GiB)",...}
// ("fit" is fit_report_json). With FitCheck::require a model that does not fit is refused
// before any blob byte is downloaded. A source that ignores Range (200 with the whole file), a
// weights blob that is not GGUF, a header over fit_max_header_bytes or a network error while
// reading it skip the check: the pull goes on as without it (with require, a status says why
// the fit is unknown).
#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "base/status.h"
#include "store/download.h"
#include "store/fit.h"
#include "store/registry.h"
#include "store/store.h"

namespace hearth::store {

enum class FitCheck {
    off,      // no header is read
    warn,     // report the fit as a status; download either way (hearth pull, /api/pull)
    require,  // refuse a model that does not fit (--check-fit, "check_fit": true)
};

struct PullOptions {
    RegistryOptions registry;  // registry.insecure: plain http for registries (--insecure)
    TransferOptions transfer;
    // Off here, so a library caller (and a test counting the bytes a registry served) gets only
    // the download; from_env turns the warning on, as the CLI and the daemon use it.
    FitCheck fit_check = FitCheck::off;
    FitOptions fit;                                // the context, KV type and parallelism to check
    int64_t fit_first_bytes = 64ll << 10;          // the first Range request (a non-GGUF blob stops here)
    int64_t fit_max_header_bytes = 128ll << 20;    // a larger GGUF header: no check

    // RegistryOptions::from_env() (HF_ENDPOINT, HF_TOKEN, HEARTH_MIRRORS) with `insecure`, the
    // default transfer options, and fit_check warn.
    static Result<PullOptions> from_env(bool insecure);
};

struct PullEvent {
    std::string status;
    std::string digest;                  // "sha256:<hex>" on a blob's progress; "" otherwise
    int64_t total = 0, completed = 0;    // bytes of that blob
    double bytes_per_s = 0, eta_s = -1;  // the blob's transfer rate and time left (-1 unknown)
    nlohmann::ordered_json fit;          // the fit status: fit_report_json; null on the others

    // Ollama's wire shape: {"status"}, or {"status","digest","total","completed"} for a blob;
    // the fit status adds {"fit": {...}}.
    nlohmann::ordered_json to_json() const;
};

// The status line of a fit report: "fits in memory: needs X of Y available", or "does not fit:
// needs X, Y available; try Q4_K_M (needs Z)" (or "try num_ctx N" when no smaller quantization
// fits but a shorter context does).
std::string fit_status_line(const FitReport& r);

// Will `name` fit, before anything is downloaded: the name resolved and its manifest fetched
// (or the Hub repository listed) as a pull does, then only the weights' GGUF header read, from
// the store when it holds those bytes, else with Range requests; nothing is written to the
// store. Errors: those of parse_remote_name and fetch_remote (not_found for an unknown model),
// unsupported (the weights are not a GGUF file, the source ignores Range requests, the header is
// larger than opts.fit_max_header_bytes), corrupt (a GGUF header that does not parse), io_error
// (network).
Result<FitReport> fit_remote(const Store& store, std::string_view name, const PullOptions& opts);
using PullEventFn = std::function<void(const PullEvent&)>;

// Pulls `name` into `store`; events run on the calling thread. Errors: those of
// parse_remote_name, fetch_remote and download_blob (not_found for an unknown model, corrupt for
// a digest mismatch, io_error when the network gave out or opts.transfer.cancelled said so:
// partial files then stay for the next pull to resume). On any error no manifest is written.
Status pull_model(Store& store, std::string_view name, const PullOptions& opts, const PullEventFn& on_event);

}  // namespace hearth::store
