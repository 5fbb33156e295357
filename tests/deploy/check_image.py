#!/usr/bin/python3
"""The image definition (deploy/Dockerfile), checked without a Docker engine: multi-stage, Debian 12 based;
the build stage installs scripts/install-deps.sh's build packages (GoogleTest excepted, as it builds with
-DIMDSWATCH_TESTS=OFF) and runs the repository's CMake build; the runtime stage installs exactly the Debian
packages owning the libraries the built agent links (readelf/dpkg), whose dependency closure provides every
library `ldd` resolves, and copies nothing but the binary. CTest: deploy_image."""
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import deploylib as d  # noqa: E402

DOCKERFILE = os.path.join(d.DEPLOY, "Dockerfile")
# prometheus-cpp: the tests read /metrics back into its structs; the agent writes the text itself
TEST_ONLY_BUILD_PACKAGES = {"libgtest-dev", "libgmock-dev", "prometheus-cpp-dev"}


def stages():
    """[(base image, name, [instructions as (KEYWORD, text)])], line continuations joined."""
    with open(DOCKERFILE) as f:
        text = f.read()
    text = re.sub(r"\\\n", " ", text)
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            m = re.match(r"^(\S+)(?:\s+AS\s+(\S+))?$", rest.strip(), re.I)
            out.append((m.group(1), m.group(2), []))
        elif out:
            out[-1][2].append((keyword, rest.strip()))
        elif keyword != "ARG":
            raise AssertionError(f"instruction before FROM: {line}")
    return out


def apt_packages(instructions):
    pkgs = []
    for keyword, text in instructions:
        if keyword != "RUN":
            continue
        for cmd in re.split(r"&&|;", text):
            words = shlex.split(cmd)
            if "apt-get" in words and "install" in words:
                pkgs += [w for w in words[words.index("install") + 1:] if not w.startswith("-")]
    return pkgs


def install_deps_packages():
    """scripts/install-deps.sh's packages=( ... ) by group comment: {"build": [...], ...}."""
    with open(os.path.join(d.REPO, "scripts", "install-deps.sh")) as f:
        text = f.read()
    body = re.search(r"packages=\((.*?)\n\)", text, re.S).group(1)
    groups, current = {}, None
    for line in body.splitlines():
        line = line.strip()
        if line.startswith("#"):
            current = line.lstrip("# ").split()[0].rstrip(":")
            continue
        groups.setdefault(current, []).extend(line.split())
    return groups


def needed_libraries(binary):
    out = subprocess.run(["readelf", "-d", binary], capture_output=True, text=True, check=True).stdout
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out)


def ldd_paths(binary):
    out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
    paths = {}
    for line in out.splitlines():
        m = re.match(r"^\s*(\S+)\s+=>\s+(\S+)", line)
        if m:
            paths[m.group(1)] = m.group(2)
        m = re.match(r"^\s*(/\S+)\s+\(", line)
        if m:
            paths[os.path.basename(m.group(1))] = m.group(1)
    return paths


_OWNERS = {}


def owners(paths):
    """{path: Debian package} for every path (one dpkg -S call; /lib and /usr/lib are the same here)."""
    variants = {}
    for path in paths:
        for candidate in (path, os.path.realpath(path)):
            for v in (candidate, candidate.replace("/usr/lib/", "/lib/", 1), candidate.replace("/lib/", "/usr/lib/", 1)):
                variants.setdefault(v, path)
    out = subprocess.run(["dpkg", "-S"] + sorted(variants), capture_output=True, text=True)
    for line in out.stdout.splitlines():
        pkgs, _, file = line.partition(": ")
        if file in variants:
            _OWNERS[variants[file]] = pkgs.split(",")[0].split(":")[0].strip()
    missing = [p for p in paths if p not in _OWNERS]
    if missing:
        raise AssertionError(f"no Debian package owns {missing}")
    return {p: _OWNERS[p] for p in paths}


def depends_closure(packages):
    """Installed packages reachable through Depends/Pre-Depends (first installed alternative)."""
    out = subprocess.run(["dpkg-query", "-W", "-f=${Package}\t${Status}\t${Depends}, ${Pre-Depends}\n"],
                         capture_output=True, text=True, check=True).stdout
    installed = {}
    for line in out.splitlines():
        name, status, deps = line.split("\t")
        if "install ok installed" in status:
            installed[name] = deps
    seen, todo = set(), list(packages)
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        if p not in installed:
            raise AssertionError(f"{p} is not installed here")
        seen.add(p)
        for dep in installed[p].split(","):
            for alt in dep.split("|"):
                name = alt.strip().split(" ")[0].split(":")[0]
                if name in installed:
                    todo.append(name)
                    break
    return seen


class ImageTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.stages = stages()
        cls.binary = d.agent_binary()

    def test_multi_stage_on_debian_12(self):
        self.assertEqual(len(self.stages), 2)
        (build_base, build_name, _), (run_base, run_name, _) = self.stages
        self.assertEqual(build_name, "build")
        self.assertIsNone(run_name)
        self.assertRegex(build_base, r"^debian:(12|bookworm)$")
        self.assertRegex(run_base, r"^debian:(12|bookworm)-slim$")

    def test_build_stage_packages_are_install_deps_build_packages(self):
        groups = install_deps_packages()
        self.assertIn("build", groups, "scripts/install-deps.sh lost its '# build' group")
        want = set(groups["build"]) - TEST_ONLY_BUILD_PACKAGES
        got = apt_packages(self.stages[0][2])
        self.assertEqual(len(got), len(set(got)))
        self.assertEqual(set(got), want)

    def test_build_stage_runs_the_cmake_build_without_tests(self):
        runs = " ".join(t for k, t in self.stages[0][2] if k == "RUN")
        self.assertRegex(runs, r"cmake -S \. -B /build .*-DIMDSWATCH_TESTS=OFF")
        self.assertRegex(runs, r"cmake --build /build .*--target imdswatch")
        copies = [t for k, t in self.stages[0][2] if k == "COPY"]
        for path in ("CMakeLists.txt", "cmake", "bpf", "include", "src"):
            self.assertTrue(any(c.split()[0] == path for c in copies), f"build stage does not copy {path}")
            self.assertTrue(os.path.exists(os.path.join(d.REPO, path)))
        with open(os.path.join(d.DEPLOY, "Dockerfile.dockerignore")) as f:
            ignore = f.read()
        for path in ("CMakeLists.txt", "cmake/", "bpf/", "include/", "src/"):
            self.assertIn("!" + path, ignore)

    def test_the_copied_sources_configure(self):
        """What the build stage copies (and the .dockerignore lets through) is all CMake needs: configure a
        copy of exactly that, as the build stage does."""
        copies = [t.split()[0] for k, t in self.stages[0][2] if k == "COPY"]
        runs = " ".join(t for k, t in self.stages[0][2] if k == "RUN")
        flags = re.search(r"cmake -S \. -B /build (.*?) &&", runs).group(1)
        flags = [f for f in shlex.split(flags) if not f.startswith("-DVMLINUX_BTF")]
        with tempfile.TemporaryDirectory() as tmp:
            src = os.path.join(tmp, "src")
            os.mkdir(src)
            for path in copies:
                origin = os.path.join(d.REPO, path)
                if os.path.isdir(origin):
                    shutil.copytree(origin, os.path.join(src, path))
                else:
                    shutil.copy(origin, os.path.join(src, path))
            out = subprocess.run(["cmake", "-S", src, "-B", os.path.join(tmp, "build")] + flags,
                                 capture_output=True, text=True, timeout=300)
            self.assertEqual(out.returncode, 0, out.stdout[-3000:] + out.stderr[-3000:])

    def test_runtime_packages_are_exactly_the_linked_libraries_packages(self):
        self.assertTrue(os.access(self.binary, os.X_OK), f"{self.binary} not built")
        paths = ldd_paths(self.binary)
        needed = needed_libraries(self.binary)
        self.assertTrue(needed)
        owned = owners([paths[lib] for lib in needed])
        want = set(owned.values())
        got = apt_packages(self.stages[1][2])
        self.assertEqual(len(got), len(set(got)))
        self.assertEqual(set(got), want)

    def test_runtime_packages_bring_every_library_ldd_resolves(self):
        closure = depends_closure(apt_packages(self.stages[1][2]))
        libs = {lib: path for lib, path in ldd_paths(self.binary).items() if not lib.startswith("linux-vdso")}
        self.assertGreater(len(libs), 10)
        owned = owners(list(libs.values()))
        for lib, path in libs.items():
            with self.subTest(lib=lib):
                self.assertIn(owned[path], closure)

    def test_runtime_stage_names_openssl_as_civetweb_dlopens_it(self):
        # civetweb loads OpenSSL at run time by these names (TLS, --web.config.file)
        civetweb = ldd_paths(self.binary)["libcivetweb.so.1"]
        with open(civetweb, "rb") as f:
            blob = f.read()
        runs = " ".join(t for k, t in self.stages[1][2] if k == "RUN")
        for name in (b"libssl.so", b"libcrypto.so"):
            with self.subTest(lib=name):
                self.assertIn(name + b"\0", blob, "civetweb no longer dlopens this name: drop the link")
                self.assertIn(name.decode().removesuffix(".so"), runs)
        self.assertIn('ln -s "$so" "${so%.3}"', runs)

    def test_runtime_stage_holds_only_the_binary(self):
        instr = self.stages[1][2]
        copies = [t for k, t in instr if k in ("COPY", "ADD")]
        self.assertEqual(copies, ["--from=build /build/imdswatch /usr/bin/imdswatch"])
        self.assertIn(("ENTRYPOINT", '["/usr/bin/imdswatch"]'), instr)
        self.assertIn(("EXPOSE", "10169"), instr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
