#!/usr/bin/env bash
# Sets up a fresh Debian/Ubuntu machine, builds hearth and runs every test: the unit and
# reference-vector tests and the daemon driven by the official JavaScript clients (ctest; the
# kernel and model tests again at the AVX2 and scalar dispatch levels), the runtime tests under
# TSan and ASan+UBSan, and a bounded run of the GGUF fuzzer.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
./scripts/build.sh
# The official openai and ollama JavaScript clients, at the versions package-lock.json pins,
# for server_tests' JsClients.* (they fail without them).
npm ci --no-audit --no-fund --prefix tests/server/js
ctest --test-dir build --output-on-failure -j "$(nproc)" --timeout 900
# The CPU kernels dispatch on the machine's features: run their tests and the models again
# with the dispatch capped at AVX2 and at the scalar references, so every path is covered.
for level in avx2 scalar; do
  HEARTH_CPU=$level ctest --test-dir build --output-on-failure -j "$(nproc)" --timeout 900 \
    -R 'Simd|Matmul|Golden|KvType|Batch'
done
./scripts/sanitize.sh
./scripts/fuzz.sh "${HEARTH_FUZZ_SECONDS:-60}"
