#!/usr/bin/env bash
# Builds the runtime tests under ThreadSanitizer and under AddressSanitizer + UBSan and runs
# them: the serving runtime is concurrent, so races and lifetime bugs must fail CI, not hide.
#   scripts/sanitize.sh [tsan|asan ...]     (default: both)
set -euo pipefail
cd "$(dirname "$0")/.."
kinds=("$@")
(( ${#kinds[@]} )) || kinds=(tsan asan)
for kind in "${kinds[@]}"; do
  case $kind in
    # Under TSan every memory access of the kernels is instrumented (10-20x slower): the tests
    # that only repeat heavy single-threaded compute (output equivalence at N = 64, 2,000-token
    # prompts) run in the plain and ASan builds; the threaded ones (stress, cancel, the prefix
    # store's writer, the model manager, the embedder) run here.
    tsan) flags="-fsanitize=thread"
          filter="-EngineTest.ConcurrentSequencesMatchAlone*:EngineTest.DiskPrefixCache*:EngineTest.ShortPromptDoesNotWait*" ;;
    asan) flags="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
          filter="*" ;;
    *) echo "sanitize.sh: unknown kind $kind (tsan or asan)" >&2; exit 2 ;;
  esac
  dir=build-$kind
  # Warnings are not errors here: sanitizer instrumentation changes what gcc warns about.
  cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DHEARTH_CUDA=OFF -DHEARTH_BENCH=OFF \
    -DCMAKE_CXX_FLAGS="$flags" -DCMAKE_EXE_LINKER_FLAGS="$flags" >/dev/null
  cmake --build "$dir" -j "$(nproc)" --target runtime_tests
  echo "sanitize.sh: runtime tests under $kind"
  TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" ASAN_OPTIONS="detect_leaks=1" \
    UBSAN_OPTIONS="halt_on_error=1 print_stacktrace=1" "./$dir/tests/runtime_tests" --gtest_brief=1 --gtest_filter="$filter"
done
