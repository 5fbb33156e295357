#!/usr/bin/env bash
# Installs what imdswatch needs to build, test and run its demo (Debian 12).
set -euo pipefail
packages=(
  # build (prometheus-cpp only for the tests; yaml-cpp, OpenSSL, libxcrypt: --web.config.file)
  build-essential cmake pkg-config clang llvm libbpf-dev bpftool libelf-dev zlib1g-dev
  prometheus-cpp-dev libcivetweb-dev libspdlog-dev libfmt-dev nlohmann-json3-dev libcurl4-openssl-dev
  libcli11-dev libgtest-dev libgmock-dev
  libyaml-cpp-dev libssl-dev libcrypt-dev
  # tests and demo: namespaces, real metadata clients
  iproute2 curl python3 python3-botocore ruby ruby-aws-sdk-core libcap2-bin prometheus python3-yaml
  # tests of --web.config.file: certificates made at test time
  openssl
  # fuzzing: clang's libFuzzer and sanitizer runtimes
  libclang-rt-14-dev
  # benchmark (bench/run.sh; tests/bench builds it)
  iperf3 libbenchmark-dev linux-perf
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
