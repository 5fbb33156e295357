"""Helpers of the deploy kernel tests (capabilities_test.py, e2e_prometheus_test.py): prerequisites, child
processes, kubelet-style cgroups, the fixtures' topology, HTTP and the Prometheus text format. Everything a
test creates is registered with a Cleanup and removed even when the test fails or is interrupted (SIGTERM
from CTest's timeout included)."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import deploylib as d  # noqa: E402

FIXTURES = os.path.join(d.REPO, "tests", "fixtures")
PY = "/usr/bin/python3"
SKIP = 77  # CTest SKIP_RETURN_CODE


def in_ci():
    return os.environ.get("CI") == "true"


def cgroup2_root():
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            if fields[sep + 1] == "cgroup2":
                return fields[4]
    return None


def unavailable(extra_tools=()):
    """Why the kernel tests cannot run here ("" when they can)."""
    if os.geteuid() != 0:
        return "needs root"
    if not cgroup2_root():
        return "no cgroup v2 mount"
    if not os.access("/sys/kernel/btf/vmlinux", os.R_OK):
        return "no kernel BTF"
    if not os.access(d.agent_binary(), os.X_OK):
        return f"{d.agent_binary()} is not built"
    for tool in ("capsh", "unshare", "nsenter", "curl", "ip") + tuple(extra_tools):
        if not shutil.which(tool):
            return f"{tool} is not installed (scripts/install-deps.sh)"
    return ""


def skip_or_fail(why):
    """CI=true: a kernel test that cannot run fails; elsewhere it is skipped."""
    if in_ci():
        print(f"FAIL: kernel test cannot run in CI: {why}", flush=True)
        sys.exit(1)
    print(f"SKIP: {why}", flush=True)
    sys.exit(SKIP)


class Interrupted(Exception):
    pass


def _on_signal(signum, frame):
    raise Interrupted(f"signal {signum}")


class Cleanup:
    """LIFO undo stack. `with Cleanup() as c:` runs everything registered on exit, whatever happens; SIGTERM
    and SIGINT become an exception so the undo runs."""

    def __init__(self):
        self.undo = []

    def __enter__(self):
        signal.signal(signal.SIGTERM, _on_signal)
        signal.signal(signal.SIGINT, _on_signal)
        return self

    def push(self, fn, *args, **kwargs):
        self.undo.append((fn, args, kwargs))

    def __exit__(self, *exc):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        while self.undo:
            fn, args, kwargs = self.undo.pop()
            try:
                fn(*args, **kwargs)
            except Exception as e:  # noqa: BLE001 - keep undoing
                print(f"cleanup: {getattr(fn, '__name__', fn)}: {e}", file=sys.stderr)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        return False

    def tempdir(self, prefix):
        path = tempfile.mkdtemp(prefix=prefix)
        self.push(shutil.rmtree, path, ignore_errors=True)
        return path


class Proc:
    """A child in its own process group, in a cgroup and/or netns if asked; stopped (SIGTERM, then
    SIGKILL, whole group) by stop()."""

    def __init__(self, argv, log=None, cgroup=None, netns=None, env=None, cleanup=None):
        if netns:
            argv = ["nsenter", f"--net=/run/netns/{netns}", "--"] + list(argv)
        self.argv = argv
        self.log_path = log
        out = open(log, "ab") if log else subprocess.DEVNULL

        def pre():
            if cgroup:
                with open(os.path.join(cgroup, "cgroup.procs"), "w") as f:
                    f.write("0")

        full_env = dict(os.environ)
        for k in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "no_proxy", "NO_PROXY"):
            full_env.pop(k, None)
        full_env.update(env or {})
        self.p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT if log else subprocess.DEVNULL,
                                  stdin=subprocess.DEVNULL, preexec_fn=pre, start_new_session=True, env=full_env)
        if log:
            out.close()
        if cleanup:
            cleanup.push(self.stop)

    @property
    def pid(self):
        return self.p.pid

    def running(self):
        return self.p.poll() is None

    def stop(self, timeout=5):
        if self.p.poll() is None:
            try:
                os.killpg(self.p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.p.wait(5)
        return self.p.returncode

    def log(self):
        if not self.log_path or not os.path.exists(self.log_path):
            return ""
        with open(self.log_path, errors="replace") as f:
            return f.read()


def run(argv, timeout=30, check=True, **kw):
    out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)
    if check and out.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} -> {out.returncode}: {out.stdout}{out.stderr}")
    return out


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(pred, timeout, what, interval=0.1):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


_NOPROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_get(url, timeout=5):
    """(status, body); status 0 when unreachable."""
    try:
        with _NOPROXY.open(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")
    except (urllib.error.URLError, ConnectionError, OSError):
        return 0, ""


def http_json(url, timeout=10):
    status, body = http_get(url, timeout)
    if status != 200:
        raise RuntimeError(f"GET {url} -> {status}: {body[:500]}")
    return json.loads(body)


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """[(name, {labels}, value)] of the Prometheus text format."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if m:
            out.append((m.group(1), dict(_LABEL.findall(m.group(2) or "")), float(m.group(3))))
    return out


def families_of(text):
    """{family: type} from the # TYPE lines."""
    return dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))


def total(samples, name, **match):
    return sum(v for n, l, v in samples if n == name and all(l.get(k) == w for k, w in match.items()))


def all_capabilities():
    """The capabilities in this process's bounding set, capsh names."""
    out = run(["capsh", "--print"]).stdout
    m = re.search(r"^Bounding set =(.*)$", out, re.M)
    return [c for c in m.group(1).strip().split(",") if c]


def capsh_exactly(caps, argv):
    """argv run with exactly `caps` (capsh names) in the bounding, effective, permitted and inheritable
    sets and no_new_privs set, as a container runtime starts a uid-0 container with capabilities dropped
    to ALL plus `caps` and allowPrivilegeEscalation: false."""
    drop = [c for c in all_capabilities() if c not in caps]
    return ["capsh", "--drop=" + ",".join(drop), "--caps=" + ",".join(caps) + "+eip", "--no-new-privs",
            "--", "-c", 'exec "$0" "$@"'] + list(argv)


def cap_mask(caps):
    numbers = {}
    for c in caps:
        out = run(["capsh", "--explain=" + c], check=False).stdout
        m = re.match(r"^\S+ \((\d+)\)", out)
        if not m:
            raise RuntimeError(f"capsh does not know {c}: {out}")
        numbers[c] = int(m.group(1))
    mask = 0
    for n in numbers.values():
        mask |= 1 << n
    return mask


def proc_status(pid):
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def k8s_cap_name(cap):
    """Kubernetes' capability name (BPF) -> capsh's (cap_bpf)."""
    return "cap_" + cap.lower().removeprefix("cap_")


# --------------------------------------------------------------------------------------------------------
# Pods: the fixtures' topology, kubelet-style cgroups and the API stand-in


class Topology:
    def __init__(self, prefix, pods, cleanup):
        self.prefix, self.pods = prefix, pods
        cleanup.push(self.down)
        run([os.path.join(FIXTURES, "topology.sh"), "up", prefix, str(pods)], timeout=120)

    def down(self):
        run([os.path.join(FIXTURES, "topology.sh"), "down", self.prefix, str(self.pods)], timeout=120, check=False)

    def netns(self, host):
        return f"{self.prefix}-{host}"


class Cgroup:
    """A cgroup directory (parents created as needed) under the v2 root; on cleanup its processes are
    killed and the directories removed, innermost first."""

    def __init__(self, relative, cleanup):
        self.root = cgroup2_root()
        self.relative = relative
        self.created = []
        path = self.root
        for part in [p for p in relative.split("/") if p]:
            path = os.path.join(path, part)
            if not os.path.isdir(path):
                os.mkdir(path)
                self.created.append(path)
        self.path = path
        cleanup.push(self.remove)

    def remove(self):
        kill = os.path.join(self.path, "cgroup.kill")
        if os.path.exists(kill):
            try:
                with open(kill, "w") as f:
                    f.write("1")
            except OSError:
                pass
        try:
            with open(os.path.join(self.path, "cgroup.procs")) as f:
                for pid in f.read().split():
                    try:
                        os.kill(int(pid), signal.SIGKILL)
                    except ProcessLookupError:
                        pass
        except OSError:
            pass
        for path in reversed(self.created):
            for _ in range(100):
                try:
                    os.rmdir(path)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.05)


def kubelet_cgroup(pod_uid, container_id, qos="besteffort"):
    uid = pod_uid.replace("-", "_")
    return (f"/kubepods.slice/kubepods-{qos}.slice/kubepods-{qos}-pod{uid}.slice/"
            f"cri-containerd-{container_id}.scope")
