// Kubernetes API faults (tests/fixtures/kube_api_standin.py --fault-file):
// the API server gone, hanging, slow, refusing (401/403/500), expiring the
// watch (410 as an HTTP answer and as an ERROR event mid-watch), dropping
// the connection mid-event, and sending malformed JSON. Through each the
// agent must keep serving /metrics with the names it already knows, report
// the API as down (imdswatch_kube_api_up 0, except for 410, which is routine)
// with the error counted by reason, and recover without a restart: a pod
// created during the fault gets its names once the API is back.
//
// Faults on new requests need the agent to make one: the stand-in is
// restarted with the fault set, which breaks the open watch. Mid-watch
// faults (gone, drop, malformed) reach the open watch itself.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include "hardening/hardening.h"

namespace imdswatch::testing {
namespace {

constexpr char kNode[] = "node-hardening";

using Clock = std::chrono::steady_clock;

double Since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

class KubeApiFaultTest : public ::testing::Test {
 protected:
  void SetUp() override { HARDENING_REQUIRE_KERNEL(); }
};

class KubeStandIn {
 public:
  KubeStandIn(std::string dir) : dir_(std::move(dir)), port_(FreePort()) {}
  void Start() {
    std::string ready = dir_ + "/kube.ready";
    unlink(ready.c_str());
    process_ = std::make_unique<Process>(
        std::vector<std::string>{"/usr/bin/python3", SourceDir() + "/tests/fixtures/kube_api_standin.py",
                                 "--pods-dir", dir_ + "/pods", "--listen", "127.0.0.1:" + std::to_string(port_),
                                 "--fault-file", FaultFile(), "--ready-file", ready, "--bookmark-interval", "1"},
        SpawnOptions{.stderr_file = dir_ + "/kube-" + std::to_string(starts_++) + ".log"});
    if (!WaitForFile(ready, std::chrono::seconds(10))) throw std::runtime_error("kube stand-in did not start");
  }
  void Stop() { process_.reset(); }
  void Restart() {
    Stop();
    Start();
  }
  void SetFault(const std::string& fault) {
    std::ofstream(FaultFile() + ".tmp") << fault << "\n";
    std::rename((FaultFile() + ".tmp").c_str(), FaultFile().c_str());
  }
  void ClearFault() { unlink(FaultFile().c_str()); }
  std::string FaultFile() const { return dir_ + "/fault"; }
  std::string Url() const { return "http://127.0.0.1:" + std::to_string(port_); }

 private:
  std::string dir_;
  int port_;
  int starts_ = 0;
  std::unique_ptr<Process> process_;
};

struct NamedPod {
  std::string name, ns, uid, container_id;
  std::unique_ptr<Cgroup> cgroup;
  std::map<std::string, std::string> Labels() const { return {{"namespace", ns}, {"pod", name}}; }
};

NamedPod MakePod(const std::string& dir, const std::string& workload) {
  NamedPod pod;
  pod.ns = "hardening";
  pod.name = workload + "-6c9f8d7b5-" + RandomHex(5);
  pod.uid = RandomUid();
  pod.container_id = RandomHex(64);
  pod.cgroup = std::make_unique<Cgroup>(KubeletCgroupPath(pod.uid, pod.container_id));
  std::string out;
  int rc = RunCommand({"/usr/bin/python3", SourceDir() + "/tests/fixtures/make_pod.py", "--name", pod.name,
                       "--namespace", pod.ns, "--uid", pod.uid, "--node", kNode, "--container",
                       "app=" + pod.container_id, "--owner-kind", "ReplicaSet", "--owner-name",
                       workload + "-6c9f8d7b5", "--label", "pod-template-hash=6c9f8d7b5", "--out",
                       dir + "/pods/" + pod.uid + ".json"},
                      {}, std::chrono::seconds(10), &out);
  if (rc != 0) throw std::runtime_error("make_pod.py: " + out);
  return pod;
}

std::map<std::string, double> Errors(const std::vector<Sample>& s) {
  std::map<std::string, double> out;
  for (const auto& sample : s)
    if (sample.name == "imdswatch_kube_api_errors_total") out[sample.labels.at("reason")] = sample.value;
  return out;
}

std::string Delta(const std::map<std::string, double>& before, const std::map<std::string, double>& after) {
  std::string out;
  for (const auto& [reason, n] : after) {
    double d = n - (before.count(reason) ? before.at(reason) : 0);
    if (d > 0) out += (out.empty() ? "" : " ") + reason + "+" + std::to_string(static_cast<long>(d));
  }
  return out.empty() ? "none" : out;
}

struct Fault {
  std::string name;    // the fault file's word, or "down"
  bool restart;        // restart the stand-in so the agent makes new requests
  bool api_down;       // imdswatch_kube_api_up must drop to 0
  std::string reason;  // an error reason that must be counted ("" = none required)
  bool names_during;   // a pod created during the fault is named while it lasts
};

TEST_F(KubeApiFaultTest, AgentServesThroughEveryFaultAndRecoversWithoutRestart) {
  TempDir dir("kube");
  std::filesystem::create_directories(dir.path() + "/pods");
  LoopbackImds imds(dir.path());
  KubeStandIn kube(dir.path());
  kube.Start();
  NamedPod known = MakePod(dir.path(), "known");
  WaitForFile(dir.path() + "/pods/" + known.uid + ".json", std::chrono::seconds(1));
  Agent agent({"--kube-api-server", kube.Url(), "--node-name", kNode, "--endpoint", imds.Endpoint()},
              dir.path() + "/agent.log");
  double known_calls = 0;
  auto call_known = [&] {
    EXPECT_EQ(CurlFrom(*known.cgroup, imds.Url()), 200);
    known_calls++;
    return agent.ScrapeUntil(
        [&](const std::vector<Sample>& s) { return SumOf(s, "imds_requests_total", known.Labels()) >= known_calls; });
  };
  auto s = call_known();
  ASSERT_EQ(SumOf(s, "imds_requests_total", known.Labels()), 1) << ReadFile(agent.log_file());
  ASSERT_EQ(SumOf(s, "imdswatch_kube_api_up"), 1);

  const std::vector<Fault> faults = {
      {"down", false, true, "connect", false},
      {"hang", true, true, "", false},
      {"slow", true, false, "", true},
      {"401", true, true, "unauthorized", false},
      {"403", true, true, "forbidden", false},
      {"500", true, true, "http", false},
      {"gone-http", true, false, "gone", true},
      {"gone", false, false, "gone", true},
      {"drop", false, true, "transport", false},
      {"malformed", false, true, "malformed", false},
  };
  std::printf("%-10s %-8s %-44s %-14s %s\n", "fault", "api_up", "errors counted during the fault", "names kept",
              "recovered (names of a pod created during the fault)");
  for (const Fault& f : faults) {
    SCOPED_TRACE("fault " + f.name);
    const auto before = Errors(agent.Scrape());
    const auto fault_start = Clock::now();
    if (f.name == "down") {
      kube.Stop();
    } else {
      kube.SetFault(f.name);
      if (f.restart) kube.Restart();
    }
    NamedPod fresh = MakePod(dir.path(), "fresh-" + f.name);
    EXPECT_EQ(CurlFrom(*fresh.cgroup, imds.Url()), 200);

    // During the fault: the expected signs, /metrics served throughout.
    s = agent.ScrapeUntil(
        [&](const std::vector<Sample>& x) {
          if (x.empty()) return false;
          bool ok = true;
          if (f.api_down) ok = ok && SumOf(x, "imdswatch_kube_api_up") == 0;
          if (!f.reason.empty()) ok = ok && Errors(x)[f.reason] > (before.count(f.reason) ? before.at(f.reason) : 0);
          if (f.names_during) ok = ok && SumOf(x, "imds_requests_total", fresh.Labels()) >= 1;
          return ok && Since(fault_start) > 2;  // let a fault that should not show, show
        },
        std::chrono::seconds(25));
    ASSERT_FALSE(s.empty()) << "/metrics not served during the fault";
    ASSERT_TRUE(agent.process().Running()) << ReadFile(agent.log_file());
    const double up_during = SumOf(s, "imdswatch_kube_api_up");
    const std::string counted = Delta(before, Errors(s));
    if (f.api_down) {
      EXPECT_EQ(up_during, 0) << "API reported up during " << f.name;
    }
    if (!f.reason.empty()) {
      EXPECT_GT(Errors(s)[f.reason], before.count(f.reason) ? before.at(f.reason) : 0) << "counted: " << counted;
    }
    if (f.names_during) {
      EXPECT_GE(SumOf(s, "imds_requests_total", fresh.Labels()), 1);
    }
    // What the agent knows keeps working: the known pod's call keeps its names.
    s = call_known();
    const bool kept = SumOf(s, "imds_requests_total", known.Labels()) == known_calls;
    EXPECT_TRUE(kept) << "the known pod lost its names during " << f.name;
    std::string healthz;
    EXPECT_EQ(HttpGet(agent.Url("/healthz"), &healthz), 200) << healthz;

    // Recovery: the fault goes, the agent comes back by itself.
    const auto recover_start = Clock::now();
    kube.ClearFault();
    if (f.name == "down" || f.name == "hang") kube.Restart();  // a hung request ends with its connection
    s = agent.ScrapeUntil(
        [&](const std::vector<Sample>& x) {
          return SumOf(x, "imdswatch_kube_api_up") == 1 && SumOf(x, "imds_requests_total", fresh.Labels()) >= 1;
        },
        std::chrono::seconds(40));
    const double recovered = Since(recover_start);
    EXPECT_EQ(SumOf(s, "imdswatch_kube_api_up"), 1) << "not recovered from " << f.name;
    EXPECT_EQ(SumOf(s, "imds_requests_total", fresh.Labels()), 1)
        << "the pod created during " << f.name << " never got its names";
    std::printf("%-10s %-8.0f %-44s %-14s %.1f s\n", f.name.c_str(), up_during, counted.c_str(), kept ? "yes" : "NO",
                recovered);
    std::fflush(stdout);
  }
  std::string body;
  EXPECT_EQ(HttpGet(agent.Url("/readyz"), &body), 200) << body;
}

}  // namespace
}  // namespace imdswatch::testing
