#!/usr/bin/python3
"""imdswatch benchmark driver (run through bench/run.sh; see bench/README.md).

Measures, in one run, side by side:
  1a  live kernel cost per program run (kernel.bpf_stats_enabled) of every imds_* program beside an
      EMPTY program of the same type on the same hook, under loopback load (iperf3, TCP RR, connects,
      UDP drops, metadata requests against tests/fixtures/imds_standin.py);
  1b  BPF_PROG_TEST_RUN (repeat 1,000,000) of the cgroup_skb programs beside the empty ones;
  2   other traffic (TCP RR, iperf3 bulk) with the agent / nothing / the empty programs attached,
      alternating for N rounds;
  3   BPF time per metadata request, and metadata request latency agent vs none vs empty (alternating);
  4   userspace: events/s (Google Benchmark), RSS and /metrics at 1,000 / 10,000 containers, idle CPU.
Prints a table (figure, value, target, pass/fail) and writes every raw figure to OUT/results.json.
Exits 0 whatever the verdicts (it reports, it does not gate).
"""

import argparse
import contextlib
import datetime
import json
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = "/usr/bin/python3"


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port(family=socket.AF_INET, host="127.0.0.1"):
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_free(port, host="127.0.0.1"):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
            return True
        except OSError:
            return False


def cgroup2_root():
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            if fields[sep + 1] == "cgroup2" and fields[3] == "/":
                return fields[4]
    raise SystemExit("no cgroup v2 mount")


def run_json(cmd, timeout=120):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=timeout).stdout
    return json.loads(out.strip().splitlines()[-1])


def median(v):
    return statistics.median(v) if v else float("nan")


def quartiles(v):
    q = statistics.quantiles(v, n=4, method="inclusive")
    return q[0], q[2]


def spread(v):
    lo, hi = quartiles(v)
    return f"{median(v):.3f} [{lo:.3f}..{hi:.3f}] ({min(v):.3f}..{max(v):.3f})"


def stop_process(p):
    """SIGTERM, then SIGKILL after 10 s."""
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def wait_healthy(p, port, what, limit_s, hint=""):
    """Until the agent process p answers /healthz on 127.0.0.1:port; SystemExit if it exits or takes longer."""
    t0 = time.monotonic()
    while True:
        if p.poll() is not None:
            raise SystemExit(f"{what} exited ({p.returncode}){hint}")
        with contextlib.suppress(Exception):
            if urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).status == 200:
                return time.monotonic() - t0
        if time.monotonic() - t0 > limit_s:
            raise SystemExit(f"{what} did not become healthy in {limit_s} s")
        time.sleep(0.2)


def agent_prog_ids(pid):
    """id -> name of the BPF programs a process holds (from /proc/PID/fdinfo)."""
    out = subprocess.run(["bpftool", "prog", "show", "-j"], check=True, capture_output=True, text=True).stdout
    names = {p["id"]: p.get("name", "?") for p in json.loads(out)}
    ids = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/fd/{fd}") != "anon_inode:bpf-prog":
                continue
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                for line in f:
                    if line.startswith("prog_id:"):
                        i = int(line.split()[1])
                        ids[i] = names.get(i, "?")
    return ids


def set_bpf_stats(on):
    with open("/proc/sys/kernel/bpf_stats_enabled", "w") as f:
        f.write("1" if on else "0")


class Procs:
    """Processes this run started; stopped (by pid) in reverse order."""

    def __init__(self):
        self.procs = []

    def start(self, name, cmd, **kw):
        p = subprocess.Popen(cmd, **kw)
        self.procs.append((name, p))
        return p

    def stop_all(self):
        for name, p in reversed(self.procs):
            stop_process(p)


class Controller:
    """bench_ctl serve: attaches/detaches the agent's, the empty and the counting floor's programs."""

    SETS = ("agent", "empty", "floor")

    def __init__(self, procs, exe, cgroup, agent_pid, endpoint):
        self.p = procs.start("bench_ctl", [exe, "serve", "--cgroup", cgroup, "--agent-pid", str(agent_pid),
                                           "--endpoint", endpoint],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        ready = self.p.stdout.readline()
        if not ready.startswith("ready"):
            raise SystemExit(f"bench_ctl did not start: {ready!r}")
        self.ids = json.loads(self.cmd("ids"))
        self.state = None

    def cmd(self, line):
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()
        reply = self.p.stdout.readline().strip()
        if reply.startswith("error"):
            raise SystemExit(f"bench_ctl {line}: {reply}")
        return reply

    def only(self, *sets):
        """Exactly these sets attached, in this order (a hook runs programs in attach order)."""
        if self.state == sets:
            return
        for s in self.SETS:
            self.cmd(f"detach {s}")
        for s in sets:
            self.cmd(f"attach {s}")
        self.state = sets


def prog_stats():
    """id -> (run_time_ns, run_cnt), from bpftool prog show -j."""
    out = subprocess.run(["bpftool", "prog", "show", "-j"], check=True, capture_output=True, text=True).stdout
    return {p["id"]: (p.get("run_time_ns", 0), p.get("run_cnt", 0)) for p in json.loads(out)}


def delta(before, after, ids):
    return {name: (after[i][0] - before[i][0], after[i][1] - before[i][1]) for name, i in ids.items()}


def add(acc, d):
    for k, (ns, cnt) in d.items():
        a = acc.setdefault(k, [0, 0])
        a[0] += ns
        a[1] += cnt


class Bench:
    def __init__(self, args):
        self.args = args
        self.build = args.build
        self.bin = os.path.join(args.build, "bench")
        self.out = args.out
        os.makedirs(self.out, exist_ok=True)
        self.procs = Procs()
        self.rows = []  # (section, figure, value, target, verdict)
        self.results = {"date": "2026-11-25", "started": datetime.datetime.now().isoformat(timespec="seconds")}
        self.cgroup = cgroup2_root()

    # ---- reporting ----

    def row(self, section, figure, value, target="", ok=None):
        verdict = "" if ok is None else ("PASS" if ok else "FAIL")
        self.rows.append((section, figure, value, target, verdict))

    def table(self):
        w = [max(len(r[i]) for r in self.rows + [("", "figure", "value", "target", "result")]) for i in range(1, 5)]
        lines = []
        fmt = f"{{:<{w[0]}}} | {{:>{w[1]}}} | {{:<{w[2]}}} | {{}}"
        lines.append(fmt.format("figure", "value", "target", "result"))
        lines.append("-" * (sum(w) + 16))
        section = None
        for s, fig, val, tgt, v in self.rows:
            if s != section:
                lines.append(f"== {s}")
                section = s
            lines.append(fmt.format(fig, val, tgt, v))
        return "\n".join(lines)

    # ---- setup ----

    def machine(self):
        info = {
            "kernel": platform.release(),
            "cpus": os.cpu_count(),
            "cpu_model": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), ""),
            "mem_mib": int(next(l.split()[1] for l in open("/proc/meminfo") if l.startswith("MemTotal"))) // 1024,
            "loadavg_start": open("/proc/loadavg").read().split()[:3],
            "debian": open("/etc/debian_version").read().strip(),
            "cgroup_root": self.cgroup,
        }
        out = subprocess.run(["bpftool", "cgroup", "show", self.cgroup, "-j"], capture_output=True, text=True).stdout
        info["foreign_programs_at_root"] = [p.get("name", "?") for p in json.loads(out.strip() or "[]")]
        self.results["machine"] = info
        log(f"machine: {info}")

    def start(self):
        a = self.args
        self.ports = {"imds": free_port(), "web": free_port(), "echo": free_port(), "iperf": free_port(),
                      "closed": free_port()}
        # The stand-in listens where production endpoints do, on port 80 (all of them: 169.254.169.254,
        # fd00:ec2::254, ECS 169.254.170.2, EKS Pod Identity 169.254.170.23), at a loopback address of
        # its own, so 127.0.0.1:80 stays free for other (non-metadata) traffic to port 80.
        self.imds_host = "127.0.0.1"
        if port_free(80, "127.0.0.2") and port_free(80, "127.0.0.1"):
            self.imds_host, self.ports["imds"] = "127.0.0.2", 80
        logs = {n: open(os.path.join(self.out, f"{n}.log"), "w") for n in ("standin", "agent", "echo", "iperf3")}
        ready = os.path.join(self.out, "standin.ready")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(ready)
        self.procs.start("standin", [PY, os.path.join(REPO, "tests/fixtures/imds_standin.py"), "--listen",
                                     f"{self.imds_host}:{self.ports['imds']}", "--ready-file", ready],
                         stdout=logs["standin"], stderr=logs["standin"])
        listens = ["--listen", f"127.0.0.1:{self.ports['echo']}", "--listen", f"[::1]:{self.ports['echo']}"]
        self.port80 = port_free(80)
        if self.port80:
            listens += ["--listen", "127.0.0.1:80"]
        echo = self.procs.start("echo", [os.path.join(self.bin, "bench_net"), "server"] + listens,
                                stdout=subprocess.PIPE, stderr=logs["echo"], text=True)
        if echo.stdout.readline().strip() != "ready":
            raise SystemExit("echo server did not start (see echo.log)")
        self.procs.start("iperf3", ["iperf3", "-s", "-B", "127.0.0.1", "-p", str(self.ports["iperf"])],
                         stdout=logs["iperf3"], stderr=logs["iperf3"])
        self.agent = self.procs.start(
            "agent", [a.agent, "--no-kube", "--endpoint", f"{self.imds_host}:{self.ports['imds']}",
                      "--web.listen-address", f"127.0.0.1:{self.ports['web']}", "--log-level", "warn"] + a.agent_arg,
            stdout=logs["agent"], stderr=logs["agent"])
        startup = wait_healthy(self.agent, self.ports["web"], "the agent", 90, f"; see {self.out}/agent.log")
        self.results["agent_startup_s"] = round(startup, 2)
        while not os.path.exists(ready):
            time.sleep(0.1)
        self.results["imds_endpoint"] = f"{self.imds_host}:{self.ports['imds']}"
        log(f"agent up in {self.results['agent_startup_s']} s (pid {self.agent.pid}); ports {self.ports}, stand-in at "
            f"{self.results['imds_endpoint']}")
        self.ctl = Controller(self.procs, os.path.join(self.bin, "bench_ctl"), self.cgroup, self.agent.pid,
                              self.results["imds_endpoint"])
        self.results["take"] = self.ctl.cmd("take")
        self.kept = [n.replace("imds_kfree_raw", "imds_kfree_skb")
                     for n in self.results["take"].split("kept_by_agent", 1)[1].split()]
        self.ctl.only()
        self.agent_ids = self.ctl.ids["agent"]
        if "imds_kfree_raw" in self.agent_ids:  # the raw_tp filter (--forwarding-drops.raw-tp, kernels < 5.17)
            self.agent_ids["imds_kfree_skb"] = self.agent_ids.pop("imds_kfree_raw")
        self.empty_ids = self.ctl.ids["empty"]
        self.floor_ids = self.ctl.ids["floor"]
        log(f"controller: {self.results['take']}; agent programs {self.agent_ids}")

    def stats_enabled(self, on):
        set_bpf_stats(on)

    # ---- loads ----

    def net(self, *args, timeout=120):
        return run_json([os.path.join(self.bin, "bench_net")] + [str(a) for a in args], timeout=timeout)

    def iperf(self, seconds):
        out = subprocess.run(["iperf3", "-c", "127.0.0.1", "-p", str(self.ports["iperf"]), "-t", str(seconds), "-J"],
                             capture_output=True, text=True, timeout=seconds + 30).stdout
        return json.loads(out)["end"]["sum_received"]["bits_per_second"] / 1e9

    def imds(self, requests, mode="sdk", pad=0, out=None):
        args = ["imds", "--connect", f"{self.imds_host}:{self.ports['imds']}", "--requests", requests, "--mode", mode,
                "--pad", pad]
        if out:
            args += ["--out", out]
        return self.net(*args)

    CONNECT_BATCHES = 10

    def other_load(self, seconds, ids, batches):
        """The other-traffic load; the connects in CONNECT_BATCHES batches per family, each batch's program
        stats appended to batches[hook] (why batches: connect_cost)."""
        echo4, echo6 = f"127.0.0.1:{self.ports['echo']}", f"[::1]:{self.ports['echo']}"
        r = {"iperf_gbps": self.iperf(seconds)}
        r["rr4"] = self.net("rr", "--connect", echo4, "--seconds", seconds / 2)
        r["rr6"] = self.net("rr", "--connect", echo6, "--seconds", seconds / 4)
        for hook, echo in (("connect4", echo4), ("connect6", echo6)):
            for _ in range(self.CONNECT_BATCHES):
                s0 = prog_stats()
                r.setdefault(hook, []).append(
                    self.net("connect", "--connect", echo, "--count", self.args.connects // self.CONNECT_BATCHES))
                batches.setdefault(hook, []).append(delta(s0, prog_stats(), ids))
        r["udp_drop"] = self.net("udp-drop", "--connect", f"127.0.0.1:{self.ports['closed']}", "--count", 100000)
        return r

    @staticmethod
    def connect_cost(batches_by_order, prog):
        """ns per run of a connect program, robust to preemption: the median over its batches in each attach
        order, averaged over the orders. A connect program runs in its task with interrupts on (migrate_disable
        only), so bpf_stats also counts time spent in an interrupt, its softirqs or preempted: one such batch
        read 390 ns a run where its neighbours read 120, and in a sum over 10,000 runs such batches swung the
        ratio 0.75-1.65x from run to run with the same code (2026-12-05)."""
        medians = []
        for batches in batches_by_order:
            per_run = [d[prog][0] / d[prog][1] for d in batches if d.get(prog, (0, 0))[1]]
            if not per_run:
                return None
            medians.append(median(per_run))
        return sum(medians) / len(medians)

    # ---- 1a: live accounting ----

    def part1a(self):
        a = self.args
        ids = {**self.agent_ids, **self.empty_ids}
        phases = {"other": {}, "port80": {}, "metadata": {}}
        connect_batches = []  # per order: hook -> [stats delta of each batch of connects]
        self.stats_enabled(True)
        for order in (("empty", "agent"), ("agent", "empty")):
            self.ctl.only(*order)
            connect_batches.append({})
            s0 = prog_stats()
            self.other_load(a.live_seconds, ids, connect_batches[-1])
            s1 = prog_stats()
            if self.port80:
                # as long as the other-traffic load: a short sample swung this figure by +-0.3x
                self.net("rr", "--connect", "127.0.0.1:80", "--seconds", a.live_seconds)
            s2 = prog_stats()
            self.imds(a.live_requests // 2)
            s3 = prog_stats()
            add(phases["other"], delta(s0, s1, ids))
            add(phases["port80"], delta(s1, s2, ids))
            add(phases["metadata"], delta(s2, s3, ids))
        self.ctl.only()
        # kfree_skb in both attach orders: the first agent's link cannot be detached (it ran first above)
        second = {"imds_kfree_skb": self.kfree_second_agent(raw_tp=False)}
        if self.args.raw_kfree:
            second["imds_kfree_raw"] = self.kfree_second_agent(raw_tp=True)
        self.stats_enabled(False)
        self.results["live"] = phases
        hooks = ["connect4", "connect6", "sockops", "egress", "ingress", "kfree_skb"]
        sec = "1a kernel cost per run, live (bpf_stats), beside the empty program on the same hook"
        for phase, label, which in (("other", "other traffic", hooks), ("port80", "other traffic to port 80", ["egress", "ingress"]),
                                    ("metadata", "metadata traffic (both ends)", hooks)):
            for h in which:
                ans, acnt = phases[phase].get(f"imds_{h}", (0, 0))
                ens, ecnt = phases[phase].get(f"empty_{h}", (0, 0))
                if acnt == 0 or ecnt == 0:
                    self.row(sec, f"{label}: imds_{h}", f"no runs ({acnt}/{ecnt})", "", None)
                    continue
                ar, er = ans / acnt, ens / ecnt
                note = " (attached by the agent itself: always first on the hook)" if f"imds_{h}" in self.kept else ""
                # metadata traffic has no target; a kept program's verdict comes from both orders, below
                verdict = ("(info)",) if phase == "metadata" or note else ("<= 1.2x empty", ar / er <= 1.2)
                value = f"{ar:.0f} vs {er:.0f} = {ar / er:.2f}x ({acnt} runs){note}"
                if phase == "other" and h.startswith("connect"):
                    by_order = [b[h] for b in connect_batches]
                    rc, ec = self.connect_cost(by_order, f"imds_{h}"), self.connect_cost(by_order, f"empty_{h}")
                    if rc and ec:
                        self.results.setdefault("live_connect_median", {})[h] = {"agent": rc, "empty": ec}
                        value = (f"{rc:.0f} vs {ec:.0f} = {rc / ec:.2f}x (medians of {self.CONNECT_BATCHES} batches "
                                 f"per attach order; summed over all {acnt} runs: {ar:.0f} vs {er:.0f} = {ar / er:.2f}x)")
                        verdict = ("<= 1.2x empty", rc / ec <= 1.2)
                self.row(sec, f"{label}: imds_{h} ns/run", value, *verdict)
        self.results["live_kfree_second_agent"] = second
        for prog, got in second.items():
            what = "kfree_skb" if prog == "imds_kfree_skb" else "kfree_skb raw_tp (kernels < 5.17)"
            label = f"other traffic: {prog} ns/run ({what}; a second agent, both attach orders)"
            if isinstance(got, str):
                self.row(sec, label, f"not measured: {got}", "<= 1.2x empty", False)
                continue
            (ans, acnt), (ens, ecnt) = got[prog], got["empty_kfree_skb"]
            if acnt == 0 or ecnt == 0:
                self.row(sec, label, f"no runs ({acnt}/{ecnt})", "", None)
                continue
            ar, er = ans / acnt, ens / ecnt
            self.row(sec, label, f"{ar:.0f} vs {er:.0f} = {ar / er:.2f}x ({acnt} runs)", "<= 1.2x empty", ar / er <= 1.2)

    def kfree_second_agent(self, raw_tp):
        """kfree_skb's filter in both attach orders: a second agent beside the first (whose link cannot be
        detached and is always first), its imds_kfree_skb (tp_btf, 5.17+) or, with raw_tp, imds_kfree_raw
        (--forwarding-drops.raw-tp: kernels before 5.17 hook it so; its filter tests the caller's address)
        against the empty raw_tp program on the same UDP drops: the empty program attached before the second
        agent starts, then again after. Returns name -> (ns, runs), or why not."""
        port = free_port()
        prog = "imds_kfree_raw" if raw_tp else "imds_kfree_skb"
        flags = [x for x in self.args.agent_arg if x != "--forwarding-drops.raw-tp"]
        if raw_tp:
            flags.append("--forwarding-drops.raw-tp")
        name = "agent-raw-kfree" if raw_tp else "agent-kfree"
        self.ctl.only("empty")
        with open(os.path.join(self.out, f"{name}.log"), "w") as logf:
            agent = self.procs.start(name, [self.args.agent, "--no-kube", "--endpoint",
                                     f"{self.imds_host}:{self.ports['imds']}", "--web.listen-address",
                                     f"127.0.0.1:{port}", "--log-level", "warn"] + flags,
                                     stdout=logf, stderr=logf)
        try:
            wait_healthy(agent, port, f"the second agent ({prog})", 90)
            prog_id = next((i for i, n in agent_prog_ids(agent.pid).items() if n == prog), None)
            if prog_id is None:
                return f"the second agent holds no {prog}"
            ids = {prog: prog_id, "empty_kfree_skb": self.empty_ids["empty_kfree_skb"]}
            acc = {}
            for reattach in (False, True):  # empty first, then the second agent's first
                if reattach:
                    self.ctl.only()
                    self.ctl.only("empty")
                s0 = prog_stats()
                self.net("udp-drop", "--connect", f"127.0.0.1:{self.ports['closed']}", "--count", 100000)
                add(acc, delta(s0, prog_stats(), ids))
            return {k: tuple(v) for k, v in acc.items()}
        except SystemExit as e:
            return str(e)
        finally:
            stop_process(agent)
            self.ctl.only()

    # ---- 1b: BPF_PROG_TEST_RUN ----

    def part1b(self):
        progs = []
        for h in ("egress", "ingress"):
            progs += ["--prog", f"imds_{h}={self.agent_ids[f'imds_{h}']}", "--prog", f"empty_{h}={self.empty_ids[f'empty_{h}']}"]
        out = subprocess.run([os.path.join(self.bin, "bench_ctl"), "testrun", "--repeat", str(self.args.repeat),
                              "--runs", str(self.args.testruns)] + progs, check=True, capture_output=True, text=True).stdout
        res = [json.loads(l) for l in out.splitlines() if l.strip()]
        self.results["testrun"] = res
        by = {(r["prog"], r["packet"]): r for r in res}
        sec = "1b kernel cost per run, BPF_PROG_TEST_RUN x1,000,000 (a dummy socket, port 0, no storage: only the other-traffic path can run)"
        for h in ("egress", "ingress"):
            for pkt in ("tcp4_ack", "tcp4_data512_dport80", "tcp6_ack"):
                # interference (other processes, interrupts) only ever adds time: the fastest of the
                # interleaved runs is each program's own cost; the median is shown beside it. The figure
                # is the call's wall time per run (the kernel's own duration, whole ns, is a 7 % step at
                # 14 ns: shown after it)
                a, e = by[(f"imds_{h}", pkt)], by[(f"empty_{h}", pkt)]
                am, em = min(a["wall_ns"]), min(e["wall_ns"])
                self.row(sec, f"imds_{h} on {pkt} ns/run (min of {len(a['ns'])})", f"{am:.1f} vs {em:.1f} = {am / em:.2f}x "
                         f"(medians {median(a['wall_ns']):.1f} vs {median(e['wall_ns']):.1f}; kernel's whole ns "
                         f"{min(a['ns'])} vs {min(e['ns'])})", "<= 1.2x empty", am / em <= 1.2)

    # ---- 2: other traffic, alternating ----

    def part2(self):
        a = self.args
        conds = ["none", "agent", "empty"]
        sets = {"none": (), "agent": ("agent",), "empty": ("empty",)}
        rounds = []
        echo = f"127.0.0.1:{self.ports['echo']}"
        for r in range(a.rounds):
            order = conds[r % 3:] + conds[:r % 3]
            res = {c: {} for c in conds}
            for c in order:
                self.ctl.only(*sets[c])
                rr = self.net("rr", "--connect", echo, "--seconds", a.round_seconds)
                res[c].update(rr_tps=rr["tps"], rr_p50_us=rr["p50_us"])
            for c in reversed(order):
                self.ctl.only(*sets[c])
                res[c]["bulk_gbps"] = self.iperf(a.round_seconds)
            rounds.append(res)
            log(f"round {r + 1}/{a.rounds}: " + ", ".join(f"{c}: {res[c]['rr_tps']:.0f} tps {res[c]['bulk_gbps']:.1f} Gbit/s" for c in conds))
        self.ctl.only()
        self.results["other_traffic_rounds"] = rounds
        sec = f"2 other traffic, agent vs none vs empty programs, {a.rounds} alternating rounds (ratio: median [p25..p75] (min..max))"
        for key, label, higher_better in (("rr_tps", "TCP RR transactions/s (64 B ping-pong)", True),
                                          ("rr_p50_us", "TCP RR median latency", False),
                                          ("bulk_gbps", "iperf3 bulk throughput", True)):
            ratios = {c: [x[c][key] / x["none"][key] for x in rounds] for c in ("agent", "empty")}
            e = ratios["empty"]
            lo, hi = quartiles(e)
            am = median(ratios["agent"])
            ok = am >= lo if higher_better else am <= hi
            none_med = median([x["none"][key] for x in rounds])
            self.row(sec, f"{label}: empty/none", spread(e), f"(none: {none_med:.1f})")
            self.row(sec, f"{label}: agent/none", spread(ratios["agent"]),
                     f"median {'>=' if higher_better else '<='} empty's {'p25' if higher_better else 'p75'} ({lo if higher_better else hi:.3f})", ok)
            ae = [x["agent"][key] / x["empty"][key] for x in rounds]
            self.row(sec, f"{label}: agent/empty", spread(ae), "(info)")

    # ---- 3: per metadata request ----

    def part3(self):
        a = self.args
        sec = "3 per metadata request (loopback stand-in)"
        # BPF time per request: agent and empty attached together (two halves, both orders)
        self.stats_enabled(True)
        # The counting floor (floor.bpf.c: a request's start by socket cookie, counts in a kernel map, no
        # connect program, no parse, no record) the same way, beside the empty programs: the least any
        # design costs here.
        ids = {**self.agent_ids, **self.empty_ids, **self.floor_ids}
        per_mode, floor_mode = {}, {}
        floor_before = self.ctl.cmd("floor_counts").split()
        for mode in ("sdk", "conn"):
            for measured, into in (("agent", per_mode), ("floor", floor_mode)):
                acc = {}
                for order in (("empty", measured), (measured, "empty")):
                    self.ctl.only(*order)
                    s0 = prog_stats()
                    self.imds(a.requests // 2, mode=mode)
                    add(acc, delta(s0, prog_stats(), ids))
                into[mode] = acc
        # With the agent's ring-buffer consumer paused (SIGSTOP) the kernel wakes nobody (a consumer
        # that is behind the producer is not woken): the same requests with and without that pause
        # give the cost of waking the agent from inside the programs; paused, GET heads padded by
        # 1,024 bytes give the parse cost per head byte. Every block starts after the same idle
        # pause, with the ring drained, and the running block goes first and last in turn:
        # until 2026-12-04 it always went first, after the pause, and read ~600 ns a request above
        # the paused blocks that followed it. The ring (1 MiB) holds the paused blocks.
        self.ctl.only("agent")
        blk = max(3, a.pad_requests // 3 // 3 * 3)
        pads = {"running": {}, 0: {}, 1024: {}}

        def block(key):
            time.sleep(0.3)
            s0 = prog_stats()
            self.imds(blk, mode="sdk", pad=0 if key == "running" else key)
            add(pads[key], delta(s0, prog_stats(), self.agent_ids))

        for turn in range(4):
            if turn % 2 == 0:
                block("running")
            os.kill(self.agent.pid, signal.SIGSTOP)
            try:
                for pad in (0, 1024):
                    block(pad)
            finally:
                os.kill(self.agent.pid, signal.SIGCONT)
            time.sleep(0.3)  # the agent drains the paused blocks' records before the next pause
            if turn % 2 == 1:
                block("running")
        self.ctl.only()
        self.stats_enabled(False)
        floor_after = self.ctl.cmd("floor_counts").split()
        floor_calls = int(floor_after[1]) - int(floor_before[1])
        floor_conns = int(floor_after[3]) - int(floor_before[3])
        self.results["bpf_per_request"] = {"modes": per_mode, "floor": floor_mode,
                                           "pads": {str(k): v for k, v in pads.items()}}
        labels = {"sdk": "botocore fetch: PUT token + 2 GETs per connection", "conn": "one GET per connection"}
        live = self.results.get("live", {}).get("other", {})
        other_run = None
        if live.get("imds_egress", [0, 0])[1] and live.get("imds_ingress", [0, 0])[1]:
            other_run = (live["imds_egress"][0] / live["imds_egress"][1] + live["imds_ingress"][0] / live["imds_ingress"][1]) / 2
        for mode, acc in per_mode.items():
            n = a.requests // 2 * 2
            agent_ns = sum(v[0] for k, v in acc.items() if k.startswith("imds_"))
            empty_ns = sum(v[0] for k, v in acc.items() if k.startswith("empty_"))
            self.row(sec, f"BPF time per request, all imds_* programs, both ends ({labels[mode]})",
                     f"{agent_ns / n:.0f} ns", "(info)")
            if other_run:
                # On loopback every segment runs egress at its sender and ingress at its receiver, so
                # the stand-in's own sockets account for as many skb runs as there are egress runs,
                # all on the other-traffic path (its peer port is not watched). Off the node (real
                # IMDS) they would not exist.
                server = acc["imds_egress"][1] * other_run
                client = agent_ns - server
                self.row(sec, "  client end (minus the stand-in's runs at the other-traffic cost/run)",
                         f"{client / n:.0f} ns", "<= 2000 ns", client / n <= 2000)
            parts = ", ".join(f"{k[5:]} {v[0] / n:.0f} ns/{v[1] / n:.1f} runs" for k, v in acc.items()
                              if k.startswith("imds_") and v[1])
            self.row(sec, "  by program (both ends)", parts, "(info)")
            self.row(sec, "  empty programs on the same runs (the hooks' own cost, both ends)", f"{empty_ns / n:.0f} ns", "(info)")
            floor = floor_mode[mode]
            floor_ns = sum(v[0] for k, v in floor.items() if k.startswith("floor_"))
            floor_parts = ", ".join(f"{k[6:]} {v[0] / n:.0f}/{v[1] / n:.1f}" for k, v in floor.items()
                                    if k.startswith("floor_") and v[1])
            floor_client = ""
            if other_run and floor.get("floor_egress", [0, 0])[1]:
                floor_client = f", client end {(floor_ns - floor['floor_egress'][1] * other_run) / n:.0f} ns"
            self.row(sec, "  counting floor (floor.bpf.c: no parse, no record, no connect program), both ends",
                     f"{floor_ns / n:.0f} ns{floor_client} ({floor_parts} ns/runs)", "(info)")
        # The floor's figure counts only if it did its work: every request counted as a call. Per order, a
        # "sdk" run makes whole fetches of 3 requests; a "conn" run first fetches its token on a connection
        # of its own.
        half = a.requests // 2
        floor_requests = 2 * (-(-half // 3) * 3) + 2 * (half + 1)
        self.results["floor_counted"] = {"calls": floor_calls, "requests": floor_requests, "connections": floor_conns}
        self.row(sec, "  counting floor: calls and connections it counted in the kernel",
                 f"{floor_calls} calls of {floor_requests} requests, {floor_conns} connections", "= requests",
                 floor_calls == floor_requests)
        m = 4 * blk
        per_req = {k: sum(v[0] for v in d.values()) / m for k, d in pads.items()}
        slope = (per_req[1024] - per_req[0]) * 3 / 2 / 1024  # 2 of every 3 requests padded
        self.results["parse_ns_per_byte"] = slope
        self.results["wakeup_ns_per_request"] = per_req["running"] - per_req[0]
        self.row(sec, "same requests, agent consuming vs consumer paused (no wakeups)",
                 f"{per_req['running']:.0f} vs {per_req[0]:.0f} ns per request: {per_req['running'] - per_req[0]:+.0f} ns "
                 "with the consumer running (its wakeups)", "(info)")
        self.row(sec, "request-head parse cost (consumer paused, GET heads +1024 B)", f"{slope:.2f} ns per head byte", "(info)")

        # latency: alternating blocks of agent / none / empty / floor, bpf_stats off
        conds = ["none", "agent", "empty", "floor"]
        sets = {"none": (), "agent": ("agent",), "empty": ("empty",), "floor": ("floor",)}
        lat = {c: [] for c in conds}
        blocks = max(1, -(-a.latency_requests // a.block))
        # warm-up
        self.imds(60)
        with tempfile.TemporaryDirectory() as tmp:
            for b in range(blocks):
                for c in conds[b % len(conds):] + conds[:b % len(conds)]:
                    self.ctl.only(*sets[c])
                    f = os.path.join(tmp, "lat")
                    self.imds(a.block, out=f)
                    lat[c] += [int(x) for x in open(f)]
        self.ctl.only()
        med = {c: median(v) / 1e3 for c, v in lat.items()}
        self.results["metadata_latency_us"] = {c: {"n": len(v), "median": med[c]} for c, v in lat.items()}
        self.row(sec, f"request latency median, none / empty / floor / agent (n={len(lat['agent'])} each)",
                 f"{med['none']:.1f} / {med['empty']:.1f} / {med['floor']:.1f} / {med['agent']:.1f} us", "(info)")
        self.row(sec, "request latency, agent/none (median of each)", f"{med['agent'] / med['none']:.3f}x "
                 f"(empty/none {med['empty'] / med['none']:.3f}x, floor/none {med['floor'] / med['none']:.3f}x)",
                 "<= 1.02x", med["agent"] / med["none"] <= 1.02)

    # ---- 4: userspace ----

    def agent_cpu_ticks(self):
        fields = open(f"/proc/{self.agent.pid}/stat").read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime (fields 14, 15)

    def agent_events(self):
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.ports['web']}/metrics", timeout=5).read().decode()
        return sum(float(m.group(1)) for m in re.finditer(r'^imdswatch_events_total\{[^}]*\} (\S+)$', text, re.M))

    def part4(self):
        a = self.args
        sec = "4 userspace"
        # idle CPU of the real agent, programs attached, no traffic of ours; measured while the
        # userspace benchmarks below run (they send no packets)
        self.ctl.only("agent")
        hz = os.sysconf("SC_CLK_TCK")
        ev0, c0, t0 = self.agent_events(), self.agent_cpu_ticks(), time.monotonic()
        exe = os.path.join(self.bin, "bench_userspace")
        gb = json.loads(subprocess.run([exe, f"--benchmark_min_time={a.gb_min_time}", "--benchmark_format=json",
                                        "--benchmark_repetitions=3", "--benchmark_report_aggregates_only=true"],
                                       check=True, capture_output=True, text=True, timeout=300).stdout)
        rss = {n: run_json([exe, "rss", str(n)], timeout=300) for n in (1000, 10000)}
        remaining = a.idle_seconds - (time.monotonic() - t0)
        if remaining > 0:
            time.sleep(remaining)
        c1, t1, ev1 = self.agent_cpu_ticks(), time.monotonic(), self.agent_events()
        rss_agent = int(next(l.split()[1] for l in open(f"/proc/{self.agent.pid}/status") if l.startswith("VmRSS")))
        self.ctl.only()
        idle_pct = (c1 - c0) / hz / (t1 - t0) * 100
        self.results["userspace"] = {"benchmark": gb["benchmarks"], "rss": rss, "idle_cpu_pct": idle_pct,
                                     "idle_seconds": t1 - t0, "idle_events": ev1 - ev0, "agent_rss_kib": rss_agent}
        bm = {b["run_name"]: b for b in gb["benchmarks"] if b.get("aggregate_name") == "median"}

        def ips(name):
            return bm[name]["items_per_second"] if name in bm else float("nan")

        full = ips("BM_AgentPath/1000")
        self.row(sec, "events/s, one core: decode -> CallTracker -> Aggregator + Diagnoser (the agent's sink), 1,000 owners",
                 f"{full / 1e6:.2f} M/s ({bm['BM_AgentPath/1000']['calls/s'] / 1e6:.2f} M calls/s)", ">= 1,000,000/s", full >= 1e6)
        self.row(sec, "  same, 10,000 owners", f"{ips('BM_AgentPath/10000') / 1e6:.2f} M/s", "(info)")
        self.row(sec, "  same, kernels before 5.12 (every close remembered: the double-close guard)",
                 f"{ips('BM_AgentPathCloseGuard/1000') / 1e6:.2f} M/s", "(info)")
        self.row(sec, "  decode -> CallTracker -> Aggregator only", f"{ips('BM_DecodeTrackAggregate/1000') / 1e6:.2f} M/s", "(info)")
        self.row(sec, "  decode -> CallTracker", f"{ips('BM_DecodeTrack/1000') / 1e6:.2f} M/s", "(info)")
        self.row(sec, "  decode only", f"{ips('BM_Decode') / 1e6:.2f} M/s", "(info)")
        for n, limit in ((1000, 32), (10000, 64)):
            r = rss[n]
            mib = r["hwm_streamed_kib"] / 1024
            self.row(sec, f"RSS (peak, scraped as the agent streams /metrics) holding {n:,} containers with traffic", f"{mib:.1f} MiB (before any scrape "
                     f"{r['rss_fed_kib'] / 1024:.1f}, pods+cgroups alone {r['rss_fixture_kib'] / 1024:.1f}, empty process "
                     f"{r['rss_start_kib'] / 1024:.1f})", f"<= {limit} MiB", mib <= limit)
            if r["diagnoser_dropped"]:
                self.row(sec, f"  diagnoser at {n:,} containers", f"{r['diagnoser_owners']} owners kept, "
                         f"{r['diagnoser_dropped']} calls dropped (Diagnoser::kMaxOwners)", "(info)")
            self.row(sec, f"/metrics render at {n:,} containers", f"{r['render_ms']:.1f} ms streamed (first scrape "
                     f"{r['render_cold_ms']:.1f}; as one string {r['render_string_ms']:.1f}; {r['render_bytes'] / 1e6:.1f} MB, "
                     f"{r['render_lines']:,} lines)", "<= 50 ms" if n == 1000 else "(info)",
                     r["render_ms"] <= 50 if n == 1000 else None)
            self.row(sec, f"  memory of a scrape at {n:,} containers", f"state {r['rss_fed_kib'] / 1024:.1f} MiB, +"
                     f"{(r['rss_scraped_kib'] - r['rss_fed_kib']) / 1024:.1f} MiB after the first scrape (label caches), "
                     f"peak {r['hwm_kib'] / 1024:.1f} MiB after also rendering it as one string", "(info)")
        ev = ev1 - ev0
        self.row(sec, f"idle agent CPU over {t1 - t0:.0f} s (programs attached)", f"{idle_pct:.3f} % of a core"
                 + (f" ({ev:.0f} metadata events from other processes meanwhile)" if ev else ""), "<= 0.5 %", idle_pct <= 0.5)
        self.row(sec, "idle agent RSS", f"{rss_agent / 1024:.1f} MiB", "(info)")

    def run(self):
        t0 = time.monotonic()
        self.machine()
        old_stats = open("/proc/sys/kernel/bpf_stats_enabled").read().strip()
        try:
            self.start()
            parts = self.args.parts.split(",")
            for name, fn in (("1b", self.part1b), ("1a", self.part1a), ("2", self.part2), ("3", self.part3),
                             ("4", self.part4)):
                if name in parts:
                    log(f"part {name}")
                    fn()
        finally:
            with open("/proc/sys/kernel/bpf_stats_enabled", "w") as f:
                f.write(old_stats)
            with contextlib.suppress(Exception):
                self.ctl.cmd("quit")
            self.procs.stop_all()
        self.results["machine"]["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
        self.results["seconds"] = round(time.monotonic() - t0, 1)
        self.results["table"] = self.rows
        with open(os.path.join(self.out, "results.json"), "w") as f:
            json.dump(self.results, f, indent=1)
        m = self.results["machine"]
        print(f"imdswatch bench, {datetime.date.today()} - {m['cpu_model']}, {m['cpus']} CPUs, kernel {m['kernel']}, "
              f"load {' '.join(m['loadavg_start'])} -> {' '.join(m['loadavg_end'])}, {self.results['seconds']} s")
        if m["foreign_programs_at_root"]:
            print(f"note: programs of other processes were attached at {self.cgroup} during the run: "
                  f"{', '.join(m['foreign_programs_at_root'])} (they add the same cost to every condition)")
        print(self.table())
        fails = [r for r in self.rows if r[4] == "FAIL"]
        print(f"\n{len([r for r in self.rows if r[4] == 'PASS'])} targets met, {len(fails)} missed; raw figures: "
              f"{os.path.join(self.out, 'results.json')}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(REPO, "build-bench"))
    ap.add_argument("--agent", default=None, help="agent binary (default BUILD/imdswatch)")
    ap.add_argument("--out", default=None, help="logs and results.json (default BUILD/bench/out)")
    ap.add_argument("--parts", default="1b,1a,2,3,4")
    ap.add_argument("--no-raw-kfree", dest="raw_kfree", action="store_false",
                    help="1a: skip the raw_tp kfree_skb measurement (a second agent, the hook of kernels < 5.17)")
    ap.add_argument("--agent-arg", action="append", default=[],
                    help="one more argument for the agent, e.g. --agent-arg=--forwarding-drops.raw-tp (repeatable)")
    ap.add_argument("--live-seconds", type=float, default=5, help="1a: seconds of iperf3 per order")
    ap.add_argument("--live-requests", type=int, default=600, help="1a: metadata requests")
    ap.add_argument("--connects", type=int, default=5000, help="1a: connects per family and order")
    ap.add_argument("--repeat", type=int, default=1000000, help="1b: BPF_PROG_TEST_RUN repeat")
    ap.add_argument("--testruns", type=int, default=7, help="1b: test runs per program and packet")
    ap.add_argument("--rounds", type=int, default=16, help="2: alternating rounds")
    ap.add_argument("--round-seconds", type=float, default=1, help="2: seconds per test per condition")
    ap.add_argument("--requests", type=int, default=1002, help="3: metadata requests per figure")
    # a median of 1,020 loopback requests moved +-3 % from run to run (their spread is wide: p90 is twice
    # p50), more than the 2 % to be resolved; 10,200 per condition take ~10 s
    ap.add_argument("--latency-requests", type=int, default=10200, help="3: latency samples per condition")
    ap.add_argument("--block", type=int, default=51, help="3: requests per latency block (a multiple of 3)")
    ap.add_argument("--pad-requests", type=int, default=300, help="3: requests per pad size")
    ap.add_argument("--gb-min-time", default="0.5", help="4: --benchmark_min_time")
    ap.add_argument("--idle-seconds", type=float, default=30, help="4: idle CPU window")
    args = ap.parse_args()
    args.agent = args.agent or os.path.join(args.build, "imdswatch")
    args.out = args.out or os.path.join(args.build, "bench", "out")
    if os.geteuid() != 0:
        raise SystemExit("run as root (BPF programs, bpf_stats)")
    Bench(args).run()


if __name__ == "__main__":
    main()
