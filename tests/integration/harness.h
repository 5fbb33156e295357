// Building blocks of the kernel tests: network namespaces (a pod, a routing
// node, a metadata host), kubelet-style cgroups, child processes placed in
// both, the metadata and Kubernetes API stand-ins, the agent itself, and a
// reader of its /metrics. Everything created is torn down in destructors,
// so a failing test still leaves nothing behind.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace imdswatch::testing {

std::string SourceDir();
std::string BinaryDir();
std::string CgroupRoot();  // the v2 mount
// A prefix unique to this test process, short enough for netns names.
std::string UniquePrefix();
std::string RandomHex(size_t n);
// A pod uid (8-4-4-4-12); `prefix` (hex) replaces its first characters.
std::string RandomUid(const std::string& prefix = "");
std::string ReadFile(const std::string& path);

// Skips (or, with CI=true, fails) when the machine cannot run kernel tests.
// Returns "" when they can run, else why not.
std::string KernelTestsUnavailable();

// `tests/fixtures/topology.sh` for the lifetime of the object.
class Topology {
 public:
  Topology(std::string prefix, int pods);
  ~Topology();
  std::string NetnsPath(const std::string& host) const;  // "node", "imds", "p1"...
  const std::string& prefix() const { return prefix_; }

 private:
  std::string prefix_;
  int pods_;
};

// A cgroup directory under the v2 root, removed (after killing what is in
// it) on destruction.
class Cgroup {
 public:
  explicit Cgroup(std::string relative_path);  // e.g. "/kubepods.slice/..."
  ~Cgroup();
  const std::string& path() const { return path_; }  // relative
  std::string full() const;
  uint64_t id() const;  // inode number = cgroup v2 id

 private:
  std::string path_;
  std::vector<std::string> created_;  // dirs we made, innermost last
};

struct SpawnOptions {
  std::string netns;   // path under /run/netns, "" = stay
  std::string cgroup;  // full path of a cgroup dir, "" = stay
  std::string stdout_file;  // "" = inherit
  std::string stderr_file;  // "" = inherit
  std::map<std::string, std::string> env;
};

// A child process, killed (SIGTERM, then SIGKILL) on destruction.
class Process {
 public:
  Process(std::vector<std::string> argv, SpawnOptions options = {});
  ~Process();
  pid_t pid() const { return pid_; }
  // Waits for exit; returns the exit status (128+signal if killed), or -1 on timeout.
  int Wait(std::chrono::milliseconds timeout);
  bool Running();
  // SIGTERM and wait; returns how long it took to exit.
  std::chrono::milliseconds Terminate(std::chrono::milliseconds timeout = std::chrono::seconds(5));

 private:
  pid_t pid_ = -1;
  int status_ = -1;
};

// Runs a command to completion in the given netns/cgroup; returns exit code.
int RunCommand(std::vector<std::string> argv, SpawnOptions options = {},
               std::chrono::milliseconds timeout = std::chrono::seconds(30), std::string* output = nullptr);

// Waits until a file exists.
bool WaitForFile(const std::string& path, std::chrono::milliseconds timeout);

// HTTP GET on loopback; returns status (0 when unreachable) and body.
int HttpGet(const std::string& url, std::string* body);

// One sample of the Prometheus text format.
struct Sample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value;
};
std::vector<Sample> ParseMetrics(const std::string& text);
// Sum of samples with this name whose labels include all of `match`.
double SumOf(const std::vector<Sample>& samples, const std::string& name,
             const std::map<std::string, std::string>& match = {});
size_t CountOf(const std::vector<Sample>& samples, const std::string& name,
               const std::map<std::string, std::string>& match = {});

// The agent under test, on a free port; waits for /readyz.
class Agent {
 public:
  explicit Agent(std::vector<std::string> extra_flags, std::string log_file = "");
  ~Agent();
  int port() const { return port_; }
  std::string Url(const std::string& path) const;
  std::vector<Sample> Scrape() const;
  // Polls /metrics until pred holds or timeout; returns the last scrape.
  std::vector<Sample> ScrapeUntil(const std::function<bool(const std::vector<Sample>&)>& pred,
                                  std::chrono::milliseconds timeout = std::chrono::seconds(10)) const;
  Process& process() { return *process_; }
  const std::string& log_file() const { return log_file_; }

 private:
  int port_;
  std::string log_file_;
  std::unique_ptr<Process> process_;
};

int FreePort();

// A pod's cgroup as the kubelet's systemd driver lays it out, with containerd.
std::string KubeletCgroupPath(const std::string& pod_uid, const std::string& container_id,
                              const std::string& qos = "besteffort");

}  // namespace imdswatch::testing
