#!/usr/bin/python3
"""End to end with a real Prometheus (CTest: deploy_e2e_prometheus, label kernel).

A node built from the fixtures: network-namespace pods behind a routing node, metadata stand-ins in the IMDS
host (169.254.169.254: port 80 healthy, 8081 token replies with IP TTL 1, 8082 credentials with 5 minutes
left, 8083 throttling above 2 requests/s and resetting one path, 8084 answering after 1.5 s; nothing on 8089), the Kubernetes
API stand-in naming the pods, and real clients (Debian's botocore and Ruby SDK, curl) in kubelet-style
cgroups producing every scenario at once: healthy pods, hop-limit fallback, a credential-refresh storm,
throttling/resets/refused connections, IMDSv1, slow answers, a pod the API does not know and a host service.

The agent runs with the DaemonSet's flags; Debian's prometheus scrapes it every second on loopback, with the
ServiceMonitor's relabelings applied to the target labels the Prometheus Operator would give it, and loads
deploy/rules/imdswatch.rules.yml. Then:

- every query of every panel of every dashboard, its $variables set to the scenario's values, is run
  through /api/v1/query (and /api/v1/query_range for time series) and must return data; the variables'
  label_values queries must list those values. The one exception list is EXPECTED_EMPTY below;
- the agent's /metrics holds exactly the families and labels of tests/deploy/exported_metrics.txt, and
  Prometheus stores the workload labels as the agent exports them (no exported_namespace ...);
- every rule is healthy in /api/v1/rules; every alert expression returns exactly the pods of its scenario
  and none of the healthy ones; the alerts without `for` fire, with the pod and the fix in their text;
- stopping the agent makes ImdswatchAgentDown's expression true;
- no secret of the stand-ins' credentials reaches Prometheus.

Bounded (about two minutes) and cleaned up (processes, cgroups, namespaces, temp dirs) however it ends.
Without root/BPF/prometheus it is skipped (exit 77), or fails with CI=true. IMDSWATCH_E2E_DUMP=FILE writes
every panel query with (the start of) its result to FILE.
"""
import math
import os
import random
import re
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import deploylib as d  # noqa: E402
import kernellib as k  # noqa: E402

from check_manifests import container, parse_args  # noqa: E402

NODE = "node-e2e"
CANARY = "CANARYe2e5ecretC0FFEE"
SCRAPE = "1s"
MAX_SCENARIO = 100  # seconds to wait for every scenario to show in Prometheus
MIN_SCENARIO = 25  # seconds of data before querying (rate windows of 1m need a few samples)

# (dashboard uid, panel title) -> (metric, reason): panels allowed to return nothing, ONLY while the agent's
# /metrics lacks that metric. Once the agent exports it, the panel must return data like any other.
EXPECTED_EMPTY = {}

# The values the dashboards' variables take in the scenario (multi-value "All" is Grafana's allValue).
VARIABLES = {
    "imdswatch-fleet": {"namespace": [".*"], "workload": [".*"], "pod": [".*"], "topn": "10"},
    "imdswatch-workload": {"namespace": "payments", "workload": "billing", "pod": [".*"]},
    "imdswatch-agent": {"job": "imdswatch", "instance": [".*"]},
}

# Which workloads each alert's expression must return in the scenario (exactly these).
ALERT_WORKLOADS = {
    "ImdsHopLimitFallback": {"checkout"},
    "ImdsCredentialRefreshStorm": {"billing"},
    "ImdsThrottled": {"ingest"},
    "ImdsV1InUse": {"report", "ingest"},  # ingest's curl sends no token; checkout's v1 is the hop-limit fallback
    "ImdsTimeLost": {"trainer"},
    "ImdswatchEventsLost": set(),
    "ImdswatchAgentDown": set(),
    "ImdswatchAgentAbsent": set(),
    "ImdswatchNotReady": set(),
}
HEALTHY = {"web", "cart"}


class Checks:
    def __init__(self):
        self.passed, self.failed = 0, []

    def check(self, ok, what, detail=""):
        if ok:
            self.passed += 1
        else:
            self.failed.append(f"{what}: {detail}" if detail else what)
            print(f"  FAILED {what}: {str(detail)[:2000]}", flush=True)
        return ok


def hexid(n):
    return "".join(random.choice("0123456789abcdef") for _ in range(n))


def uid():
    h = hexid(32)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class Prometheus:
    def __init__(self, url):
        self.url = url

    def query(self, expr, at=None):
        q = {"query": expr}
        if at is not None:
            q["time"] = f"{at:.3f}"
        return k.http_json(f"{self.url}/api/v1/query?{urllib.parse.urlencode(q)}")

    def query_range(self, expr, start, end, step):
        q = urllib.parse.urlencode({"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": step})
        return k.http_json(f"{self.url}/api/v1/query_range?{q}")

    def series(self, selector):
        q = urllib.parse.urlencode({"match[]": selector, "start": f"{time.time() - 600:.0f}"})
        return k.http_json(f"{self.url}/api/v1/series?{q}")["data"]

    def vector(self, expr):
        r = self.query(expr)
        return r["data"]["result"] if r.get("status") == "success" else []


def has_finite(result):
    """Data in a query result: at least one finite sample."""
    rtype, res = result["data"]["resultType"], result["data"]["result"]
    if rtype == "scalar":
        return math.isfinite(float(res[1]))
    for s in res:
        values = s.get("values") or [s.get("value")]
        if any(v and math.isfinite(float(v[1])) for v in values):
            return True
    return False


def scenario(c, work, topo):
    """Stand-ins, API stand-in, pods and clients. Returns (kube port, pods by key, host unit name)."""
    imds_ns = topo.netns("imds")
    standins = {
        "healthy": ["--listen", "169.254.169.254:80", "--listen", "[fd00:ec2::254]:80"],
        "hop": ["--listen", "169.254.169.254:8081", "--token-reply-ttl", "1"],
        "storm": ["--listen", "169.254.169.254:8082", "--cred-lifetime", "300"],
        "throttle": ["--listen", "169.254.169.254:8083", "--throttle-above", "2",
                     "--reset-paths", "/latest/meta-data/ami-id"],
        "slow": ["--listen", "169.254.169.254:8084", "--slow-ms", "1500"],
    }
    for name, flags in standins.items():
        ready = os.path.join(work, f"imds-{name}.ready")
        k.Proc([k.PY, os.path.join(k.FIXTURES, "imds_standin.py"), "--canary", CANARY, "--ready-file", ready] + flags,
               log=os.path.join(work, f"imds-{name}.log"), netns=imds_ns, cleanup=c)
        k.wait_for(lambda: os.path.exists(ready), 15, f"the {name} metadata stand-in")

    pods_dir = os.path.join(work, "pods")
    os.mkdir(pods_dir)
    kube_port = k.free_port()
    kready = os.path.join(work, "kube.ready")
    k.Proc([k.PY, os.path.join(k.FIXTURES, "kube_api_standin.py"), "--pods-dir", pods_dir, "--listen",
            f"127.0.0.1:{kube_port}", "--ready-file", kready], log=os.path.join(work, "kube.log"), cleanup=c)
    k.wait_for(lambda: os.path.exists(kready), 10, "the Kubernetes API stand-in")

    # key: (namespace, workload, owner kind, owner name, pod name, container, netns index, publish)
    hash_ = "5d8f7c9b4"
    layout = {
        "web": ("shop", "web", "ReplicaSet", f"web-{hash_}", f"web-{hash_}-{hexid(5)}", "app", 1, True),
        "cart": ("shop", "cart", "ReplicaSet", f"cart-{hash_}", f"cart-{hash_}-{hexid(5)}", "app", 2, True),
        "checkout": ("shop", "checkout", "ReplicaSet", f"checkout-{hash_}", f"checkout-{hash_}-{hexid(5)}", "app", 3,
                     True),
        "billing": ("payments", "billing", "ReplicaSet", f"billing-{hash_}", f"billing-{hash_}-{hexid(5)}", "api", 4,
                    True),
        "ingest": ("data", "ingest", "StatefulSet", "ingest", "ingest-0", "worker", 5, True),
        "report": ("batch", "report", "Job", "report-29123456", f"report-29123456-{hexid(5)}", "main", 6, True),
        "trainer": ("ml", "trainer", "ReplicaSet", f"trainer-{hash_}", f"trainer-{hash_}-{hexid(5)}", "train", 7,
                    True),
        "unknown": ("", "", "ReplicaSet", "ghost-x", f"ghost-{hexid(5)}", "app", 1, False),
    }
    pods = {}
    for key, (ns, workload, kind, owner, name, ctr, idx, publish) in layout.items():
        pod = {"key": key, "namespace": ns, "workload": workload, "pod": name, "container": ctr, "uid": uid(),
               "cid": hexid(64), "netns": topo.netns(f"p{idx}")}
        pod["cgroup"] = k.Cgroup(k.kubelet_cgroup(pod["uid"], pod["cid"]), c).path
        if publish:
            argv = [k.PY, os.path.join(k.FIXTURES, "make_pod.py"), "--name", name, "--namespace", ns, "--uid",
                    pod["uid"], "--node", NODE, "--container", f"{ctr}=containerd://{pod['cid']}", "--owner-kind",
                    kind, "--owner-name", owner, "--out", os.path.join(pods_dir, pod["uid"] + ".json")]
            if kind == "ReplicaSet":
                argv += ["--label", f"pod-template-hash={hash_}"]
            k.run(argv)
        pods[key] = pod
    unit = f"imdswatch-e2e-{topo.prefix}.service"
    pods["host"] = {"key": "host", "namespace": "", "workload": unit, "pod": "", "container": "",
                    "cgroup": k.Cgroup(f"/system.slice/{unit}", c).path, "netns": topo.netns("p1")}
    return kube_port, pods, unit


def start_clients(c, work, pods):
    boto = [k.PY, os.path.join(k.FIXTURES, "clients", "botocore_creds.py")]
    ruby = ["ruby", os.path.join(k.FIXTURES, "clients", "ruby_creds.rb")]
    imds = "http://169.254.169.254"
    curl = "curl -s -o /dev/null --max-time 3"
    # Client limits well above the stand-in's answer times: on a loaded 2-core CI machine a late answer
    # must not turn a healthy pod's call into a timeout (a hop-limit, throttle or IMDSv1 finding that the
    # alerts keep for an hour). Only checkout's SDK keeps its 1 s token timeout: that is its scenario.
    token = ("t=$(curl -s --max-time 5 -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 60' "
             f"{imds}/latest/api/token); {curl} -H \"X-aws-ec2-metadata-token: $t\" {imds}/latest/meta-data/instance-id")
    throttled = " ".join(["-o /dev/null " + f"{imds}:8083/latest/meta-data/instance-id"] * 6)
    slow_token = ("t=$(curl -s --max-time 6 -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 60' "
                  f"{imds}:8084/latest/api/token); curl -s -o /dev/null --max-time 6 "
                  f"-H \"X-aws-ec2-metadata-token: $t\" {imds}:8084/latest/meta-data/instance-id")
    # Each pod has one problem only: a loop fetching credentials every few seconds is itself a refresh storm,
    # so only billing does that.
    clients = {
        # healthy: one credential fetch every 15 s, IMDSv2
        "web": boto + ["--count", "12", "--sleep", "15", "--timeout", "3"],
        "cart": ruby + ["--count", "12", "--sleep", "15", "--timeout", "3"],
        # token replies die one hop short: 1 s timeout, then IMDSv1; a fetch every ~13 s
        "checkout": boto + ["--endpoint", f"{imds}:8081", "--count", "12", "--sleep", "12"],
        # credentials with 5 minutes left, fetched every 2 s
        "billing": boto + ["--endpoint", f"{imds}:8082", "--reuse", "--count", "90", "--sleep", "2"],
        # bursts over the throttle, a reset path, a refused port
        "ingest": ["bash", "-c", f"for i in $(seq 60); do curl -s {throttled}; "
                                 f"{curl} {imds}:8083/latest/meta-data/ami-id; "
                                 f"{curl} --max-time 1 {imds}:8089/latest/meta-data/; sleep 2; done"],
        # IMDSv1 only (no credentials)
        "report": ["bash", "-c", f"for i in $(seq 60); do {curl} {imds}/latest/meta-data/instance-id; "
                                 f"{curl} {imds}/latest/meta-data/placement/region; sleep 3; done"],
        # four workers blocked on slow answers (1.5 s each, IMDSv2, no credentials): far above 10 % of wall time
        "trainer": ["bash", "-c", f"for j in 1 2 3 4; do (for i in $(seq 40); do {slow_token}; sleep 0.5; done) & "
                                  "done; wait"],
        # a pod the API does not know, and a host service
        "unknown": ["bash", "-c", f"for i in $(seq 40); do {token}; sleep 5; done"],
        "host": ["bash", "-c", f"for i in $(seq 40); do {token}; sleep 5; done"],
    }
    for key, argv in clients.items():
        pod = pods[key]
        k.Proc(argv, log=os.path.join(work, f"client-{key}.log"), cgroup=pod["cgroup"], netns=pod["netns"],
               cleanup=c)
        time.sleep(0.2)  # nine interpreters starting at once on 2 cores delay the first answers by seconds


def prometheus_config(path, agent_port, sm):
    """A scrape config equal to what the Prometheus Operator makes of the ServiceMonitor: the operator's
    target labels of the agent pod, then the ServiceMonitor's relabelings; every 1 s instead of 30 s."""
    (ep,) = sm["spec"]["endpoints"]
    keymap = {"sourceLabels": "source_labels", "targetLabel": "target_label", "action": "action",
              "regex": "regex", "replacement": "replacement", "separator": "separator", "modulus": "modulus"}
    relabel = [{keymap[k_]: v for k_, v in r.items()} for r in ep.get("relabelings", [])]
    for r in relabel:
        if "action" in r:
            r["action"] = r["action"].lower()
    config = {
        "global": {"scrape_interval": SCRAPE, "scrape_timeout": SCRAPE, "evaluation_interval": SCRAPE},
        "rule_files": [d.RULES_FILE],
        "scrape_configs": [{
            "job_name": "imdswatch",
            "metrics_path": ep["path"],
            "honor_labels": bool(ep.get("honorLabels", False)),
            "static_configs": [{"targets": [f"127.0.0.1:{agent_port}"], "labels": {
                "namespace": "imdswatch", "pod": "imdswatch-x7k2p", "container": "imdswatch",
                "service": "imdswatch", "endpoint": ep["port"], "__meta_kubernetes_pod_node_name": NODE}}],
            "relabel_configs": relabel,
        }],
    }
    import yaml
    with open(path, "w") as f:
        yaml.safe_dump(config, f)


def main():
    why = k.unavailable(extra_tools=("prometheus", "promtool", "ruby"))
    if why:
        k.skip_or_fail(why)
    t0 = time.monotonic()
    checks = Checks()
    try:
        with k.Cleanup() as c:
            run(c, checks, t0)
    except Exception as e:  # noqa: BLE001 - report, after cleanup
        import traceback
        traceback.print_exc()
        checks.failed.append(f"aborted: {e}")
    elapsed = time.monotonic() - t0
    print(f"\ne2e with Prometheus: {elapsed:.0f}s (cleanup included)")
    for f in checks.failed:
        print(f"FAILED: {f[:3000]}")
    print(f"{checks.passed} passed, {len(checks.failed)} failed")
    sys.exit(1 if checks.failed else 0)


def run(c, checks, t0):
    work = c.tempdir("imdswatch-e2e-")
    prefix = f"iwd{os.getpid() % 100000}"
    docs = d.render_kustomize_python(d.DEPLOY)
    _, ctr = container(docs)
    sm = d.find(docs, "ServiceMonitor", "imdswatch")

    print(f"[{time.monotonic() - t0:5.1f}s] topology, stand-ins, pods", flush=True)
    topo = k.Topology(prefix, 7, c)
    kube_port, pods, unit = scenario(c, work, topo)

    # the agent with the DaemonSet's flags (listen address and cgroup root adapted), watching the extra ports
    agent_port = k.free_port()
    argv = [d.agent_binary()]
    for flag, value in parse_args(ctr["args"]).items():
        if flag == "--web.listen-address":
            value = f"127.0.0.1:{agent_port}"
        elif flag == "--cgroup-root":
            value = k.cgroup2_root()
        argv += [flag] if value is None else [f"{flag}={value}"]
    argv += [f"--kube-api-server=http://127.0.0.1:{kube_port}"]
    argv += [f"--endpoint=169.254.169.254:{p}" for p in (8081, 8082, 8083, 8084, 8089)]
    agent = k.Proc(argv, log=os.path.join(work, "agent.log"), env={"NODE_NAME": NODE}, cleanup=c)
    agent_url = f"http://127.0.0.1:{agent_port}"
    try:
        k.wait_for(lambda: not agent.running() or k.http_get(agent_url + "/readyz")[0] == 200, 30, "agent /readyz")
    except TimeoutError:
        raise RuntimeError("agent not ready: " + agent.log()[-3000:])
    if not agent.running():
        raise RuntimeError("agent exited: " + agent.log()[-3000:])

    prom_port = k.free_port()
    cfg = os.path.join(work, "prometheus.yml")
    prometheus_config(cfg, agent_port, sm)
    k.Proc(["prometheus", f"--config.file={cfg}", f"--storage.tsdb.path={os.path.join(work, 'tsdb')}",
            f"--web.listen-address=127.0.0.1:{prom_port}", "--storage.tsdb.retention.time=1h", "--log.level=warn"],
           log=os.path.join(work, "prometheus.log"), cleanup=c)
    prom = Prometheus(f"http://127.0.0.1:{prom_port}")
    k.wait_for(lambda: k.http_get(prom.url + "/-/ready")[0] == 200, 30, "Prometheus /-/ready")

    print(f"[{time.monotonic() - t0:5.1f}s] clients", flush=True)
    start_clients(c, work, pods)
    started = time.monotonic()

    # wait until every scenario shows in Prometheus (bounded)
    want = {
        "scrape target up": 'up{job="imdswatch"} == 1',
        **{f"calls of {key}": f'imds_requests_total{{workload="{pods[key]["workload"]}"}}'
           for key in ("web", "cart", "checkout", "billing", "ingest", "report", "trainer", "host")},
        "hop_limit diagnosis": 'imds_diagnosis{kind="hop_limit", workload="checkout"}',
        "refresh_storm diagnosis": 'imds_diagnosis{kind="refresh_storm", workload="billing"}',
        "throttled diagnosis": 'imds_diagnosis{kind="throttled", workload="ingest"}',
        "imdsv1 diagnosis": 'imds_diagnosis{kind="imdsv1", workload="report"}',
        "slow diagnosis": 'imds_diagnosis{kind="slow", workload="trainer"}',
        "credential lifetime": 'imds_credentials_remaining_seconds{workload="billing"}',
        "fetch intervals": 'imds_credential_fetch_interval_seconds_count{workload="billing"} > 2',
        "refused connection": 'imds_connections_total{outcome="refused"}',
        "reset": 'imds_requests_total{outcome="reset"}',
        "unknown pod": 'imdswatch_attribution_failures_total{reason="pod_unknown"} > 0',
        # the 5m rate of the time-lost alert needs enough of the trainer's waiting
        "time lost above the alert's threshold": 'sum by (workload) (rate(imds_request_duration_seconds_sum{workload="trainer"}[5m])) > 0.1',
    }
    missing = dict(want)
    while time.monotonic() - started < MAX_SCENARIO:
        for name in list(missing):
            if prom.vector(missing[name]):
                del missing[name]
        if not missing and time.monotonic() - started >= MIN_SCENARIO:
            break
        time.sleep(1)
    print(f"[{time.monotonic() - t0:5.1f}s] scenarios in Prometheus after {time.monotonic() - started:.0f}s"
          + (f"; missing: {sorted(missing)}" if missing else ""), flush=True)
    for name, expr in want.items():
        checks.check(name not in missing, f"scenario shows in Prometheus: {name}", expr)

    # ---- the agent's /metrics against the one list
    status, body = k.http_get(agent_url + sm["spec"]["endpoints"][0]["path"])
    exported = d.load_exported()
    types = k.families_of(body)
    samples = k.parse_metrics(body)
    for fam, typ in types.items():
        listed = exported.families.get(fam)
        if checks.check(listed is not None, f"/metrics family {fam} is in exported_metrics.txt"):
            checks.check(listed.kind == typ, f"{fam} type", f"{typ} vs {listed.kind}")
    for name, labels, _ in samples:
        if name in exported.series:
            _, allowed = exported.series[name]
            extra = set(labels) - allowed
            if extra:
                checks.check(False, f"{name} labels", f"not in exported_metrics.txt: {sorted(extra)}")
    for fam in exported.families.values():
        if fam.kind != "scrape" and not fam.pending:
            checks.check(fam.name in types, f"the agent exports {fam.name}")
        if fam.pending and fam.name in types:
            print(f"  note: {fam.name} is exported now: drop its pending mark in exported_metrics.txt")
    exported_now = set(types)

    # ---- Prometheus keeps the workload labels as the agent exports them
    web = prom.series(f'imds_requests_total{{workload="web"}}')
    checks.check(bool(web), "web's series in Prometheus")
    for s in web:
        keys = set(s) - {"__name__"}
        checks.check(keys == exported.labels_of("imds_requests_total"), "labels of a pod's series in Prometheus",
                     sorted(keys))
        checks.check(s.get("namespace") == "shop" and s.get("pod") == pods["web"]["pod"]
                     and s.get("node") == NODE, "pod labels survive the ServiceMonitor relabelings", s)
    host = prom.series(f'imds_requests_total{{workload="{unit}"}}')
    checks.check(bool(host) and all("namespace" not in s and "pod" not in s for s in host),
                 "a host service's series has no namespace/pod (not the agent pod's)", host[:2])

    # ---- dashboards: variables, then every panel query
    now = time.time()
    n_queries = 0
    dump = [] if os.environ.get("IMDSWATCH_E2E_DUMP") else None
    for name, db in d.load_dashboards().items():
        uid_ = db["uid"]
        values = VARIABLES[uid_]
        for v in db["templating"]["list"]:
            if v["type"] != "query":
                continue
            selector, label = d.parse_label_values(d.variable_query(v))
            expr = d.grafana_substitute(selector, values)
            found = {s.get(label, "") for s in prom.series(expr)} - {""}
            n_queries += 1
            chosen = values[v["name"]]
            chosen = [x for x in (chosen if isinstance(chosen, list) else [chosen]) if x != ".*"]
            checks.check(found and set(chosen) <= found, f"{uid_} variable ${v['name']}",
                         f"{expr} lists {sorted(found)}, want {chosen}")
        for p in d.panels_of(db):
            for t in p.get("targets", []):
                expr = d.grafana_substitute(t["expr"], values)
                n_queries += 1
                what = f"{uid_} / {p['title']} / {t['refId']}"
                try:
                    instant = prom.query(expr, at=now)
                    data = instant["status"] == "success" and has_finite(instant)
                    if data and not t.get("instant"):
                        ranged = prom.query_range(expr, now - 60, now, "5s")
                        data = ranged["status"] == "success" and has_finite(ranged)
                except Exception as e:  # noqa: BLE001
                    checks.check(False, what, f"query error: {e}: {expr}")
                    continue
                if dump is not None:
                    dump.append({"panel": what, "expr": expr, "result": instant["data"]["result"][:8]})
                empty_ok = EXPECTED_EMPTY.get((uid_, p["title"]))
                if empty_ok and empty_ok[0] not in exported_now:
                    checks.check(not data, f"{what} is empty as expected ({empty_ok[1]})",
                                 "it has data now: remove it from EXPECTED_EMPTY")
                    print(f"  expected empty: {what}: {empty_ok[1]}")
                    continue
                checks.check(data, f"{what} returns data", expr)
    print(f"[{time.monotonic() - t0:5.1f}s] {n_queries} dashboard queries run", flush=True)
    if dump is not None:
        import json
        with open(os.environ["IMDSWATCH_E2E_DUMP"], "w") as f:
            json.dump(dump, f, indent=1)

    # ---- rules
    def rules_evaluated():
        groups = k.http_json(prom.url + "/api/v1/rules")["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        return rules if rules and all(r.get("health") != "unknown" for r in rules) else None

    rules = k.wait_for(rules_evaluated, 10, "every rule evaluated")
    with open(d.RULES_FILE) as f:
        import yaml
        expected = [r for g in yaml.safe_load(f)["groups"] for r in g["rules"]]
    checks.check(len(rules) == len(expected), "Prometheus loaded every rule", f"{len(rules)} of {len(expected)}")
    for r in rules:
        checks.check(r["health"] == "ok" and not r.get("lastError"), f"rule {r['name']} evaluates",
                     r.get("lastError"))
    for r in expected:
        name = r["alert"]
        result = prom.query(r["expr"])
        if not checks.check(result["status"] == "success", f"{name} expression runs", result):
            continue
        got = {s["metric"].get("workload", "") for s in result["data"]["result"]}
        checks.check(got == ALERT_WORKLOADS[name], f"{name} expression returns exactly its scenario's workloads",
                     f"got {sorted(got)}, want {sorted(ALERT_WORKLOADS[name])}")
        checks.check(not (got & HEALTHY), f"{name} silent for the healthy pods", sorted(got & HEALTHY))
    alerts = k.http_json(prom.url + "/api/v1/alerts")["data"]["alerts"]
    firing = {(a["labels"]["alertname"], a["labels"].get("workload")): a for a in alerts if a["state"] == "firing"}
    for name, rule in ((r["alert"], r) for r in expected if "for" not in r):
        for workload in ALERT_WORKLOADS[name]:
            a = firing.get((name, workload))
            if checks.check(a is not None, f"{name} fires for {workload}", sorted(firing)):
                desc = a["annotations"].get("description", "")
                pod = next(p for p in pods.values() if p["workload"] == workload)
                checks.check(pod["pod"] in desc and "Fix:" in desc, f"{name} names the pod and the fix", desc)

    # ---- nothing secret reached Prometheus
    everything = str(prom.series('{__name__=~"imds.+"}'))
    checks.check(CANARY not in everything, "no credential secret in Prometheus")

    # ---- the agent goes away: ImdswatchAgentDown's expression turns true
    down = next(r for r in expected if r["alert"] == "ImdswatchAgentDown")
    agent.stop()
    try:
        k.wait_for(lambda: prom.vector(down["expr"]), 10, "up == 0")
        checks.check(True, "ImdswatchAgentDown's expression is true once the agent is gone")
    except TimeoutError:
        checks.check(False, "ImdswatchAgentDown's expression is true once the agent is gone")
    print(f"[{time.monotonic() - t0:5.1f}s] checks done; cleaning up", flush=True)
    if checks.failed:
        print("---- agent log (tail)\n" + agent.log()[-3000:])


if __name__ == "__main__":
    main()
