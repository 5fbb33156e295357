// Shared pieces of the hardening tests (tests/hardening/*_test.cpp): they
// build on tests/integration/harness.h (Agent, Process, Cgroup, metrics) and
// add a loopback metadata stand-in, kubelet-style pod cgroups, and the
// agent's resident memory. Everything stays on loopback: the agent watches
// 127.0.0.1:PORT (--endpoint) where the stand-in listens.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "integration/harness.h"

namespace imdswatch::testing {

// In SetUp: kernel tests skip where they cannot run, and fail under CI=true.
#define HARDENING_REQUIRE_KERNEL()                                                        \
  do {                                                                                  \
    std::string why = KernelTestsUnavailable();                                         \
    if (!why.empty()) {                                                                 \
      if (std::getenv("CI") && std::string(std::getenv("CI")) == "true")                \
        FAIL() << "kernel test cannot run in CI: " << why;                              \
      GTEST_SKIP() << why;                                                              \
    }                                                                                   \
  } while (0)

// A fresh directory under /tmp, removed with its content on destruction.
class TempDir {
 public:
  explicit TempDir(const std::string& tag);
  ~TempDir();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// tests/fixtures/imds_standin.py on 127.0.0.1:<free port>.
class LoopbackImds {
 public:
  LoopbackImds(const std::string& dir, std::vector<std::string> flags = {});
  int port() const { return port_; }
  std::string Url(const std::string& path = "/latest/meta-data/instance-id") const;
  std::string Endpoint() const { return "127.0.0.1:" + std::to_string(port_); }
  // Requests the stand-in has read (its --stats-file).
  uint64_t Requests() const;

 private:
  std::string stats_;
  int port_;
  std::unique_ptr<Process> process_;
};

// A container's cgroup laid out as the kubelet's systemd driver does, with containerd.
struct PodCgroup {
  explicit PodCgroup(const std::string& uid_prefix = "");
  std::string uid, container_id;
  std::unique_ptr<Cgroup> cgroup;
};

// curl of `url` from inside `cgroup` (host network namespace); returns the HTTP status, 0 on failure.
int CurlFrom(const Cgroup& cgroup, const std::string& url);

// VmRSS of a process in KiB (0 if gone).
long RssKib(pid_t pid);

// CPU time a process has used, user + system (utime + stime of /proc/PID/stat), in seconds; -1 if gone.
double CpuSeconds(pid_t pid);

// Agents built with -DIMDSWATCH_SANITIZE=ON (ASan's allocator keeps freed
// memory in quarantine: resident memory is judged with a wider bound there).
bool SanitizedBuild();

}  // namespace imdswatch::testing
