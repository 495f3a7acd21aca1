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
    tsan) flags="-fsanitize=thread" ;;
    asan) flags="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer" ;;
    *) echo "sanitize.sh: unknown kind $kind (tsan or asan)" >&2; exit 2 ;;
  esac
  dir=build-$kind
  # Warnings are not errors here: sanitizer instrumentation changes what gcc warns about.
  cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DHEARTH_CUDA=OFF -DHEARTH_BENCH=OFF \
    -DCMAKE_CXX_FLAGS="$flags" -DCMAKE_EXE_LINKER_FLAGS="$flags" >/dev/null
  cmake --build "$dir" -j "$(nproc)" --target runtime_tests
  echo "sanitize.sh: runtime tests under $kind"
  TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" ASAN_OPTIONS="detect_leaks=1" \
    UBSAN_OPTIONS="halt_on_error=1 print_stacktrace=1" "./$dir/tests/runtime_tests" --gtest_brief=1
done
