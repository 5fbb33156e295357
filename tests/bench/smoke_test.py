#!/usr/bin/env python3
"""bench/ still works: it builds against this build, and a short part 3 (BPF time per metadata request,
latency) runs with this build's agent. Checks that every condition measured something, on the runs it
should have, and that the counting floor (bench/floor.bpf.c) counted every request it was sent."""
import json
import os
import subprocess
import sys
import tempfile

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("IMDSWATCH_BINARY_DIR", os.path.join(REPO, "build"))
REQUESTS = 60  # per mode: botocore fetches (3 per connection) and one GET per connection
LATENCY_REQUESTS = 80


def skip(why):
    print(f"SKIP: {why}")
    sys.exit(1 if os.environ.get("CI") == "true" else 77)


def main():
    if os.geteuid() != 0:
        skip("needs root (it loads BPF programs)")
    if not os.path.exists(os.path.join(BUILD, "src", "libimdswatch_lib.a")):
        skip(f"no build in {BUILD}")
    bench_build = os.path.join(BUILD, "bench")
    subprocess.run(["cmake", "-S", os.path.join(REPO, "bench"), "-B", bench_build, f"-DIMDSWATCH_BUILD={BUILD}"],
                   check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["cmake", "--build", bench_build, "-j2", "--target", "bench_ctl", "bench_net"], check=True,
                   stdout=subprocess.DEVNULL)
    with tempfile.TemporaryDirectory() as out:
        run = subprocess.run([sys.executable, os.path.join(REPO, "bench", "bench.py"), "--build", BUILD, "--parts",
                              "3", "--requests", str(REQUESTS), "--latency-requests", str(LATENCY_REQUESTS),
                              "--pad-requests", "18", "--out", out], capture_output=True, text=True, timeout=500)
        print(run.stdout[-6000:])
        assert run.returncode == 0, run.stderr[-3000:]
        results = json.load(open(os.path.join(out, "results.json")))

    per_request = results["bpf_per_request"]
    for mode in ("sdk", "conn"):
        agent, floor = per_request["modes"][mode], per_request["floor"][mode]
        for prog in ("imds_connect4", "imds_sockops", "imds_egress", "imds_ingress", "empty_egress"):
            ns, runs = agent[prog]
            assert runs > 0 and ns > 0, f"{mode}: {prog} did not run beside the agent: {agent[prog]}"
        for prog in ("floor_sockops", "floor_egress", "floor_ingress", "empty_ingress"):
            ns, runs = floor[prog]
            assert runs > 0 and ns > 0, f"{mode}: {prog} did not run beside the floor: {floor[prog]}"
        # each set ran on the same segments as the empty programs beside it, and only then
        assert agent["imds_egress"][1] == agent["empty_egress"][1], agent
        assert floor["floor_egress"][1] == floor["empty_egress"][1], floor
        assert "floor_egress" not in agent or agent["floor_egress"][1] == 0, agent
        assert "imds_egress" not in floor or floor["imds_egress"][1] == 0, floor

    counted = results["floor_counted"]
    assert counted["calls"] == counted["requests"] > 0, f"the floor counted {counted}"
    # one connection per botocore fetch (3 requests) and per GET, and one for each "conn" run's token
    connections = 2 * (REQUESTS // 2 // 3) + 2 * (REQUESTS // 2) + 2
    # (the last connection may still be closing when the count is read)
    assert connections - 1 <= counted["connections"] <= connections, f"the floor counted {counted}, expected {connections} connections"

    latency = results["metadata_latency_us"]
    for cond in ("none", "agent", "empty", "floor"):
        assert latency[cond]["n"] >= LATENCY_REQUESTS and latency[cond]["median"] > 0, latency
    print("bench smoke: ok")


if __name__ == "__main__":
    main()
