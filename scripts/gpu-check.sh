#!/usr/bin/env bash
# Builds hearth with CUDA on a GPU machine and runs the GPU tests and benchmarks in one go
# (issue 8). The GPU test machine reaches no package registry: the project's Debian libraries
# travel in .deps/ (made here by `../shared/gpu/debs.sh download` plus the extra packages
# below; see ../shared/gpu/README.md).
#
#   here:  ../shared/gpu/debs.sh download && (cd .deps/debs && apt-get download libbenchmark-dev libbenchmark1debian)
#   there: scripts/gpu-check.sh            (results and logs go to $OUT, or ./gpu-check-out)
#
# Fails if there is no GPU, if any backend test fails, or if a CUDA test was skipped.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-check-out}
mkdir -p "$OUT"
BUILD_DIR=${HEARTH_BUILD_DIR:-build-gpu}
status=0

{
  echo "== $(date -u +%FT%TZ) commit ${HEARTH_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo "unknown (no .git here; set HEARTH_COMMIT)")}$(git diff --quiet HEAD 2>/dev/null || echo ' + uncommitted changes')"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv 2>&1
  nvcc --version | tail -2
} | tee "$OUT/env.txt"

if [ -f .deps/debs.sh ]; then
  # shellcheck disable=SC1091
  source .deps/debs.sh unpack
fi

set -e
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DHEARTH_WERROR=ON -DHEARTH_CUDA=ON \
      -DHEARTH_NATIVE=OFF 2>&1 | tee "$OUT/configure.log" | grep -E "hearth:|Error" || true
time cmake --build "$BUILD_DIR" -j "$(nproc)" --target backend_tests cuda_matmul_bench 2>&1 | tail -n 5 | tee "$OUT/build.log"
set +e

# Every backend test; the CUDA ones must run, not skip.
"$BUILD_DIR/tests/backend_tests" --gtest_brief=0 2>&1 | tee "$OUT/backend_tests.log" | grep -E "^\[ *(info|FAILED|SKIPPED|PASSED) *\]|Failure"
[ "${PIPESTATUS[0]}" -eq 0 ] || { echo "backend_tests FAILED"; status=1; }
if grep -q "SKIPPED.*Cuda" "$OUT/backend_tests.log"; then echo "CUDA tests SKIPPED on the GPU machine"; status=1; fi
tail -n 3 "$OUT/backend_tests.log"

"$BUILD_DIR/bench/cuda_matmul_bench" 2>&1 | tee "$OUT/cuda_matmul_bench.txt" || { echo "cuda_matmul_bench FAILED"; status=1; }

echo "gpu-check: $([ $status -eq 0 ] && echo PASS || echo FAIL)"
exit $status
