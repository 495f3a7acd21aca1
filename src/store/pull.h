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
#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "base/status.h"
#include "store/download.h"
#include "store/registry.h"
#include "store/store.h"

namespace hearth::store {

struct PullOptions {
    RegistryOptions registry;  // registry.insecure: plain http for registries (--insecure)
    TransferOptions transfer;

    // RegistryOptions::from_env() (HF_ENDPOINT, HF_TOKEN, HEARTH_MIRRORS) with `insecure`, and
    // the default transfer options.
    static Result<PullOptions> from_env(bool insecure);
};

struct PullEvent {
    std::string status;
    std::string digest;                  // "sha256:<hex>" on a blob's progress; "" otherwise
    int64_t total = 0, completed = 0;    // bytes of that blob
    double bytes_per_s = 0, eta_s = -1;  // the blob's transfer rate and time left (-1 unknown)

    // Ollama's wire shape: {"status"}, or {"status","digest","total","completed"} for a blob.
    nlohmann::ordered_json to_json() const;
};
using PullEventFn = std::function<void(const PullEvent&)>;

// Pulls `name` into `store`; events run on the calling thread. Errors: those of
// parse_remote_name, fetch_remote and download_blob (not_found for an unknown model, corrupt for
// a digest mismatch, io_error when the network gave out or opts.transfer.cancelled said so:
// partial files then stay for the next pull to resume). On any error no manifest is written.
Status pull_model(Store& store, std::string_view name, const PullOptions& opts, const PullEventFn& on_event);

}  // namespace hearth::store
