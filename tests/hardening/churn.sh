#!/usr/bin/env bash
# churn.sh CGROUP_ROOT UID_PREFIX FIRST COUNT URL [LINGER]
# Pods FIRST..FIRST+COUNT-1, one after the other: each gets a kubelet-style
# cgroup (systemd driver, besteffort, containerd), makes one metadata call
# with curl from inside it, and is removed LINGER seconds (default 0) after
# the call. A shell does this rather than the
# test binary: forking a small process is what a kubelet's runtime does, and
# much cheaper than forking a sanitized gtest process.
# The uid is UID_PREFIX-0000-4000-8000-<12 hex of the index>. Exit 1 if any
# call did not get a 200.
set -u
root=$1 prefix=$2 first=$3 count=$4 url=$5 linger=${6:-0}
qos="$root/kubepods.slice/kubepods-besteffort.slice"
failed=0
for ((i = first; i < first + count; i++)); do
  uid=$(printf '%s-0000-4000-8000-%012x' "$prefix" "$i")
  pod="$qos/kubepods-besteffort-pod${uid//-/_}.slice"
  ctr="$pod/cri-containerd-$(printf '%064x' "$i").scope"
  mkdir -p "$ctr"
  code=$(echo 0 >"$ctr/cgroup.procs" && exec curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$url")
  [[ $code == 200 ]] || { echo "pod $i: curl got '$code'" >&2; failed=1; }
  [[ $linger == 0 ]] || sleep "$linger"
  for dir in "$ctr" "$pod"; do
    for _ in 1 2 3 4 5 6 7 8 9 10; do rmdir "$dir" 2>/dev/null && break; sleep 0.01; done
  done
done
exit "$failed"
