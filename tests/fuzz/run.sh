#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz/CMakeLists.txt, with clang) and
# runs each for a bounded time from its checked-in seed corpus.
#
#   tests/fuzz/run.sh [--build-dir DIR] [--seconds N] [--build-only | --no-build] [TARGET...]
#
# TARGET is fuzz_http_request, http_request, ... (default: all). DIR defaults
# to build-fuzz/ at the repository root; --seconds to $FUZZ_SECONDS or 30.
# Per target it prints one line of figures (executions, executions per
# second, coverage, corpus) and exits non-zero on any crash, sanitizer
# report, broken invariant, leak, timeout (10 s per input) or out-of-memory
# (2 GiB); the input is then saved under DIR/artifacts/ and the report is
# printed. Reproduce one with: DIR/fuzz_TARGET DIR/artifacts/fuzz_TARGET-crash-...
# New inputs found go to DIR/corpus/TARGET (fresh every run unless
# FUZZ_KEEP_CORPUS=1); the checked-in seeds under tests/fuzz/corpus/ are only read.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build="$root/build-fuzz"
seconds=${FUZZ_SECONDS:-30}
do_build=1
do_run=1
targets=()
while (($#)); do
  case "$1" in
    --build-dir) build=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --build-only) do_run=0; shift ;;
    --no-build) do_build=0; shift ;;
    -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "run.sh: unknown flag $1" >&2; exit 2 ;;
    *) targets+=("fuzz_${1#fuzz_}"); shift ;;
  esac
done
if ((${#targets[@]} == 0)); then
  for f in "$here"/fuzz_*.cpp; do targets+=("$(basename "$f" .cpp)"); done
fi

if ((do_build)); then
  for tool in clang clang++; do
    command -v "$tool" >/dev/null || { echo "run.sh: $tool missing (scripts/install-deps.sh installs clang, libclang-rt-14-dev)" >&2; exit 1; }
  done
  start=$(date +%s)
  cmake -S "$here" -B "$build" -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ >/dev/null
  cmake --build "$build" -j"$(nproc)" -- --no-print-directory >"$build/build.log" 2>&1 || {
    grep -E "error|Error" "$build/build.log" | head -40 >&2
    echo "run.sh: fuzz build failed (full log: $build/build.log)" >&2
    exit 1
  }
  echo "fuzz build: ${#targets[@]} targets in $(($(date +%s) - start)) s ($build)"
fi
((do_run)) || exit 0

dict_for() {
  case "$1" in
    fuzz_http_request|fuzz_http_response) echo "$here/dict/http.dict" ;;
    fuzz_pod_json|fuzz_watch_stream) echo "$here/dict/json.dict" ;;
    fuzz_cgroup_path) echo "$here/dict/cgroup_path.dict" ;;
  esac
}

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
mkdir -p "$build/artifacts" "$build/logs"
failed=()
for t in "${targets[@]}"; do
  bin="$build/$t"
  seeds="$here/corpus/${t#fuzz_}"
  if [[ ! -x $bin ]]; then
    echo "$t: FAILED: $bin not built" >&2
    failed+=("$t")
    continue
  fi
  if [[ ! -d $seeds ]] || [[ -z $(ls -A "$seeds") ]]; then
    echo "$t: FAILED: no seed corpus at $seeds" >&2
    failed+=("$t")
    continue
  fi
  work="$build/corpus/${t#fuzz_}"
  [[ ${FUZZ_KEEP_CORPUS:-0} == 1 ]] || rm -rf "$work"
  mkdir -p "$work"
  log="$build/logs/$t.log"
  args=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
        -artifact_prefix="$build/artifacts/$t-")
  dict=$(dict_for "$t")
  [[ -n $dict ]] && args+=(-dict="$dict")
  rc=0
  "$bin" "${args[@]}" "$work" "$seeds" >"$log" 2>&1 || rc=$?
  seeds_n=$(ls "$seeds" | wc -l)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1 || true)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1 || true)
  rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log" | tail -1 || true)
  last=$(grep -E '^#[0-9]+.*cov: ' "$log" | tail -1 || true)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  corp=$(sed -n 's/.* corp: \([0-9]*\/[0-9a-zA-Z]*\).*/\1/p' <<<"$last")
  init=$(grep -E 'INITED' "$log" | sed -n 's/.* cov: \([0-9]*\).*/\1/p' | head -1 || true)
  printf '%s: execs=%s exec/s=%s time=%ss cov=%s (seeds alone %s) ft=%s corpus=%s seeds=%s peak_rss=%sMB\n' \
    "$t" "${execs:-?}" "${rate:-?}" "$seconds" "${cov:-?}" "${init:-?}" "${ft:-?}" "${corp:-?}" "$seeds_n" "${rss:-?}"
  if ((rc != 0)) || grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:|invariant broken' "$log"; then
    echo "$t: FAILED (exit $rc); report:" >&2
    grep -nE 'ERROR:|runtime error:|invariant broken|SUMMARY|Test unit written|^    #[0-9]' "$log" | head -40 >&2 || true
    echo "full log: $log" >&2
    failed+=("$t")
  fi
done
if ((${#failed[@]})); then
  echo "fuzz: ${#failed[@]} of ${#targets[@]} targets failed: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz: ${#targets[@]} targets, 0 crashes, 0 sanitizer reports"
