#!/usr/bin/env python3
"""Two builds of the agent side by side, on the very same events.

    sudo bench/pair.py A_AGENT B_AGENT [--load connect|rr80|sdk|conn] [--rounds 6] [--count N]

Both agents run at once and attach at the cgroup v2 root; every hook then
runs both builds' programs on each event, and bpf_stats splits their time by
program id. The build attached first meets colder lines and pays more, so
each round restarts both in the other order, and rounds are summed in pairs.
This cancels the machine's drift from hour to hour, which alternating whole
runs of bench/run.sh does not (bench/README.md, "A paired method").

Loads (all loopback; needs bench_net from build-bench/bench, run.sh builds it):
  connect  N connects and closes to [::1] and 127.0.0.1 (other traffic: connect4/6, sockops)
  rr80     a 64-byte ping-pong with 127.0.0.1:80 for N/1000 s (other traffic on a watched port)
  sdk      N metadata requests, botocore's credential fetch (3 per connection)
  conn     N metadata requests, one GET per connection
Prints ns per run of each program, per build, summed over the rounds.
"""
import argparse
import contextlib
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import (REPO, PY, Procs, agent_prog_ids, free_port, port_free, prog_stats, run_json,  # noqa: E402
                   set_bpf_stats, stop_process, wait_healthy)


def start_agent(procs, exe, endpoint, name, log):
    port = free_port()
    p = procs.start(name, [exe, "--no-kube", "--endpoint", endpoint, "--web.listen-address",
                           f"127.0.0.1:{port}", "--log-level", "warn"], stdout=log, stderr=log)
    wait_healthy(p, port, name, 60)
    return p


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--load", choices=("connect", "rr80", "sdk", "conn"), default="connect")
    ap.add_argument("--rounds", type=int, default=6, help="an even number: each order as often")
    ap.add_argument("--count", type=int, default=5000)
    ap.add_argument("--bin", default=os.path.join(REPO, "build-bench/bench"))
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root")
    net = os.path.join(args.bin, "bench_net")
    out = os.path.join(REPO, "build-bench/bench/out")
    os.makedirs(out, exist_ok=True)
    log = open(os.path.join(out, "pair.log"), "w")
    procs = Procs()
    try:
        host, port = "127.0.0.2", 80
        if not (port_free(80, "127.0.0.2") and port_free(80, "127.0.0.1")):
            host, port = "127.0.0.1", free_port()
        ready = os.path.join(out, "pair.standin.ready")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(ready)
        procs.start("standin", [PY, os.path.join(REPO, "tests/fixtures/imds_standin.py"), "--listen",
                                f"{host}:{port}", "--ready-file", ready], stdout=log, stderr=log)
        echo_port = free_port()
        listens = ["--listen", f"127.0.0.1:{echo_port}", "--listen", f"[::1]:{echo_port}"]
        if args.load == "rr80":
            if not port_free(80):
                raise SystemExit("rr80 needs 127.0.0.1:80 free")
            listens += ["--listen", "127.0.0.1:80"]
        echo = procs.start("echo", [net, "server"] + listens, stdout=subprocess.PIPE, stderr=log, text=True)
        if echo.stdout.readline().strip() != "ready":
            raise SystemExit("echo server did not start")
        while not os.path.exists(ready):
            time.sleep(0.1)
        endpoint = f"{host}:{port}"

        def load():
            if args.load == "connect":
                for target in (f"[::1]:{echo_port}", f"127.0.0.1:{echo_port}"):
                    run_json([net, "connect", "--connect", target, "--count", str(args.count)])
            elif args.load == "rr80":
                run_json([net, "rr", "--connect", "127.0.0.1:80", "--seconds", str(max(1, args.count // 1000))])
            else:
                run_json([net, "imds", "--connect", endpoint, "--requests", str(args.count), "--mode", args.load])

        sums = {"a": {}, "b": {}}
        with open("/proc/sys/kernel/bpf_stats_enabled") as f:
            stats_before = f.read().strip() == "1"
        for r in range(args.rounds):
            order = ("a", "b") if r % 2 == 0 else ("b", "a")
            agents = {}
            for k in order:  # the first started attaches first: its programs run first
                agents[k] = start_agent(procs, getattr(args, k), endpoint, f"agent_{k}", log)
            ids = {k: agent_prog_ids(p.pid) for k, p in agents.items()}
            load()  # warm-up: both builds' maps and code once
            set_bpf_stats(True)
            s0 = prog_stats()
            load()
            s1 = prog_stats()
            set_bpf_stats(stats_before)
            line = []
            for k in ("a", "b"):
                for pid, name in ids[k].items():
                    if pid not in s0 or pid not in s1:
                        continue
                    d_ns, d_cnt = s1[pid][0] - s0[pid][0], s1[pid][1] - s0[pid][1]
                    if d_cnt:
                        acc = sums[k].setdefault(name, [0, 0])
                        acc[0] += d_ns
                        acc[1] += d_cnt
                        line.append(f"{k}:{name} {d_ns / d_cnt:.0f}")
            print(f"round {r + 1} ({order[0]} first): " + ", ".join(line), flush=True)
            for p in agents.values():
                stop_process(p)
        print(f"\nns per run, {args.rounds} rounds summed ({args.load}, count {args.count})")
        print(f"{'program':<24} {'a':>10} {'b':>10} {'b/a':>7} {'runs':>10}")
        for name in sorted(set(sums["a"]) | set(sums["b"])):
            a = sums["a"].get(name, [0, 0])
            b = sums["b"].get(name, [0, 0])
            if not a[1] or not b[1]:
                continue
            ra, rb = a[0] / a[1], b[0] / b[1]
            print(f"{name:<24} {ra:>10.1f} {rb:>10.1f} {rb / ra:>7.3f} {a[1]:>10}")
    finally:
        procs.stop_all()


if __name__ == "__main__":
    main()
