#!/usr/bin/env bash
# The test command: installs dependencies, builds, and runs every test (unit
# tests, then the kernel tests, which need root). With CI=true a kernel test
# that cannot run is a failure, not a skip.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "run as root: the kernel tests load BPF programs and build network namespaces" >&2
  exit 1
fi
scripts/install-deps.sh
scripts/build.sh
ctest --test-dir build --output-on-failure --timeout 900 "$@"
