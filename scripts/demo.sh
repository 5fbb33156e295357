#!/usr/bin/env bash
# Local demo: installs dependencies, builds, then builds a tiny "node" out of
# network namespaces and cgroups — three pods, a routing node, a metadata
# stand-in at 169.254.169.254 and a Kubernetes API stand-in — starts the agent
# and real clients (curl, botocore, the Ruby SDK), and shows per-pod metrics.
# Runs until Ctrl-C (or DEMO_SECONDS), then removes everything it made.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
if [ "$(id -u)" -ne 0 ]; then echo "run as root (BPF and namespaces)" >&2; exit 1; fi
scripts/install-deps.sh
scripts/build.sh

prefix=iwdemo
work=$(mktemp -d /tmp/imdswatch-demo.XXXXXX)
port=${IMDSWATCH_PORT:-10169}
kube_port=18443
cgroot=$(awk '$9 == "cgroup2" {print $5; exit}' /proc/self/mountinfo)
node=demo-node
pids=()
cgroups=()

cleanup() {
  set +e
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
  for cg in "${cgroups[@]}"; do
    for p in $(cat "$cg/cgroup.procs" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
    sleep 0.1; rmdir "$cg" "$(dirname "$cg")" "$(dirname "$(dirname "$cg")")" "$(dirname "$(dirname "$(dirname "$cg")")")" 2>/dev/null
  done
  tests/fixtures/topology.sh down "$prefix" 3 >/dev/null 2>&1
  rm -rf "$work"
  echo "demo cleaned up"
}
trap cleanup EXIT INT TERM

tests/fixtures/topology.sh up "$prefix" 3 >/dev/null
mkdir -p "$work/pods"

# a pod: API object + kubelet-style cgroup; prints the cgroup dir
make_pod() { # name namespace deployment
  local uid cid cg
  uid=$(cat /proc/sys/kernel/random/uuid)
  cid=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
  /usr/bin/python3 tests/fixtures/make_pod.py --name "$1-6c9f8d7b5-$RANDOM" --namespace "$2" --uid "$uid" \
    --node "$node" --container "app=containerd://$cid" --owner-kind ReplicaSet --owner-name "$3-6c9f8d7b5" \
    --label pod-template-hash=6c9f8d7b5 --out "$work/pods/$uid.json"
  cg="$cgroot/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${uid//-/_}.slice/cri-containerd-$cid.scope"
  mkdir -p "$cg"
  cgroups+=("$cg")
  echo "$cg"
}

# run a client loop in pod K's netns and cgroup
in_pod() { # k cgroup cmd...
  local k=$1 cg=$2; shift 2
  ( echo $BASHPID > "$cg/cgroup.procs"; exec nsenter --net=/run/netns/$prefix-p$k "$@" ) &
  pids+=($!)
}

# the metadata stand-in lives in the metadata host's netns
nsenter --net=/run/netns/$prefix-imds /usr/bin/python3 tests/fixtures/imds_standin.py \
  --listen 169.254.169.254:80 --listen '[fd00:ec2::254]:80' --cred-lifetime 900 \
  --ready-file "$work/imds.ready" 2>"$work/imds.log" &
pids+=($!)
/usr/bin/python3 tests/fixtures/kube_api_standin.py --pods-dir "$work/pods" --listen 127.0.0.1:$kube_port \
  --ready-file "$work/kube.ready" 2>"$work/kube.log" &
pids+=($!)

web=$(make_pod web shop web)
reports=$(make_pod reports analytics reports)
billing=$(make_pod billing payments billing)

build/imdswatch --kube-api-server http://127.0.0.1:$kube_port --node-name $node \
  --web.listen-address 127.0.0.1:$port 2>"$work/agent.log" &
pids+=($!)
echo "waiting for the agent (loading BPF programs)..."
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.2; done

# shop/web: botocore every 2 s (IMDSv2, healthy)
in_pod 1 "$web" bash -c "while true; do /usr/bin/python3 $root/tests/fixtures/clients/botocore_creds.py >/dev/null; sleep 2; done"
# analytics/reports: the Ruby SDK, plus an old script still on IMDSv1
in_pod 2 "$reports" bash -c "while true; do ruby $root/tests/fixtures/clients/ruby_creds.rb >/dev/null; curl -s http://169.254.169.254/latest/meta-data/instance-id >/dev/null; sleep 3; done"
# payments/billing: fetches credentials on every request (a refresh storm)
in_pod 3 "$billing" bash -c "while true; do /usr/bin/python3 $root/tests/fixtures/clients/botocore_creds.py --count 5 >/dev/null; done"

echo
echo "imdswatch is watching. Metrics: curl -s http://127.0.0.1:$port/metrics | grep ^imds_"
sleep 8
curl -s "http://127.0.0.1:$port/metrics" | grep -E '^imds_requests_total' | sort
echo
echo "live calls (imdswatch trace) for a few seconds:"
timeout 12 build/imdswatch trace --kube-api-server http://127.0.0.1:$kube_port --node-name $node 2>/dev/null || true
if [ -n "${DEMO_SECONDS:-}" ]; then sleep "$DEMO_SECONDS"; exit 0; fi
echo
echo "Ctrl-C to stop and clean up."
while true; do sleep 3600; done
