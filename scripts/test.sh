#!/usr/bin/env bash
# Sets up a fresh Debian/Ubuntu machine, builds hearth and runs every test: the unit and
# reference-vector tests (ctest), the runtime tests under TSan and ASan+UBSan, and a bounded
# run of the GGUF fuzzer.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
./scripts/build.sh
ctest --test-dir build --output-on-failure -j "$(nproc)" --timeout 900
./scripts/sanitize.sh
./scripts/fuzz.sh "${HEARTH_FUZZ_SECONDS:-60}"
