#!/usr/bin/env bash
# imdswatch benchmark: one command, ~6 minutes on 2 cores (plus a first build).
# Prints a table (figure, value, target, pass/fail) and exits 0 whatever the
# verdicts: it reports, it does not gate. See bench/README.md.
#
#   sudo bench/run.sh                 everything
#   sudo bench/run.sh --parts 1b,1a   some parts (1a 1b 2 3 4); bench/bench.py --help for the knobs
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
build="${IMDSWATCH_BENCH_BUILD:-$repo/build-bench}"

if [[ $EUID -ne 0 ]]; then
  echo "bench/run.sh: run as root (loads BPF programs, sets kernel.bpf_stats_enabled)" >&2
  exit 1
fi
need=()
for p in iperf3 libbenchmark-dev bpftool clang cmake; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if ((${#need[@]})); then
  "$repo/scripts/install-deps.sh"
fi

log="$build/bench-build.log"
mkdir -p "$build"
echo "[bench] building the agent into $build (log: $log)" >&2
{
  [[ -f "$build/CMakeCache.txt" ]] || cmake -S "$repo" -B "$build" -DCMAKE_BUILD_TYPE=Release
  cmake --build "$build" -j"$(nproc)" --target imdswatch
  cmake -S "$here" -B "$build/bench" -DCMAKE_BUILD_TYPE=Release -DIMDSWATCH_BUILD="$build"
  cmake --build "$build/bench" -j"$(nproc)"
} >"$log" 2>&1 || { tail -30 "$log" >&2; echo "bench/run.sh: build failed" >&2; exit 1; }

# bounded: every load in bench.py has its own time limit; this is the backstop
timeout --signal=INT --kill-after=30 1200 /usr/bin/python3 "$here/bench.py" --build "$build" "$@"
