#!/usr/bin/env bash
# The test command: installs dependencies, builds, and runs every test (unit
# tests, then the kernel tests, which need root; the fuzz targets for a
# bounded time each). With CI=true a kernel test that cannot run is a
# failure, not a skip.
#
# Then the unit and kernel tests run again in an ASan+UBSan build
# (build-asan/, -DIMDSWATCH_SANITIZE=ON; the kernel tests there start that
# build's agent). Every sanitized process writes its reports under
# build-asan/sanitizer/; any report fails the run, even one from an agent
# that a test only stopped. IMDSWATCH_SANITIZE_TESTS=0 skips this stage
# (~15 minutes on 2 cores: the build, then 7-9 minutes of tests).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "run as root: the kernel tests load BPF programs and build network namespaces" >&2
  exit 1
fi
scripts/install-deps.sh
scripts/build.sh
rc=0
# CI shows only the tail of this script's output, so the failures of every
# stage are printed again at the very end, each with the tail of its output.
failed=()
record_failures() {
  local dir=$1 list=$1/Testing/Temporary/LastTestsFailed.log
  [ -s "$list" ] || return 0
  while IFS=: read -r _ name || [ -n "$name" ]; do failed+=("$dir $name"); done <"$list"
}
print_failures() {
  [ ${#failed[@]} -gt 0 ] || return 0
  echo "== failed tests, again (full output above)" >&2
  local entry dir name
  for entry in "${failed[@]}"; do
    dir=${entry%% *} name=${entry#* }
    echo "== $dir: $name" >&2
    awk -v t="$name" '$0 ~ "^[0-9]+/[0-9]+ Test: " && $NF == t {on=1; next}
                      on && /^<end of output>/ {exit}
                      on' "$dir/Testing/Temporary/LastTest.log" | tail -40 >&2
  done
}
ctest --test-dir build --output-on-failure --timeout 900 "$@" || rc=$?
record_failures build

if [ "${IMDSWATCH_SANITIZE_TESTS:-1}" != 0 ]; then
  echo "== unit and kernel tests under ASan+UBSan (build-asan/)"
  BUILD_DIR=build-asan scripts/build.sh -DIMDSWATCH_SANITIZE=ON
  reports="$PWD/build-asan/sanitizer"
  rm -rf "$reports"
  mkdir -p "$reports"
  export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:log_path=$reports/asan"
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$reports/ubsan"
  # (the deploy checks inspect the release binary's linked libraries: not this build's)
  ctest --test-dir build-asan --output-on-failure --timeout 900 -L 'unit|kernel' -LE deploy "$@" || rc=$?
  record_failures build-asan
  if [ -n "$(ls -A "$reports")" ]; then
    echo "sanitizer reports (build-asan/sanitizer/):" >&2
    for f in "$reports"/*; do
      echo "== $f" >&2
      head -60 "$f" >&2
    done
    rc=1
  else
    echo "sanitizers: no reports"
  fi
fi
print_failures
exit "$rc"
