#!/usr/bin/env bash
# Fuzzes the GGUF reader: builds gguf_fuzz with clang (libFuzzer + ASan + UBSan) in its own
# build folder, then runs it for a bounded time over a working copy of fuzz/corpus/.
# Exits non-zero on any finding (crash, sanitizer report, failed check, leak, timeout, OOM);
# the reproducing input is left under fuzz/findings/ (git-ignored).
#
#   scripts/fuzz.sh [seconds] [extra libFuzzer flags...]
#     seconds                 total fuzzing time (default 60)
#     HEARTH_FUZZ_BUILD=dir   build folder (default: build-fuzz/ in the repository, git-ignored)
#     HEARTH_FUZZ_JOBS=n      ninja parallelism (default 2)
# Reproduce a finding: <build>/fuzz/gguf_fuzz <artifact file>
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
seconds=${1:-60}
shift $(( $# > 0 ? 1 : 0 ))
build=${HEARTH_FUZZ_BUILD:-$root/build-fuzz}
run=$build/fuzz-run

if ! command -v clang++ >/dev/null; then
  echo "fuzz.sh: clang++ not found (libFuzzer needs clang)" >&2
  exit 2
fi

# Tests and benches off: the fuzz build needs neither GTest nor their sources. Warnings are
# not errors here: clang may warn where the gcc build is clean, and that is not a finding.
CC=clang CXX=clang++ cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DHEARTH_FUZZ=ON -DHEARTH_TESTS=OFF -DHEARTH_BENCH=OFF -DHEARTH_WERROR=OFF >/dev/null
ninja -C "$build" -j "${HEARTH_FUZZ_JOBS:-2}" gguf_fuzz

# The working corpus persists between runs (it grows as the fuzzer finds new paths); the
# committed seeds are refreshed into it each time and never modified.
findings_dir=$root/fuzz/findings
mkdir -p "$run/corpus" "$findings_dir"
cp "$root"/fuzz/corpus/* "$run/corpus/"
marker=$(mktemp)
trap 'rm -f "$marker"' EXIT

status=0
"$build/fuzz/gguf_fuzz" "$run/corpus" \
  -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=2048 -timeout=10 \
  -dict="$root/fuzz/gguf.dict" -artifact_prefix="$findings_dir/" -print_final_stats=1 "$@" || status=$?

new_findings=$(find "$findings_dir" -type f -newer "$marker")
if (( status != 0 )) || [[ -n $new_findings ]]; then
  echo "fuzz.sh: FAILED (libFuzzer exit $status); reproducers:" >&2
  echo "${new_findings:-  (none written)}" >&2
  exit 1
fi
echo "fuzz.sh: no findings in ${seconds}s"
