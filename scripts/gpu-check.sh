#!/usr/bin/env bash
# Builds hearth with CUDA on a GPU machine and runs the GPU tests and benchmarks in one go
# (issue 8). The GPU test machine reaches no package registry: the project's Debian libraries
# travel in .deps/ (made here by `../shared/gpu/debs.sh download` plus the extra packages
# below; see ../shared/gpu/README.md).
#
#   here:  ../shared/gpu/debs.sh download && (cd .deps/debs && apt-get download libbenchmark-dev libbenchmark1debian)
#   there: scripts/gpu-check.sh            (results and logs go to $OUT, or ./gpu-check-out)
#          HEARTH_GPU_SANITIZE=memcheck,racecheck scripts/gpu-check.sh   (also compute-sanitizer)
#   with the device tool: run(command="HEARTH_COMMIT=<sha> scripts/gpu-check.sh", carry=[".deps", "build-testdata"])
#
# The CUDA decoder test (tests/model/cuda_decoder_test.cpp) needs the tiny models; ../shared is
# not copied to the GPU machine, so copy them into the git-ignored build-testdata/ here first:
#   mkdir -p build-testdata/models && cp ../shared/testdata/models/*.gguf build-testdata/models/   (30 MB)
# Knobs: HEARTH_GPU_MATMUL_BENCH=0 skips cuda_matmul_bench (=decode: only its decode-batch
# comparison of the int8 kernels, --decode); HEARTH_GPU_FORWARD_BENCH="preset:TYPE ..."
# picks the models of cuda_forward_bench (default: Llama-3.2-1B and Llama-3.1-8B Q4_K_M, synthesized
# on the GPU machine into $HEARTH_SYNTH_DIR, default /tmp/hearth-synth, never into $OUT), 0 skips it;
# HEARTH_GPU_FORWARD_ARGS adds arguments to it (e.g. "--batch 32": decode steps of 32 sequences).
# HEARTH_GPU_TTFT="preset:TYPE ..." also times one forward of a 10,000-token prompt per model (TTFT),
# and the same prompt through runtime::Engine (concurrency_bench).
# HEARTH_GPU_CMAKE_ARGS adds configure arguments; HEARTH_GPU_CUDA_ARCH the CUDA architectures
# (default 90: the H100/H200 machines; the project's default builds 80;86;89;90, 4x the nvcc time).
# HEARTH_GPU_VARIANTS="name:VAR=V,VAR=V ..." repeats the concurrency bench (unless
# HEARTH_GPU_CONCURRENCY=0) and, with HEARTH_GPU_VARIANT_FORWARD_ARGS set (" " for none), the
# forward bench with those arguments once per variant with those environment variables set,
# e.g. "plain:HEARTH_CUDA_GROUP=0,HEARTH_CUDA_PDL=0" (the decoder's knobs: model/cuda_decoder.cpp).
#
# Outputs (bundled into logs.tar.gz at the end, next to verdict.txt, env.txt and the benchmark
# summaries, unless HEARTH_GPU_KEEP_FILES=1): env.txt, configure/build logs, backend_tests.log,
# model_tests.log (CudaDecoder only),
# runtime_tests.log (EngineGpu only), concurrency_bench.txt (Engine streams on the GPU model),
# cuda_matmul_bench.txt (per-row figures and summary tables), cuda_forward_bench.txt (pp512 /
# tg128), cuda_sample_bench.txt (device top-k per call), cuda_attention_bench.txt (one layer of
# prompt attention), ttft.txt (HEARTH_GPU_TTFT), sass.txt.gz
# (the kernels' machine code), sanitizer.log.
# Fails if there is no GPU, if any backend or CUDA decoder test fails, or if a CUDA test was skipped.
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
# shellcheck disable=SC2086
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DHEARTH_WERROR=ON -DHEARTH_CUDA=ON \
      -DHEARTH_NATIVE=OFF -DCMAKE_CUDA_ARCHITECTURES="${HEARTH_GPU_CUDA_ARCH:-90}" ${HEARTH_GPU_CMAKE_ARGS:-} 2>&1 | tee "$OUT/configure.log" | grep -E "hearth:|Error" || true
# The whole log in build_full.log; compiler errors and the last lines on stdout and in build.log.
# HEARTH_GPU_TARGETS builds only these targets (e.g. "cuda_forward_bench" for a profiling run with
# HEARTH_GPU_TESTS=0, HEARTH_GPU_MATMUL_BENCH=0 and HEARTH_GPU_CONCURRENCY=0).
# shellcheck disable=SC2086
time cmake --build "$BUILD_DIR" -j "$(nproc)" --target ${HEARTH_GPU_TARGETS:-backend_tests cuda_matmul_bench model_tests \
      cuda_forward_bench runtime_tests concurrency_bench cuda_sample_bench cuda_attention_bench} > "$OUT/build_full.log" 2>&1 || { grep -E -A3 "error|FAILED" "$OUT/build_full.log" | head -n 40; false; }
tail -n 5 "$OUT/build_full.log" | tee "$OUT/build.log"
set +e
if [ -d build-testdata/models ]; then export HEARTH_TESTDATA=${HEARTH_TESTDATA:-$PWD/build-testdata}; fi

# HEARTH_GPU_TESTS=0 skips the tests (benchmark iterations only; the verdict then says so).
if [ "${HEARTH_GPU_TESTS:-1}" != 0 ]; then
# Every backend test; the CUDA ones must run, not skip.
# (Each log is written whole before it is summarized: a summary cut short by head must not
# stop tee, and with it the log, before the tests end.)
"$BUILD_DIR/tests/backend_tests" --gtest_brief=0 > "$OUT/backend_tests.log" 2>&1
rc=$?
grep -E "^\[ *(FAILED|SKIPPED|PASSED) *\]|Failure" "$OUT/backend_tests.log" | head -n 60
[ "$rc" -eq 0 ] || { echo "backend_tests FAILED"; status=1; }
if grep -q "SKIPPED.*Cuda" "$OUT/backend_tests.log"; then echo "CUDA tests SKIPPED on the GPU machine"; status=1; fi
tail -n 3 "$OUT/backend_tests.log"

# The CUDA decoder against the CPU model on the tiny test models (must run, not skip).
"$BUILD_DIR/tests/model_tests" --gtest_filter='CudaDecoder*' > "$OUT/model_tests.log" 2>&1
rc=$?
grep -E "^\[ *(FAILED|SKIPPED|PASSED) *\]|Failure|^  [a-z]" "$OUT/model_tests.log" | head -n 120
[ "$rc" -eq 0 ] || { echo "model_tests (CudaDecoder) FAILED"; status=1; }
if grep -q "SKIPPED.*CudaDecoder" "$OUT/model_tests.log"; then echo "CudaDecoder tests SKIPPED on the GPU machine"; status=1; fi

# runtime::Engine on the GPU model (tests/runtime/engine_gpu_test.cpp; must run, not skip).
"$BUILD_DIR/tests/runtime_tests" --gtest_filter='EngineGpu*' > "$OUT/runtime_tests.log" 2>&1
rc=$?
grep -E "^\[ *(FAILED|SKIPPED|PASSED) *\]|Failure|^  [a-zA-Z]" "$OUT/runtime_tests.log" | head -n 60
[ "$rc" -eq 0 ] || { echo "runtime_tests (EngineGpu) FAILED"; status=1; }
if grep -q "SKIPPED.*EngineGpu" "$OUT/runtime_tests.log"; then echo "EngineGpu tests SKIPPED on the GPU machine"; status=1; fi
# The same with every step run eagerly (no CUDA graph replays), for comparison only.
HEARTH_CUDA_GRAPHS=0 "$BUILD_DIR/tests/runtime_tests" --gtest_filter='EngineGpu*' > "$OUT/runtime_tests_nographs.log" 2>&1
echo "EngineGpu without CUDA graphs (informational): exit $?"; grep -E "^\[ *(FAILED|PASSED) *\]|^  N=|^  cold" "$OUT/runtime_tests_nographs.log" | head -n 12
# The same with full logits rows copied back and the top-k candidates selected on the host
# (HEARTH_CUDA_TOPK=0; by default the device selects them: model/cuda_decoder.cpp), for comparison.
HEARTH_CUDA_TOPK=0 "$BUILD_DIR/tests/runtime_tests" --gtest_filter='EngineGpu*' > "$OUT/runtime_tests_hosttopk.log" 2>&1
echo "EngineGpu with HEARTH_CUDA_TOPK=0 (informational): exit $?"; grep -E "^\[ *(FAILED|PASSED) *\]|Failure" "$OUT/runtime_tests_hosttopk.log" | head -n 12
fi

# Full per-row figures in the file; the summary tables (the end of the output) also on stdout.
if [ "${HEARTH_GPU_MATMUL_BENCH:-1}" = decode ]; then
  "$BUILD_DIR/bench/cuda_matmul_bench" --decode > "$OUT/cuda_matmul_bench.txt" 2>&1 || { echo "cuda_matmul_bench FAILED"; status=1; }
  cat "$OUT/cuda_matmul_bench.txt"
elif [ "${HEARTH_GPU_MATMUL_BENCH:-1}" != 0 ]; then
  "$BUILD_DIR/bench/cuda_matmul_bench" > "$OUT/cuda_matmul_bench.txt" 2>&1 || { echo "cuda_matmul_bench FAILED"; status=1; }
  sed -n '1,2p;/^## /,$p' "$OUT/cuda_matmul_bench.txt"
fi

# The device top-k selection's time per call (32 rows of a 128k vocabulary), into the log.
if [ "${HEARTH_GPU_TESTS:-1}" != 0 ] && [ -x "$BUILD_DIR/bench/cuda_sample_bench" ]; then
  "$BUILD_DIR/bench/cuda_sample_bench" > "$OUT/cuda_sample_bench.txt" 2>&1 || { echo "cuda_sample_bench FAILED"; status=1; }
  cat "$OUT/cuda_sample_bench.txt"
fi

# One layer of prompt attention (8B heads) at 512 and 10,000 tokens, into the log.
if [ "${HEARTH_GPU_TESTS:-1}" != 0 ] && [ -x "$BUILD_DIR/bench/cuda_attention_bench" ]; then
  "$BUILD_DIR/bench/cuda_attention_bench" > "$OUT/cuda_attention_bench.txt" 2>&1 || { echo "cuda_attention_bench FAILED"; status=1; }
  cat "$OUT/cuda_attention_bench.txt"
fi

# Whole-model pp512 / tg128 on synthesized models (written outside $OUT: they are GBs).
forward_models=${HEARTH_GPU_FORWARD_BENCH:-llama3.2-1b:Q4_K_M llama3.1-8b:Q4_K_M}
synth_dir=${HEARTH_SYNTH_DIR:-/tmp/hearth-synth}
if [ "$forward_models" != 0 ]; then
  mkdir -p "$synth_dir"
  # shellcheck disable=SC2086
  "$BUILD_DIR/bench/cuda_forward_bench" --dir "$synth_dir" ${HEARTH_GPU_FORWARD_ARGS:-} $forward_models \
    > "$OUT/cuda_forward_bench.txt" 2>&1 || { echo "cuda_forward_bench FAILED"; status=1; }
  cat "$OUT/cuda_forward_bench.txt"
fi
# Time to first token of one 10,000-token prompt (one forward), for HEARTH_GPU_TTFT="preset:TYPE ...".
if [ -n "${HEARTH_GPU_TTFT:-}" ]; then
  mkdir -p "$synth_dir"
  # shellcheck disable=SC2086
  "$BUILD_DIR/bench/cuda_forward_bench" --dir "$synth_dir" --pp 10000 --tg 0 --ctx 0 --reps 3 $HEARTH_GPU_TTFT \
    > "$OUT/ttft.txt" 2>&1 || { echo "cuda_forward_bench (TTFT) FAILED"; status=1; }
  grep -E "^\||device:" "$OUT/ttft.txt"
  # The same prompt through runtime::Engine (its default step budgets: prompt-only steps as large
  # as the model's prefill_step_tokens), three times: first token after submit.
  for m in $HEARTH_GPU_TTFT; do
    "$BUILD_DIR/bench/concurrency_bench" "$synth_dir/${m%%:*}-${m##*:}.gguf" -p 10000 -n 1 -c 10240 -s 1,1,1 -L 0 \
        >> "$OUT/ttft.txt" 2>&1 || { echo "concurrency_bench (TTFT) FAILED"; status=1; }
  done
  grep -E "^streams|budget" "$OUT/ttft.txt"
fi

# Concurrent streams through runtime::Engine on the synthesized models the forward bench wrote
# (llama-batched-bench's shape: 512-token prompts, 128 generated each).
# HEARTH_GPU_CONCURRENCY="preset:TYPE ..." (default: the forward bench's models), 0 skips it;
# HEARTH_GPU_CONCURRENCY_ARGS overrides the bench arguments.
conc_models=${HEARTH_GPU_CONCURRENCY:-$forward_models}
run_concurrency() {  # $1: label
  for m in $conc_models; do
    f="${HEARTH_SYNTH_DIR:-/tmp/hearth-synth}/${m%%:*}-${m##*:}.gguf"
    [ -f "$f" ] || { echo "concurrency_bench: $f missing (synthesized by cuda_forward_bench)"; continue; }
    echo "== concurrency_bench ($1)" | tee -a "$OUT/concurrency_bench.txt"
    # shellcheck disable=SC2086
    "$BUILD_DIR/bench/concurrency_bench" "$f" ${HEARTH_GPU_CONCURRENCY_ARGS:--p 512 -n 128 -c 1024 -s 1,4,16,32 -L 0} \
        2>&1 | tee -a "$OUT/concurrency_bench.txt"
    [ "${PIPESTATUS[0]}" -eq 0 ] || { echo "concurrency_bench FAILED"; status=1; }
  done
}
[ "$conc_models" != 0 ] && run_concurrency "this build"
# Variants: the same with environment variables set (before/after comparisons on one machine).
for v in ${HEARTH_GPU_VARIANTS:-}; do
  (
    IFS=, read -ra kv <<< "${v#*:}"
    for a in "${kv[@]}"; do export "${a?}"; done
    [ "$conc_models" != 0 ] && run_concurrency "${v%%:*}: ${v#*:}"
    if [ -n "${HEARTH_GPU_VARIANT_FORWARD_ARGS:-}" ] && [ "$forward_models" != 0 ]; then
      echo "== cuda_forward_bench (${v%%:*}: ${v#*:})" | tee -a "$OUT/cuda_forward_bench.txt"
      # shellcheck disable=SC2086
      "$BUILD_DIR/bench/cuda_forward_bench" --dir "${HEARTH_SYNTH_DIR:-/tmp/hearth-synth}" \
          $HEARTH_GPU_VARIANT_FORWARD_ARGS $forward_models 2>&1 | tee -a "$OUT/cuda_forward_bench.txt" | grep -E "tg@|^\|"
    fi
  )
done

# Optional: ncu over a few decode steps of one model (HEARTH_GPU_NCU="preset:TYPE", synthesized as
# above): per-kernel time and DRAM bytes at the card's own clocks, summarized by kernel and
# launch shape (achieved GB/s); the raw CSV goes to $OUT/ncu.csv. HEARTH_GPU_NCU_SKIP /
# HEARTH_GPU_NCU_COUNT choose the launches (defaults: past the prefill warm-up, ~2 tokens).
# HEARTH_GPU_NCU_BATCH=B profiles one decode step of B sequences instead (cuda_forward_bench
# --batch B --profile, after a 512-token prefill of each; ncu --profile-from-start off).
# HEARTH_GPU_NCU_ARGS adds cuda_forward_bench arguments to either form (later ones win), e.g.
# "--layers 4" (a cut of a large model) or, with HEARTH_GPU_NCU_SKIP=0, "--pp 10000 --tg 0" (a prefill).
if [ -n "${HEARTH_GPU_NCU:-}" ] && command -v ncu >/dev/null; then
  ncu_metrics=gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum,launch__grid_size,launch__block_size
  # shellcheck disable=SC2086
  if [ -n "${HEARTH_GPU_NCU_BATCH:-}" ]; then
    ncu --clock-control none --csv --page raw --print-units base --profile-from-start off --metrics "$ncu_metrics" \
        "$BUILD_DIR/bench/cuda_forward_bench" --dir "${HEARTH_SYNTH_DIR:-/tmp/hearth-synth}" --pp 0 --tg 0 --ctx 0 \
        --reps 1 --batch-steps 1 --batch "$HEARTH_GPU_NCU_BATCH" --profile ${HEARTH_GPU_NCU_ARGS:-} "$HEARTH_GPU_NCU" \
        > "$OUT/ncu.csv" 2> "$OUT/ncu.err" || echo "ncu FAILED (see ncu.err)"
  else
    ncu --clock-control none --csv --page raw --print-units base --launch-skip "${HEARTH_GPU_NCU_SKIP:-1400}" \
        --launch-count "${HEARTH_GPU_NCU_COUNT:-900}" --metrics "$ncu_metrics" \
        "$BUILD_DIR/bench/cuda_forward_bench" --dir "${HEARTH_SYNTH_DIR:-/tmp/hearth-synth}" --pp 16 --tg 4 --ctx 0 \
        --reps 1 ${HEARTH_GPU_NCU_ARGS:-} "$HEARTH_GPU_NCU" > "$OUT/ncu.csv" 2> "$OUT/ncu.err" || echo "ncu FAILED (see ncu.err)"
  fi
  python3 - "$OUT/ncu.csv" <<'PY' | tee "$OUT/ncu_summary.txt"
import csv, sys, collections
rows = [r for r in csv.reader(l for l in open(sys.argv[1]) if l.startswith('"'))]
if len(rows) < 3: sys.exit("ncu: no rows")
h = rows[0]; col = {n: h.index(n) for n in h}
num = lambda r, n: float(r[col[n]].replace(',', '') or 0)
by = collections.defaultdict(lambda: [0, 0.0, 0.0])
tot = 0.0
for r in rows[2:]:
    name = r[col["Kernel Name"]].split('(')[0].split('::')[-1] + ' grid ' + r[col["launch__grid_size"]]
    t = num(r, "gpu__time_duration.sum"); b = num(r, "dram__bytes_read.sum") + num(r, "dram__bytes_write.sum")
    e = by[name]; e[0] += 1; e[1] += t; e[2] += b; tot += t
print("kernel | launches | mean us | share of time | mean DRAM MB | GB/s")
for k, (n, t, b) in sorted(by.items(), key=lambda kv: -kv[1][1]):
    print(f"{k} | {n} | {t/n/1e3:.2f} | {100*t/tot:.1f} % | {b/n/1e6:.2f} | {b/t:.0f}")
PY
fi

# Optional: ncu's detailed sections (speed of light, memory, warp stalls, occupancy) for single
# int8 matmuls: HEARTH_GPU_NCU_MATMUL="TYPE:N_OUT:N_IN:TOKENS[:dp4a] ..." (cuda_matmul_bench
# --profile; text report in $OUT/ncu_matmul.txt).
if [ -n "${HEARTH_GPU_NCU_MATMUL:-}" ] && command -v ncu >/dev/null; then
  # shellcheck disable=SC2086
  ncu --profile-from-start off -k regex:mat --launch-skip-before-match 0 --section SpeedOfLight \
      --section MemoryWorkloadAnalysis --section WarpStateStats --section SchedulerStats --section Occupancy \
      --section LaunchStats --section ComputeWorkloadAnalysis --section SourceCounters --print-details all \
      "$BUILD_DIR/bench/cuda_matmul_bench" --profile $HEARTH_GPU_NCU_MATMUL > "$OUT/ncu_matmul.txt" 2>&1 \
    || echo "ncu (matmul) FAILED (see ncu_matmul.txt)"
  grep -E "matmul_mma_kernel|matvec_q8_kernel|Duration|DRAM Throughput|Memory Throughput|Compute \(SM\) Throughput|Achieved Occupancy|Registers Per|Stall|Warp Cycles Per Issued" "$OUT/ncu_matmul.txt" | head -n 120
fi

# The kernels' machine code, for the record (16-byte loads, HMMA/IDP4A, no local memory).
if command -v cuobjdump >/dev/null; then
  cuobjdump -sass "$BUILD_DIR/src/libhearth_backend_cuda.a" 2>/dev/null | gzip -c > "$OUT/sass.txt.gz" || true
fi

# Optional: the CUDA tests under compute-sanitizer (HEARTH_GPU_SANITIZE=1: memcheck, or tool
# names separated by commas: memcheck,racecheck,synccheck,initcheck), over
# HEARTH_GPU_SANITIZE_FILTER (default: all CUDA tests). Logs: $OUT/sanitizer.log.
if [ -n "${HEARTH_GPU_SANITIZE:-}" ] && command -v compute-sanitizer >/dev/null; then
  tools=$([ "$HEARTH_GPU_SANITIZE" = 1 ] && echo memcheck || echo "$HEARTH_GPU_SANITIZE")
  for tool in ${tools//,/ }; do
    echo "== compute-sanitizer --tool $tool" >> "$OUT/sanitizer.log"
    compute-sanitizer --tool "$tool" --error-exitcode 9 "$BUILD_DIR/tests/backend_tests" \
        --gtest_filter="${HEARTH_GPU_SANITIZE_FILTER:-*Cuda*}" >> "$OUT/sanitizer.log" 2>&1 \
      || { echo "compute-sanitizer $tool FAILED"; status=1; }
    grep -E "ERROR SUMMARY|RACECHECK SUMMARY|PASSED|FAILED" "$OUT/sanitizer.log" | tail -n 3
  done
fi

verdict="gpu-check: $([ $status -eq 0 ] && echo PASS || echo FAIL)$([ "${HEARTH_GPU_TESTS:-1}" = 0 ] && echo ' (tests skipped: HEARTH_GPU_TESTS=0)')"
echo "$verdict" | tee "$OUT/verdict.txt"
# The device tool brings back at most 8 files from $OUT: every output goes into logs.tar.gz, and
# only the verdict, the environment and the benchmark summaries stay beside it (HEARTH_GPU_KEEP_FILES=1
# keeps every file as it is).
if [ "${HEARTH_GPU_KEEP_FILES:-0}" != 1 ]; then
  (cd "$OUT" && tar -czf logs.tar.gz --exclude=logs.tar.gz -- * && \
     find . -maxdepth 1 -type f ! -name logs.tar.gz ! -name verdict.txt ! -name env.txt ! -name cuda_forward_bench.txt \
          ! -name concurrency_bench.txt ! -name ttft.txt ! -name ncu_summary.txt -delete) \
    || echo "gpu-check: could not bundle the logs (they stay as they are)"
fi
exit $status
