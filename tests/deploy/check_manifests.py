#!/usr/bin/python3
"""Kubernetes manifests (deploy/): they parse; the kustomize base renders (the same as `kubectl kustomize`
where kubectl exists); RBAC is get/list/watch on pods only; the DaemonSet is least privilege with exactly the
capabilities README.md's "Privileges" section and src/preflight.cpp's RequiredCapabilities name (SYS_RESOURCE
only through the kernel-before-5.11 component, the optional SYSLOG through kernel-before-5.17); every flag, port and path it references exists in the agent
(`imdswatch --help`, README.md, src/http_server.cpp); Service, ServiceMonitor and rules agree on port, path
and job. CTest: deploy_manifests."""
import os
import re
import shutil
import sys
import tempfile
import unittest

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import deploylib as d  # noqa: E402

# the capability each kernel component adds, and the kernel before which it is needed
COMPONENTS = {"SYS_RESOURCE": ("components/kernel-before-5.11", "5.11"),
              "SYSLOG": ("components/kernel-before-5.17", "5.17")}


def documented_capabilities():
    """README.md "## Privileges": {CAP_X: (the kernel before which only it is needed, or None; optional?)}."""
    with open(os.path.join(d.REPO, "README.md")) as f:
        text = f.read()
    m = re.search(r"^## Privileges\s*$(.*?)(?=^## )", text, re.S | re.M)
    assert m, "README.md has no '## Privileges' section"
    section = m.group(1)
    caps = {}
    for cap in re.finditer(r"`(CAP_[A-Z_]+)`", section):
        # what its own clause says before it: the text since the last ")" or sentence end
        before = re.split(r"\)|\. ", section[max(0, cap.start() - 80):cap.start()])[-1]
        kernel = re.search(r"before (\d+\.\d+)", before)
        caps.setdefault(cap.group(1), (kernel.group(1) if kernel else None, "optional" in before))
    return caps


def preflight_capabilities():
    """src/preflight.cpp RequiredCapabilities(): the names it checks."""
    with open(os.path.join(d.REPO, "src", "preflight.cpp")) as f:
        text = f.read()
    m = re.search(r"RequiredCapabilities\(\)\s*\{(.*?)\n\}", text, re.S)
    assert m, "RequiredCapabilities() not found in src/preflight.cpp"
    return set(re.findall(r"\{\s*CAP_[A-Z_]+\s*,\s*\"(CAP_[A-Z_]+)\"", m.group(1)))


def container(docs):
    ds = d.find(docs, "DaemonSet", "imdswatch")
    (c,) = ds["spec"]["template"]["spec"]["containers"]
    return ds, c


def parse_args(args):
    """['--a=b', '--c', 'd', '--e'] -> {'--a': 'b', '--c': 'd', '--e': None}."""
    out, i = {}, 0
    while i < len(args):
        a = args[i]
        if not a.startswith("--"):
            raise ValueError(f"unexpected argument {a!r}")
        if "=" in a:
            k, v = a.split("=", 1)
            out[k] = v
        elif i + 1 < len(args) and not args[i + 1].startswith("--"):
            out[a] = args[i + 1]
            i += 1
        else:
            out[a] = None
        i += 1
    return out


class ManifestsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.docs = d.render_kustomize_python(d.DEPLOY)
        cls.ds, cls.c = container(cls.docs)

    def test_every_yaml_file_parses(self):
        n = 0
        for root, _, files in os.walk(d.DEPLOY):
            for f in files:
                if f.endswith((".yaml", ".yml")):
                    with self.subTest(file=f):
                        docs = d.load_yaml_docs(os.path.join(root, f))
                        self.assertTrue(docs)
                        n += 1
        self.assertGreaterEqual(n, 10)

    def test_base_has_every_object_in_the_namespace(self):
        kinds = sorted(doc["kind"] for doc in self.docs)
        self.assertEqual(kinds, sorted(["Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "DaemonSet",
                                        "Service", "ServiceMonitor", "PrometheusRule"]))
        for doc in self.docs:
            with self.subTest(kind=doc["kind"]):
                self.assertEqual(doc["metadata"]["name"], "imdswatch")
                if doc["kind"] in d.NAMESPACED:
                    self.assertEqual(doc["metadata"]["namespace"], "imdswatch")
                self.assertEqual(doc["metadata"]["labels"].get("app.kubernetes.io/part-of"), "imdswatch")

    def test_renders_like_kubectl_kustomize(self):
        if not shutil.which("kubectl"):
            self.skipTest("kubectl not installed: the Python renderer alone is checked")
        self.assertEqual(d.by_kind_name(d.kubectl_kustomize(d.DEPLOY)), d.by_kind_name(self.docs))
        components = [component for component, _ in COMPONENTS.values()]
        with tempfile.TemporaryDirectory() as tmp:
            with open(os.path.join(tmp, "kustomization.yaml"), "w") as f:
                yaml.safe_dump({"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
                                "resources": [os.path.relpath(d.DEPLOY, tmp)],
                                "components": [os.path.relpath(os.path.join(d.DEPLOY, c), tmp)
                                               for c in components]}, f)
            self.assertEqual(d.by_kind_name(d.kubectl_kustomize(tmp)),
                             d.by_kind_name(d.render_kustomize_python(d.DEPLOY, components=components)))

    def test_rbac_is_get_list_watch_on_pods_only(self):
        role = d.find(self.docs, "ClusterRole", "imdswatch")
        self.assertEqual(role["rules"], [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}])
        binding = d.find(self.docs, "ClusterRoleBinding", "imdswatch")
        self.assertEqual(binding["roleRef"], {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                              "name": "imdswatch"})
        self.assertEqual(binding["subjects"], [{"kind": "ServiceAccount", "name": "imdswatch",
                                                "namespace": "imdswatch"}])
        d.find(self.docs, "ServiceAccount", "imdswatch")
        self.assertEqual(self.ds["spec"]["template"]["spec"]["serviceAccountName"], "imdswatch")

    def test_capabilities_are_exactly_the_documented_ones(self):
        documented = documented_capabilities()
        required = {c for c, (_, optional) in documented.items() if not optional}
        self.assertEqual(required, preflight_capabilities(),
                         "README.md Privileges and src/preflight.cpp RequiredCapabilities disagree")
        self.assertEqual({c for c, (_, optional) in documented.items() if optional}, {"CAP_SYSLOG"})
        always = {c[len("CAP_"):] for c, (kernel, _) in documented.items() if not kernel}
        conditional = {c[len("CAP_"):]: kernel for c, (kernel, _) in documented.items() if kernel}
        self.assertEqual(conditional, {cap: kernel for cap, (_, kernel) in COMPONENTS.items()})
        caps = self.c["securityContext"]["capabilities"]
        self.assertEqual(caps["drop"], ["ALL"])
        self.assertEqual(sorted(caps["add"]), sorted(always))
        self.assertEqual(len(caps["add"]), len(set(caps["add"])))
        # each kernel component adds exactly its capability
        for cap, (component, _) in COMPONENTS.items():
            with self.subTest(component=component):
                _, c = container(d.render_kustomize_python(d.DEPLOY, components=[component]))
                self.assertEqual(sorted(c["securityContext"]["capabilities"]["add"]), sorted(always | {cap}))

    def test_each_capability_says_why(self):
        with open(os.path.join(d.DEPLOY, "daemonset.yaml")) as f:
            text = f.read()
        for cap in self.c["securityContext"]["capabilities"]["add"]:
            with self.subTest(cap=cap):
                self.assertRegex(text, rf"(?m)^\s*- {cap}\s+#\s*\S.{{20,}}$", "no comment saying why")

    def test_least_privilege(self):
        spec = self.ds["spec"]["template"]["spec"]
        sc = self.c["securityContext"]
        self.assertIs(sc["privileged"], False)
        self.assertIs(sc["allowPrivilegeEscalation"], False)
        self.assertIs(sc["readOnlyRootFilesystem"], True)
        for host in ("hostNetwork", "hostPID", "hostIPC"):
            self.assertFalse(spec.get(host, False), host)
        self.assertEqual(spec["securityContext"]["seccompProfile"]["type"], "RuntimeDefault")
        # runAsNonRoot cannot be: the file must say so where it sets it
        with open(os.path.join(d.DEPLOY, "daemonset.yaml")) as f:
            text = f.read()
        self.assertIs(sc["runAsNonRoot"], False)
        self.assertRegex(text, r"runAsNonRoot is impossible")

    def test_host_mounts_are_read_only_cgroup_and_btf(self):
        spec = self.ds["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in spec["volumes"]}
        host = {name: v["hostPath"]["path"] for name, v in volumes.items() if "hostPath" in v}
        self.assertEqual(sorted(host.values()), ["/sys/fs/cgroup", "/sys/kernel/btf"])
        self.assertEqual(set(volumes), set(host), "only the two hostPath volumes")
        mounts = {m["name"]: m for m in self.c["volumeMounts"]}
        self.assertEqual(set(mounts), set(volumes))
        for m in mounts.values():
            self.assertIs(m.get("readOnly"), True, m["name"])
        btf = next(m for n, m in mounts.items() if host[n] == "/sys/kernel/btf")
        self.assertEqual(btf["mountPath"], "/sys/kernel/btf", "libbpf and the agent read /sys/kernel/btf/vmlinux")

    def test_node_name_from_the_downward_api(self):
        env = {e["name"]: e for e in self.c["env"]}
        self.assertEqual(env["NODE_NAME"]["valueFrom"], {"fieldRef": {"fieldPath": "spec.nodeName"}})
        with open(os.path.join(d.REPO, "README.md")) as f:
            self.assertIn("$NODE_NAME", f.read())

    def test_every_flag_exists_in_the_agent(self):
        help_text = d.agent_help()
        flags = d.help_flags(help_text)
        self.assertIn("--web.listen-address", flags, "imdswatch --help did not list its flags")
        args = parse_args(self.c.get("args", []))
        self.assertTrue(args)
        for flag, value in args.items():
            with self.subTest(flag=flag):
                self.assertIn(flag, flags)
        # values the help constrains
        m = re.search(r"--log-format TEXT:\{([a-z,]+)\}", help_text)
        if "--log-format" in args:
            self.assertIn(args["--log-format"], m.group(1).split(","))
        self.assertNotIn("--no-kube", args, "the DaemonSet names pods through the API")
        # --cgroup-root is the host cgroup mount
        mounts = {m["mountPath"]: m["name"] for m in self.c["volumeMounts"]}
        vols = {v["name"]: v for v in self.ds["spec"]["template"]["spec"]["volumes"]}
        root = args["--cgroup-root"]
        self.assertIn(root, mounts)
        self.assertEqual(vols[mounts[root]]["hostPath"]["path"], "/sys/fs/cgroup")

    def test_port_is_10169_everywhere(self):
        args = parse_args(self.c["args"])
        port = int(args["--web.listen-address"].rsplit(":", 1)[1])
        self.assertEqual(port, 10169)
        with open(os.path.join(d.REPO, "README.md")) as f:
            readme = f.read()
        self.assertRegex(readme, r"`--web\.listen-address`\s*\|\s*`:10169`")
        ports = {p["name"]: p for p in self.c["ports"]}
        self.assertEqual(ports["metrics"]["containerPort"], port)
        svc = d.find(self.docs, "Service", "imdswatch")
        (sp,) = svc["spec"]["ports"]
        self.assertEqual((sp["name"], sp["port"], sp["targetPort"]), ("metrics", port, "metrics"))

    def test_probes_use_the_agents_paths(self):
        with open(os.path.join(d.REPO, "src", "http_server.cpp")) as f:
            served = set(re.findall(r'add\("(/[a-z]+)"', f.read()))
        self.assertLessEqual({"/metrics", "/healthz", "/readyz"}, served)
        ports = {p["name"] for p in self.c["ports"]}
        probes = {k: self.c[k]["httpGet"] for k in ("livenessProbe", "readinessProbe", "startupProbe")}
        self.assertEqual(probes["livenessProbe"]["path"], "/healthz")
        self.assertEqual(probes["readinessProbe"]["path"], "/readyz")
        for name, probe in probes.items():
            with self.subTest(probe=name):
                self.assertIn(probe["path"], served)
                self.assertIn(probe["port"], ports)

    def test_runs_on_every_node(self):
        spec = self.ds["spec"]["template"]["spec"]
        self.assertIn({"operator": "Exists"}, spec["tolerations"], "tolerate every taint")
        self.assertEqual(spec["priorityClassName"], "system-node-critical")
        self.assertNotIn("nodeSelector", spec)
        self.assertNotIn("affinity", spec)

    def test_resources_are_set_and_explained(self):
        res = self.c["resources"]
        for k in ("cpu", "memory"):
            self.assertIn(k, res["requests"])
        self.assertIn("memory", res["limits"])
        with open(os.path.join(d.DEPLOY, "daemonset.yaml")) as f:
            text = f.read()
        # sized from the benchmark's figures, which the comment cites
        self.assertRegex(text, r"(?s)From bench/README\.md.*resources:")

    def test_service_and_service_monitor_select_the_agent(self):
        pod_labels = self.ds["spec"]["template"]["metadata"]["labels"]
        sel = self.ds["spec"]["selector"]["matchLabels"]
        self.assertLessEqual(sel.items(), pod_labels.items())
        svc = d.find(self.docs, "Service", "imdswatch")
        self.assertEqual(svc["spec"]["clusterIP"], "None", "headless")
        self.assertLessEqual(svc["spec"]["selector"].items(), pod_labels.items())
        sm = d.find(self.docs, "ServiceMonitor", "imdswatch")
        self.assertLessEqual(sm["spec"]["selector"]["matchLabels"].items(), svc["metadata"]["labels"].items())
        (ep,) = sm["spec"]["endpoints"]
        self.assertEqual(ep["port"], svc["spec"]["ports"][0]["name"])
        self.assertEqual(ep["path"], "/metrics")
        # job="imdswatch", which every rule and dashboard selects
        self.assertEqual(svc["metadata"]["labels"][sm["spec"]["jobLabel"]], "imdswatch")
        with open(d.RULES_FILE) as f:
            self.assertIn('job="imdswatch"', f.read())
        # the agent pod's namespace/pod/container target labels would clash with the workload labels
        drops = [r for r in ep.get("relabelings", []) if r.get("action") == "labeldrop"]
        self.assertTrue(any(re.fullmatch(r["regex"], l) for r in drops for l in ("namespace",)))
        for label in ("namespace", "pod", "container"):
            self.assertTrue(any(re.fullmatch(r["regex"], label) for r in drops), label)
        self.assertFalse(ep.get("honorLabels", False))

    def test_image_comes_from_the_kustomization(self):
        (k,) = d.load_yaml_docs(os.path.join(d.DEPLOY, "kustomization.yaml"))
        (img,) = k["images"]
        self.assertEqual(self.c["image"], f"{img['name']}:{img['newTag']}")
        with open(os.path.join(d.REPO, "CMakeLists.txt")) as f:
            version = re.search(r"project\(imdswatch VERSION ([0-9.]+)", f.read()).group(1)
        self.assertEqual(img["newTag"], version, "image tag = the project version")

    def test_deploy_docs_say_why_kustomize(self):
        with open(os.path.join(d.REPO, "docs", "deploy.md")) as f:
            text = f.read()
        self.assertRegex(text, r"(?i)why kustomize")
        self.assertIn("docker build -f deploy/Dockerfile", text)


if __name__ == "__main__":
    unittest.main(verbosity=2)
