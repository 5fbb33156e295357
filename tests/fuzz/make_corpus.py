#!/usr/bin/python3
"""make_corpus.py - (re)writes the fuzz targets' seed corpora under tests/fuzz/corpus/.

Run with /usr/bin/python3 (Debian's botocore); needs curl. Everything stays on
loopback: the metadata stand-in (tests/fixtures/imds_standin.py) and the Kubernetes API stand-in listen on
127.0.0.1, and a recording proxy between the clients and the metadata stand-in captures both byte streams
of every connection. Seeds come from:

  http_request / http_response   real client bytes (curl 7.88.1, Debian botocore 1.29.27; Ruby aws-sdk-core
                                 3.168.1's as documented in tests/fixtures/README.md) and the stand-in's answers (tokens, role list, credentials, 404,
                                 405, 429, 401, 400), plus hand-made edge cases (pipelining, 100 Continue,
                                 chunked, long heads, odd spacing) and IMDS-shaped credentials answers
  classify                       the User-Agents of tests/unit/classify_test.cpp and every path above
  cgroup_path                    kubelet / docker / systemd layouts (tests/unit/cgroup_path_test.cpp) and
                                 this machine's own cgroup tree
  pod_json, watch_stream         tests/unit/data/ and a live list + watch from kube_api_standin.py
  expiration, endpoint           real and edge-case values
  event_decoder                  ring-buffer records laid out as bpf/imdswatch.h says

Each target's input layout is described at the top of its fuzz_<target>.cpp; the prefixes written here
follow it. Re-running rewrites the files (names are content hashes), so review the diff before committing.
"""

import hashlib
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
FIX = os.path.join(ROOT, "tests", "fixtures")
CORPUS = os.path.join(HERE, "corpus")
PY = "/usr/bin/python3"
NO_CUTS = b"\0" * 6  # three 16-bit cut seeds


def write(target, data):
    if isinstance(data, str):
        data = data.encode()
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, hashlib.sha1(data).hexdigest()[:16]), "wb") as f:
        f.write(data)


# ---- live captures -------------------------------------------------------------------------------

class Recorder:
    """A TCP proxy on 127.0.0.1 that records each connection's two byte streams."""

    def __init__(self, upstream_port):
        self.upstream = upstream_port
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.lock = threading.Lock()
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            u = socket.create_connection(("127.0.0.1", self.upstream))
            rec = {"up": bytearray(), "down": bytearray()}
            with self.lock:
                self.conns.append(rec)
            threading.Thread(target=self.pump, args=(c, u, rec["up"]), daemon=True).start()
            threading.Thread(target=self.pump, args=(u, c, rec["down"]), daemon=True).start()

    @staticmethod
    def pump(src, dst, buf):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                buf += data
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def take(self):
        time.sleep(0.3)
        with self.lock:
            out, self.conns = self.conns, []
        return [(bytes(c["up"]), bytes(c["down"])) for c in out]


def start(argv, ready):
    p = subprocess.Popen(argv, stderr=subprocess.DEVNULL)
    for _ in range(100):
        if os.path.exists(ready):
            return p
        time.sleep(0.05)
    p.kill()
    sys.exit("make_corpus.py: %s did not start" % argv[1])


def capture_http(tmp):
    captures = []
    for flags in ([], ["--throttle-above", "1"], ["--token-status", "405"], ["--imdsv2-only"]):
        ready = os.path.join(tmp, "imds.ready")
        if os.path.exists(ready):
            os.unlink(ready)
        imds = start([PY, os.path.join(FIX, "imds_standin.py"), "--listen", "127.0.0.1:0", "--ready-file", ready,
                      "--cred-lifetime", "21600"] + flags, ready)
        port = int(json.load(open(ready))["listen"][0].rsplit(":", 1)[1])
        rec = Recorder(port)
        url = "http://127.0.0.1:%d" % rec.port
        runs = [
            ["curl", "-sS", "-o", "/dev/null", "-X", "PUT", "-H", "X-aws-ec2-metadata-token-ttl-seconds: 21600",
             url + "/latest/api/token"],
            ["curl", "-sS", "-o", "/dev/null", url + "/latest/meta-data/iam/security-credentials/"],
            ["curl", "-sS", "-o", "/dev/null", url + "/latest/meta-data/iam/security-credentials/imdswatch-test-role"],
            ["curl", "-sS", "-o", "/dev/null", url + "/latest/dynamic/instance-identity/document"],
            ["curl", "-sS", "-o", "/dev/null", url + "/latest/meta-data/no-such-thing"],
            ["curl", "-sS", "-o", "/dev/null", "-X", "POST", "-d", "x=1", url + "/latest/meta-data/"],
            ["curl", "-sS", "-o", "/dev/null", "-X", "PUT", url + "/latest/api/token"],
            ["curl", "-sS", "-o", "/dev/null", "-H", "X-aws-ec2-metadata-token: bogus",
             url + "/latest/meta-data/instance-id"],
            [PY, os.path.join(FIX, "clients", "botocore_creds.py"), "--endpoint", url, "--count", "2", "--reuse"],
            [PY, os.path.join(FIX, "clients", "botocore_creds.py"), "--endpoint", url, "--imdsv1-only"],
        ]
        if flags:
            runs = runs[:2] + runs[8:]
        for argv in runs:
            subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
        captures += rec.take()
        rec.sock.close()
        imds.terminate()
        imds.wait()
    # Host as a client on a node sends it
    fix = lambda b: re.sub(rb"127\.0\.0\.1:\d+", b"169.254.169.254", b)
    return [(fix(up), down) for up, down in captures if up]


def capture_kube(tmp):
    pods = os.path.join(tmp, "pods")
    os.makedirs(pods)
    for i, (owner, cont) in enumerate([("ReplicaSet", "app"), ("StatefulSet", "db"), ("Job", "report")]):
        subprocess.run([PY, os.path.join(FIX, "make_pod.py"), "--name", "w%d-5d8f7c9b4-abcde" % i, "--node",
                        "node-a", "--namespace", "team", "--container", "%s=%s" % (cont, "%x" % (i + 10) * 64),
                        "--owner-kind", owner, "--owner-name", "w%d-5d8f7c9b4" % i, "--label",
                        "pod-template-hash=5d8f7c9b4", "--pod-ip", "10.77.%d.2" % (i + 1), "--out",
                        os.path.join(pods, "p%d.json" % i)], check=True)
    ready = os.path.join(tmp, "kube.ready")
    kube = start([PY, os.path.join(FIX, "kube_api_standin.py"), "--pods-dir", pods, "--listen", "127.0.0.1:0",
                  "--ready-file", ready, "--bookmark-interval", "1"], ready)
    base = "http://" + json.load(open(ready))["listen"][0]
    sel = "/api/v1/pods?fieldSelector=spec.nodeName%3Dnode-a"
    listing = subprocess.run(["curl", "-sS", base + sel], capture_output=True, check=True).stdout

    def later():
        time.sleep(0.5)
        os.unlink(os.path.join(pods, "p2.json"))
        subprocess.run([PY, os.path.join(FIX, "make_pod.py"), "--name", "late", "--node", "node-a",
                        "--container", "app", "--out", os.path.join(pods, "late.json")], check=True)

    threading.Thread(target=later).start()
    watch = subprocess.run(["curl", "-sS", "-N", base + sel + "&watch=1&allowWatchBookmarks=true&timeoutSeconds=2"],
                           capture_output=True).stdout
    gone = subprocess.run(["curl", "-sS", base + sel + "&watch=1&resourceVersion=1"], capture_output=True).stdout
    kube.terminate()
    kube.wait()
    return listing, watch, gone


# ---- seeds per target ----------------------------------------------------------------------------

CANARY_HDR = b"\x01"  # canary after the first line break


def http_seeds(captures):
    requests = [up for up, _ in captures]
    responses = [down for _, down in captures if down]
    # Ruby aws-sdk-core 3.168.1 (Net::HTTP), as the stand-in logged it (ruby_creds.rb cannot be pointed at
    # another port, so it is not captured here): header order and casing from tests/fixtures/README.md
    ruby = (b"PUT /latest/api/token HTTP/1.1\r\nUser-Agent: aws-sdk-ruby3/3.168.1\r\n"
            b"X-Aws-Ec2-Metadata-Token-Ttl-Seconds: 21600\r\nAccept-Encoding: gzip;q=1.0,deflate;q=0.6,identity;q=0.3\r\n"
            b"Accept: */*\r\nHost: 169.254.169.254\r\nContent-Length: 0\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n\r\n")
    for path in (b"/latest/meta-data/iam/security-credentials/",
                 b"/latest/meta-data/iam/security-credentials/imdswatch-test-role"):
        ruby += (b"GET " + path + b" HTTP/1.1\r\nUser-Agent: aws-sdk-ruby3/3.168.1\r\n"
                 b"X-Aws-Ec2-Metadata-Token: AQAECANARY0123456789abcdefghijklmnopqrstuvwxyzABCD==\r\n"
                 b"Accept-Encoding: gzip;q=1.0,deflate;q=0.6,identity;q=0.3\r\nAccept: */*\r\n"
                 b"Host: 169.254.169.254\r\n\r\n")
    requests += [
        ruby,
        b"GET /latest/meta-data/instance-id HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n"
        b"GET /latest/meta-data/ami-id HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n",
        b"PUT /latest/api/token HTTP/1.1\r\nHost: 169.254.169.254\r\nContent-Length: 4\r\n"
        b"x-aws-ec2-metadata-token-ttl-seconds: 60\r\n\r\nbodyGET / HTTP/1.1\r\n\r\n",
        b"\r\nGET /v2/credentials/2a5f0c6e-1d35-4c8e-9b36-7f0a4c1e2d3b HTTP/1.1\r\nUser-Agent: aws-sdk-go-v2/1.21.0 "
        b"os/linux lang/go#1.21 md/GOOS#linux\r\n\r\n",
        b"GET /v1/credentials HTTP/1.1\r\nHost: 169.254.170.23\r\nAuthorization: eyJhbGciOiJSUzI1NiJ9.secret\r\n\r\n",
        b"GET /" + b"a" * 300 + b" HTTP/1.1\r\nUser-Agent: " + b"u" * 100 + b"\r\n\r\n",
        b"POST /latest/api/token HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n",
        b"GET http://169.254.169.254/latest/meta-data/iam/security-credentials/r HTTP/1.0\n\n",
        b"get / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nX-Long: " + b"x" * 2100 + b"\r\n\r\n",
    ]
    for r in requests:
        write("http_request", CANARY_HDR + NO_CUTS + r)
    write("http_request", b"\x05" + struct.pack("<HHH", 7, 40, 41) + max(requests[:-10], key=len))
    # the canary spelt by the input itself, in a User-Agent whose CR the parser drops (CI, 2026-12-04)
    write("http_request", CANARY_HDR + NO_CUTS + b"GET / HTTP/1.1\r\nUser-Agent: Zq7CAN\rARYsecret9\r\n\r\n")

    responses += [
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 404 Not Found\r\n"
        b"Content-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.0 200 OK\r\n\r\nbody until close",
        b"HTTP/1.1 429 Too Many Requests\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 12abc\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n",
        b'HTTP/1.1 200 OK\r\nContent-Length: 58\r\n\r\n{"Expiration" : "2026-11-25T21:00:00Z", "Token" : "tok"}',
    ]
    for r in responses:
        # raw mode, every request asked for credentials (so bodies are scanned)
        write("http_response", b"\x00\xff" + NO_CUTS + b"\x00" + r)
        write("http_response", b"\x00\x00" + NO_CUTS + b"\x03" + r)
    # IMDS-shaped credentials answers: [shape][filler 16][filler 40][filler 1200][expiration][order...]
    time_alphabet = "0123456789-:TZ.+ "

    def exp(text):
        return bytes([len(text)]) + bytes(time_alphabet.index(c) for c in text)

    fill = lambda n, seed: struct.pack("<H", n) + bytes([seed])
    for shape, expiration, token_len, order in [
        (0x0E, "2026-11-25T21:00:00Z", 1100, b""),
        (0x00, "2026-11-25T21:00:00Z", 900, b""),
        (0x1E, "2026-11-25T21:00:00.123456789+01:00", 1200, b""),
        (0x0F, "2026-11-25T21:00:00Z", 1000, b"\x01\x02\x03\x04\x05\x06"),
        (0x0E, "2026-11-25T21:00:00Z", 10, b""),
        (0x0E, "", 1100, b""),
    ]:
        body = bytes([shape]) + fill(16, 1) + fill(40, 2) + fill(token_len, 3) + exp(expiration) + order
        write("http_response", b"\x01\x01" + NO_CUTS + body)
        write("http_response", b"\x01\x01" + NO_CUTS + body + b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    return requests


def classify_seeds(requests):
    uas = set()
    for line in open(os.path.join(ROOT, "tests", "unit", "classify_test.cpp"), encoding="utf-8"):
        for s in re.findall(r'"((?:[^"\\]|\\.)*)"', line):
            if "/" in s and not s.startswith("/") and "imdswatch/" not in s and "http" not in s[:4]:
                uas.add(s)
    for r in requests:
        m = re.search(rb"(?im)^user-agent:[ \t]*([^\r\n]*)", r)
        if m:
            uas.add(m.group(1).decode("latin-1"))
    paths = set()
    for line in open(os.path.join(ROOT, "tests", "unit", "classify_test.cpp"), encoding="utf-8"):
        for s in re.findall(r'"((?:[^"\\]|\\.)*)"', line):
            if s.startswith("/") or s.startswith("http://"):
                paths.add(s)
    for r in requests:
        for m in re.finditer(rb"(?m)^[A-Z]+ (\S+) HTTP", r):
            paths.add(m.group(1).decode("latin-1"))
    paths = sorted(p for p in paths if len(p.encode()) < 256)
    methods = [0, 1, 2, 3]  # GET PUT HEAD POST
    for i, ua in enumerate(sorted(uas)):
        path = paths[i % len(paths)].encode()
        write("classify", bytes([8 | methods[i % 4] | (16 if i % 3 == 0 else 0)]) + bytes([len(path)]) + path +
              ua.encode())
    for i, path in enumerate(paths):
        p = path.encode()
        write("classify", bytes([8 | (1 if "token" in path else 0)]) + bytes([len(p)]) + p + b"curl/7.88.1")
    write("classify", b"\x04\x04WEIRD\x01/" + b"")


def cgroup_seeds():
    uid = "5c3d8e2a-1b4f-4c6d-9e8f-0a1b2c3d4e5f"
    uid_ = uid.replace("-", "_")
    cid = "0b3cd6f0e4c0a1d2f2b2e52e7b1f3a8c9d0e1f2a3b4c5d6e7f8091a2b3c4d5e6"
    seeds = [
        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod%s.slice/cri-containerd-%s.scope" % (uid_, cid),
        "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod%s.slice/crio-%s.scope" % (uid_, cid),
        "/kubepods.slice/kubepods-pod%s.slice/docker-%s.scope" % (uid_, cid),
        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod%s.slice/crio-conmon-%s.scope" % (uid_, cid),
        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod3f1e9a0b7c2d4e5f60718293a4b5c6d7.slice/"
        "cri-containerd-%s.scope/sub" % cid,
        "/kubepods/burstable/pod%s/%s" % (uid, cid),
        "/kubepods/pod%s/crio-%s" % (uid, cid),
        "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/"
        "kubelet-kubepods-besteffort-pod%s.slice/cri-containerd-%s.scope" % (uid_, cid),
        "/actions_job/abc123/kubepods/besteffort/pod%s/%s" % (uid, cid),
        "/docker/%s/kubepods/burstable/pod%s/%s" % ("f" * 64, uid, cid),
        "/system.slice/docker-%s.scope" % cid,
        "/docker/%s/inner" % cid,
        "/system.slice/containerd.service/tasks",
        "/system.slice/system-getty.slice/getty@tty1.service",
        "/user.slice/user-1000.slice/user@1000.service/app.slice/foo.service",
        "/", "/init.scope", "/kubepods/../kubepods/pod%s/%s" % (uid, cid),
    ]
    for root, dirs, _ in os.walk("/sys/fs/cgroup"):
        rel = root[len("/sys/fs/cgroup"):] or "/"
        seeds.append(rel)
        if len(seeds) > 120:
            break
    for s in seeds:
        write("cgroup_path", s)


def kube_seeds(listing, watch, gone):
    data = os.path.join(ROOT, "tests", "unit", "data")
    pod_list = open(os.path.join(data, "pod_list.json"), "rb").read()
    write("pod_json", pod_list)
    for item in json.loads(pod_list)["items"]:
        write("pod_json", json.dumps(item))
    write("pod_json", listing)
    for item in json.loads(listing)["items"]:
        write("pod_json", json.dumps(item, separators=(",", ":")))
    for name in ("watch_stream.jsonl", "watch_gone.jsonl"):
        stream = open(os.path.join(data, name), "rb").read()
        write("watch_stream", b"\x00" + b"\x00" * 8 + stream)
        write("watch_stream", b"\x00" + struct.pack("<HHHH", 10, 200, 201, 3000) + stream)
        for line in stream.splitlines():
            ev = json.loads(line)
            if isinstance(ev.get("object"), dict) and ev["object"].get("kind") == "Pod":
                write("pod_json", json.dumps(ev["object"]))
    write("watch_stream", b"\x00" + b"\x00" * 8 + watch)
    write("watch_stream", b"\x40" + struct.pack("<HHHH", 1, 2, 77, 500) + watch.replace(b"\n", b"\r\n"))
    write("watch_stream", b"\x00" + b"\x00" * 8 + gone)


def small_seeds():
    for e in ["2026-11-25T21:00:00Z", "2026-11-25T21:00:00.123Z", "2026-11-25T21:00:00+01:00",
              "2026-11-25T21:00:00-0530", "2026-11-25 21:00:00z", "2024-02-29T23:59:60Z",
              "2026-11-25T21:00:00.123456789012Z", "1970-01-01T00:00:00Z", "9999-12-31T23:59:59Z",
              "2026-13-01T00:00:00Z", "2026-11-25T21:00:00", "2026-11-25t21:00:00,5+14:00"]:
        write("expiration", e)
    for e in ["169.254.169.254:80", "[fd00:ec2::254]:80", "169.254.170.2:80", "169.254.170.23:80",
              "127.0.0.1:65535", "[::ffff:169.254.169.254]:80", "169.254.169.254", "[fd00:ec2::254]80",
              "host:80", "1.2.3.4:0", "1.2.3.4:+80", "[::1]:080"]:
        write("endpoint", e)


def event_seeds():
    # struct layouts of bpf/imdswatch.h (little endian, as on x86-64)
    def hdr(t, sock=0xC00C1E, ts=1_000_000, family=2, dport=80):
        return struct.pack("<BBHIQQQ", t, family, dport, 4242, ts, sock, 0x1234)

    def rec(b, flags=0):
        return bytes([flags]) + struct.pack("<H", len(b)) + b

    comm = b"curl".ljust(16, b"\0")
    connect = hdr(1) + struct.pack("<4I", 0xFEA9FEA9, 0, 0, 0) + comm

    def request(seq, method, path, ua, flags, ts):
        return (hdr(3, ts=ts) + struct.pack("<QIBBBB", ts, seq, method, flags, len(path), len(ua)) + comm +
                path.ljust(128, b"\0") + ua.ljust(64, b"\0"))

    def response(seq, status, expiry, flags, ts):
        return (hdr(4, ts=ts) + struct.pack("<QQIHBB", ts - 100, ts, seq, status, flags, len(expiry)) +
                expiry.ljust(32, b"\0"))

    close = hdr(5, ts=9_000_000) + struct.pack("<IIIHBB", 3, 2, 1, 0, 1 | 4, 1) + comm
    retrans = hdr(6, ts=2_000_000) + comm
    perr = hdr(7) + struct.pack("<BB6x", 1, 0)
    ttl = hdr(8, family=2, dport=40000) + struct.pack("<4I", 0x0202140A, 0, 0, 0)
    token = request(0, 2, b"/latest/api/token", b"curl/7.88.1", 2 | 4, 1_200_000)
    role = request(1, 1, b"/latest/meta-data/iam/security-credentials/", b"Botocore/1.29.27", 1 | 4, 1_500_000)
    creds = request(2, 1, b"/latest/meta-data/iam/security-credentials/imdswatch-test-role", b"", 1 | 16,
                    1_700_000)
    # a caller from a placed cgroup: no connect record, the first request opens the connection
    conversation = [token, response(0, 200, b"", 0, 1_300_000), role,
                    response(1, 200, b"", 0, 1_600_000), creds, response(2, 200, b"2026-11-25T21:00:00Z", 2,
                                                                          1_800_000), retrans, close]
    write("event_decoder", b"".join(rec(r) for r in conversation))
    write("event_decoder", b"".join(rec(r) for r in [connect, creds, close]))
    write("event_decoder", b"".join(rec(r, 1) for r in [connect, token, perr, ttl, retrans]))
    write("event_decoder", rec(connect) + rec(hdr(5, ts=1_000_500) + struct.pack("<IIIHBB", 0, 0, 0, 2, 2, 2) + comm))
    write("event_decoder", rec(hdr(2, ts=1_100_000)))  # a type no longer sent
    write("event_decoder", rec(connect[:40]) + rec(b"\x09" + connect[1:]) + rec(token[:-1]))


def main():
    if os.path.isdir(CORPUS):
        shutil.rmtree(CORPUS)
    tmp = tempfile.mkdtemp(prefix="imdswatch-corpus-")
    try:
        captures = capture_http(tmp)
        requests = http_seeds(captures)
        classify_seeds(requests)
        cgroup_seeds()
        kube_seeds(*capture_kube(tmp))
        small_seeds()
        event_seeds()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for target in sorted(os.listdir(CORPUS)):
        files = os.listdir(os.path.join(CORPUS, target))
        size = sum(os.path.getsize(os.path.join(CORPUS, target, f)) for f in files)
        print("%-14s %4d seeds %7d bytes" % (target, len(files), size))


if __name__ == "__main__":
    main()
