#!/usr/bin/python3
"""The agent runs, for real, with only what the DaemonSet grants (CTest: deploy_capabilities, label kernel).

The agent is started from the DaemonSet's own container spec: its args (listen address moved to a free
loopback port, --cgroup-root to where the test mounts the host cgroup tree), its NODE_NAME, and its
securityContext emulated: uid 0 with exactly the added capabilities in the bounding, effective, permitted and
inheritable sets, no_new_privs (allowPrivilegeEscalation: false), a read-only root filesystem, and the two
hostPath volumes as read-only bind mounts (cgroup tree; /sys/kernel/btf over itself), in a private mount
namespace. Then:

- the probe paths of the DaemonSet answer 200 on its port, /healthz with every program attached (the five
  cgroup programs and the kfree_skb tracepoint (tp_btf, raw_tp before 5.17), which the agent would skip with a warning);
- /proc shows the process holds exactly those capabilities and no_new_privs;
- an IMDSv2 token PUT and two credential GETs by curl to a loopback metadata stand-in (tests/fixtures/
  imds_standin.py, watched with --endpoint) are counted on the ServiceMonitor's metrics path;
- each capability is needed: the BPF object loads (bpftool) with the three, and the kernel refuses it
  without any one of them;
- the optional CAP_SYSLOG of deploy/components/kernel-before-5.17 gives the raw_tp kfree_skb filter (kernels
  before 5.17, forced with --forwarding-drops.raw-tp) the forwarding code's addresses, and the agent gives it
  up once loaded; without it the agent says the addresses were hidden.

Without root/BPF it is skipped (exit 77), or fails with CI=true.
"""
import os
import re
import shutil
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import deploylib as d  # noqa: E402
import kernellib as k  # noqa: E402

from check_manifests import container, parse_args  # noqa: E402

NODE = "node-cap"
SYSLOG_COMPONENT = "components/kernel-before-5.17"


class CapabilitiesTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        docs = d.render_kustomize_python(d.DEPLOY)
        cls.ds, cls.c = container(docs)
        cls.sm = d.find(docs, "ServiceMonitor", "imdswatch")
        sc = cls.c["securityContext"]
        assert sc["capabilities"]["drop"] == ["ALL"]
        cls.caps = [k.k8s_cap_name(c) for c in sc["capabilities"]["add"]]
        cls.cleanup = k.Cleanup().__enter__()
        try:
            cls._start()
        except BaseException:
            cls.cleanup.__exit__(None, None, None)
            raise

    @classmethod
    def tearDownClass(cls):
        cls.cleanup.__exit__(None, None, None)

    @classmethod
    def _start(cls):
        c = cls.cleanup
        cls.work = c.tempdir("imdswatch-caps-")
        # metadata stand-in on loopback, Kubernetes API stand-in with no pods
        cls.imds_port = k.free_port()
        ready = os.path.join(cls.work, "imds.ready")
        cls.imds = k.Proc([k.PY, os.path.join(k.FIXTURES, "imds_standin.py"), "--listen",
                           f"127.0.0.1:{cls.imds_port}", "--ready-file", ready],
                          log=os.path.join(cls.work, "imds.log"), cleanup=c)
        k.wait_for(lambda: os.path.exists(ready), 10, "the metadata stand-in")
        pods = os.path.join(cls.work, "pods")
        os.mkdir(pods)
        cls.kube_port = k.free_port()
        kready = os.path.join(cls.work, "kube.ready")
        cls.kube = k.Proc([k.PY, os.path.join(k.FIXTURES, "kube_api_standin.py"), "--pods-dir", pods, "--listen",
                           f"127.0.0.1:{cls.kube_port}", "--ready-file", kready],
                          log=os.path.join(cls.work, "kube.log"), cleanup=c)
        k.wait_for(lambda: os.path.exists(kready), 10, "the Kubernetes API stand-in")

        # the DaemonSet's container, adapted to this machine
        volumes = {v["name"]: v for v in cls.ds["spec"]["template"]["spec"]["volumes"]}
        cls.mounts = []  # (host path, path in the "container")
        for m in cls.c["volumeMounts"]:
            assert m["readOnly"] is True
            host = volumes[m["name"]]["hostPath"]["path"]
            if host == "/sys/fs/cgroup":
                host = k.cgroup2_root()  # the v2 mount, wherever this machine has it
            target = m["mountPath"]
            if target.startswith("/host/"):
                target = os.path.join(cls.work, "root", target.lstrip("/"))
                os.makedirs(target)
            cls.mounts.append((host, target, m["mountPath"]))
        cls.env = {}
        for e in cls.c["env"]:
            if e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "spec.nodeName":
                cls.env[e["name"]] = NODE
        assert "NODE_NAME" in cls.env
        cls.port = k.free_port()
        cls.agent = cls._start_agent(cls.caps, cls.port, "agent.log")

    @classmethod
    def _start_agent(cls, caps, port, log, extra_args=()):
        """The DaemonSet's container with these capabilities, listening on port; returns once ready."""
        argv = [d.agent_binary()]
        for flag, value in parse_args(cls.c["args"]).items():
            if flag == "--web.listen-address":
                value = f"127.0.0.1:{port}"
            elif flag == "--cgroup-root":
                value = next(t for _, t, m in cls.mounts if m == value)
            argv += [flag] if value is None else [f"{flag}={value}"]
        argv += [f"--kube-api-server=http://127.0.0.1:{cls.kube_port}", f"--endpoint=127.0.0.1:{cls.imds_port}"]
        argv += list(extra_args)
        # private mount namespace: read-only binds of the hostPath volumes, read-only root, then the caps
        script = ["set -e"]
        for host, target, _ in cls.mounts:
            script += [f"mount --bind '{host}' '{target}'", f"mount -o remount,bind,ro '{target}'"]
        if cls.c["securityContext"]["readOnlyRootFilesystem"]:
            script.append("mount -o remount,bind,ro /")
        script.append('exec "$@"')
        agent = k.Proc(["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", "\n".join(script),
                        "sh"] + k.capsh_exactly(caps, argv),
                       log=os.path.join(cls.work, log), env=cls.env, cleanup=cls.cleanup)
        base = f"http://127.0.0.1:{port}"
        readiness = cls.c["readinessProbe"]["httpGet"]["path"]
        try:
            k.wait_for(lambda: not agent.running() or k.http_get(base + readiness)[0] == 200, 30,
                       "the agent's readiness probe")
        except TimeoutError:
            raise AssertionError("agent not ready:\n" + agent.log())
        if not agent.running():
            raise AssertionError("agent exited:\n" + agent.log())
        return agent

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def test_caps_are_the_three_documented(self):
        self.assertEqual(sorted(self.caps), ["cap_bpf", "cap_net_admin", "cap_perfmon"])

    def test_probes_answer(self):
        for name in ("startupProbe", "livenessProbe", "readinessProbe"):
            probe = self.c[name]["httpGet"]
            with self.subTest(probe=name):
                ports = {p["name"]: p["containerPort"] for p in self.c["ports"]}
                self.assertEqual(ports[probe["port"]], 10169)
                status, body = k.http_get(self.url(probe["path"]))
                self.assertEqual(status, 200, body)
        # every program attached: the five cgroup programs and, where the kernel has it, the kfree_skb tracepoint
        # (optional to the agent, so check its log does not say it was skipped)
        status, body = k.http_get(self.url("/healthz"))
        m = re.search(r"(\d+) programs attached", body)
        self.assertTrue(m, body)
        log = self.agent.log()
        self.assertEqual(int(m.group(1)), len(re.findall(r"\battached \S+:\S+ at ", log)), log)
        self.assertGreaterEqual(int(m.group(1)), 5)
        self.assertNotIn("not attached", log)
        print(f"\n  {body.strip()} with {self.caps}", end=" ", flush=True)

    def test_process_holds_exactly_the_capabilities(self):
        status = k.proc_status(self.agent.pid)
        self.assertEqual(os.readlink(f"/proc/{self.agent.pid}/exe"), os.path.realpath(d.agent_binary()))
        want = k.cap_mask(self.caps)
        for field in ("CapEff", "CapPrm", "CapBnd"):
            self.assertEqual(int(status[field], 16), want, f"{field} {status[field]}")
        self.assertEqual(int(status["CapAmb"], 16), 0)
        self.assertEqual(status["NoNewPrivs"].strip(), "1")
        self.assertEqual(status["Uid"].split()[0], "0")
        # the host mounts really are read-only for it, and so is its root
        with open(f"/proc/{self.agent.pid}/mountinfo") as f:
            mountinfo = [line.split() for line in f]
        for _, target, _ in self.mounts:
            opts = [m[5] for m in mountinfo if m[4] == target]
            self.assertTrue(opts and opts[-1].split(",")[0] == "ro", f"{target}: {opts}")
        root = [m[5] for m in mountinfo if m[4] == "/"]
        self.assertEqual(root[-1].split(",")[0], "ro")

    def test_counts_a_metadata_call(self):
        base = f"http://127.0.0.1:{self.imds_port}"
        token = k.run(["curl", "-sS", "--noproxy", "*", "-X", "PUT", "-H",
                       "X-aws-ec2-metadata-token-ttl-seconds: 60", base + "/latest/api/token"]).stdout.strip()
        self.assertTrue(token)
        for path in ("/latest/meta-data/iam/security-credentials/",
                     "/latest/meta-data/iam/security-credentials/imdswatch-test-role"):
            k.run(["curl", "-sS", "--noproxy", "*", "-o", "/dev/null", "-H", "X-aws-ec2-metadata-token: " + token,
                   base + path])
        path = self.sm["spec"]["endpoints"][0]["path"]

        def counted():
            status, body = k.http_get(self.url(path))
            s = k.parse_metrics(body) if status == 200 else []
            return s if k.total(s, "imds_requests_total", client="curl", version="v2") >= 3 else None

        try:
            samples = k.wait_for(counted, 10, "the three calls in /metrics")
        except TimeoutError:
            raise AssertionError("not counted:\n" + k.http_get(self.url(path))[1] + self.agent.log())
        for call in ("token", "credentials_list", "credentials"):
            self.assertEqual(k.total(samples, "imds_requests_total", call=call, client="curl", outcome="ok"), 1, call)

    def test_syslog_of_the_kernel_component_is_used_at_load_then_given_up(self):
        """Kernels before 5.17 (forced here with --forwarding-drops.raw-tp): with the component's CAP_SYSLOG the
        raw_tp filter gets the forwarding code's addresses from /proc/kallsyms, and the agent then holds the
        base's capabilities only; with the base alone the addresses read as zeros and the agent says so."""
        _, c = container(d.render_kustomize_python(d.DEPLOY, components=[SYSLOG_COMPONENT]))
        caps = [k.k8s_cap_name(x) for x in c["securityContext"]["capabilities"]["add"]]
        self.assertEqual(sorted(caps), sorted(self.caps + ["cap_syslog"]))
        found = r"only drops called from ip_forward and ip6_forward \(\d code ranges\) are read"
        hidden = r"ip_forward and ip6_forward not both found in /proc/kallsyms"
        # the kernel's rule (kallsyms_show_value): 2 hides from everyone; 0 shows everyone when perf allows
        sysctl = {}
        for name in ("kptr_restrict", "perf_event_paranoid"):
            with open(f"/proc/sys/kernel/{name}") as f:
                sysctl[name] = int(f.read())
        restrict, paranoid = sysctl["kptr_restrict"], sysctl["perf_event_paranoid"]
        for name, with_caps, expect in (("syslog", caps, hidden if restrict >= 2 else found),
                                        ("base", self.caps, found if restrict == 0 and paranoid <= 1 else hidden)):
            with self.subTest(caps=name):
                port = k.free_port()
                agent = self._start_agent(with_caps, port, f"agent-{name}.log", ["--forwarding-drops.raw-tp"])
                try:
                    log = agent.log()
                    self.assertRegex(log, expect)
                    # and a fleet's query finds the fallback: imdswatch_probe_mode says which
                    status, body = k.http_get(f"http://127.0.0.1:{port}{self.sm['spec']['endpoints'][0]['path']}")
                    self.assertEqual(status, 200)
                    mode = "raw_tp_forwarding_code" if expect == found else "raw_tp_every_drop"
                    samples = k.parse_metrics(body)
                    self.assertEqual(k.total(samples, "imdswatch_probe_mode", part="forwarding_drops", mode=mode), 1,
                                     body[-3000:])
                    # the cmpxchg probe program loads with the container's capabilities too
                    self.assertEqual(k.total(samples, "imdswatch_probe_mode", part="connection_claim",
                                             mode="cmpxchg"), 1, body[-3000:])
                    # and sockops may read its socket (a half-close is not a close) with them
                    self.assertEqual(k.total(samples, "imdswatch_probe_mode", part="half_close",
                                             mode="followed"), 1, body[-3000:])
                    self.assertRegex(log, r"attached \S*imds_kfree_raw\S* at ")
                    status = k.proc_status(agent.pid)
                    self.assertEqual(int(status["CapBnd"], 16), k.cap_mask(with_caps))
                    for field in ("CapEff", "CapPrm", "CapInh"):
                        self.assertEqual(int(status[field], 16), k.cap_mask(self.caps), f"{field} {status[field]}")
                finally:
                    agent.stop()

    def test_each_capability_is_needed(self):
        obj = os.path.join(d.binary_dir(), "bpf", "imdswatch.bpf.o")
        self.assertTrue(os.path.exists(obj), obj)
        bpftool = [shutil.which("bpftool")]
        self.assertTrue(bpftool[0], "bpftool missing")
        fs = os.path.join(self.work, "bpffs")
        os.makedirs(fs, exist_ok=True)

        def load(caps):
            script = f"mount -t bpf bpf '{fs}' && exec \"$@\""
            out = k.run(["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script, "sh"]
                        + k.capsh_exactly(caps, [bpftool[0], "prog", "loadall", obj, fs + "/progs"]),
                        check=False, timeout=60)
            return out.returncode, out.stdout + out.stderr

        rc, out = load(self.caps)
        self.assertEqual(rc, 0, "the object does not load with the DaemonSet's capabilities:\n" + out[-2000:])
        for cap in self.caps:
            with self.subTest(without=cap):
                rc, out = load([c for c in self.caps if c != cap])
                self.assertNotEqual(rc, 0, f"loads without {cap}: it would not be needed")
                # refused for the capability: EPERM, or a helper (bpf_probe_read_kernel, which scrubs the
                # scratch window) that the kernel offers only with CAP_PERFMON ("cannot use helper", EINVAL)
                self.assertRegex(out, r"(?i)not permitted|permission|prohibited|denied|unknown func|cannot use helper", out[-1500:])


if __name__ == "__main__":
    why = k.unavailable(extra_tools=("bpftool",))
    if why:
        k.skip_or_fail(why)
    start = time.monotonic()
    result = unittest.main(verbosity=2, exit=False).result
    print(f"capabilities test: {time.monotonic() - start:.1f}s")
    sys.exit(0 if result.wasSuccessful() else 1)
