// The agent as an operator meets it: clear one-line errors, a clean detach
// on SIGTERM, and `imdswatch trace`.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include <cstdlib>
#include <map>
#include <memory>
#include <sstream>
#include <thread>

#include "integration/harness.h"

namespace imdswatch::testing {
namespace {

std::string AgentBinary() { return BinaryDir() + "/imdswatch"; }

// Programs of ours currently loaded (names start with imds_).
int LoadedImdsPrograms() {
  std::string out;
  RunCommand({"bpftool", "prog", "show"}, {}, std::chrono::seconds(10), &out);
  int n = 0;
  for (size_t pos = 0; (pos = out.find(" name imds_", pos)) != std::string::npos; pos++) n++;
  return n;
}

class LifecycleTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why = KernelTestsUnavailable();
    if (why.empty()) return;
    if (std::getenv("CI") && std::string(std::getenv("CI")) == "true") FAIL() << "cannot run in CI: " << why;
    GTEST_SKIP() << why;
  }
};

TEST_F(LifecycleTest, BadFlagsExitTwoNamingTheFlag) {
  std::string out;
  EXPECT_EQ(RunCommand({AgentBinary(), "--no-kube", "--series-ttl", "forever"}, {}, std::chrono::seconds(10), &out), 2);
  EXPECT_NE(out.find("--series-ttl"), std::string::npos) << out;
  EXPECT_EQ(RunCommand({AgentBinary(), "--no-kube", "--endpoint", "169.254.169.254"}, {}, std::chrono::seconds(10), &out),
            2);
  EXPECT_NE(out.find("--endpoint"), std::string::npos) << out;
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << "one line: " << out;
}

TEST_F(LifecycleTest, PortInUseFailsBeforeLoadingAnything) {
  int port = FreePort();
  Process holder({"/usr/bin/python3", "-c",
                  "import socket,time;s=socket.socket();s.bind(('127.0.0.1'," + std::to_string(port) +
                      "));s.listen();time.sleep(30)"});
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  int before = LoadedImdsPrograms();
  std::string out;
  EXPECT_EQ(RunCommand({AgentBinary(), "--no-kube", "--web.listen-address", "127.0.0.1:" + std::to_string(port)}, {},
                       std::chrono::seconds(20), &out),
            1);
  EXPECT_NE(out.find("cannot listen on 127.0.0.1:" + std::to_string(port)), std::string::npos) << out;
  EXPECT_EQ(LoadedImdsPrograms(), before);
}

TEST_F(LifecycleTest, MissingCapabilitiesAreNamed) {
  std::string out;
  int rc = RunCommand({"capsh", "--drop=cap_bpf,cap_net_admin,cap_sys_admin", "--", "-c",
                       AgentBinary() + " --no-kube --web.listen-address 127.0.0.1:" + std::to_string(FreePort())},
                      {}, std::chrono::seconds(20), &out);
  EXPECT_EQ(rc, 1) << out;
  EXPECT_NE(out.find("CAP_BPF is missing"), std::string::npos) << out;
  EXPECT_NE(out.find("CAP_NET_ADMIN is missing"), std::string::npos) << out;
}

TEST_F(LifecycleTest, BadCgroupRootIsRefused) {
  std::string out;
  EXPECT_EQ(RunCommand({AgentBinary(), "--no-kube", "--cgroup-root", "/tmp", "--web.listen-address",
                        "127.0.0.1:" + std::to_string(FreePort())},
                       {}, std::chrono::seconds(20), &out),
            1);
  EXPECT_NE(out.find("not a cgroup v2 mount"), std::string::npos) << out;
}

// Programs of ours attached at the cgroup root.
int AttachedImdsPrograms() {
  std::string out;
  RunCommand({"bpftool", "cgroup", "show", CgroupRoot()}, {}, std::chrono::seconds(10), &out);
  int n = 0;
  for (size_t pos = 0; (pos = out.find("imds_", pos)) != std::string::npos; pos++) n++;
  return n;
}

TEST_F(LifecycleTest, SigtermDetachesEverythingWithinASecondAndARestartCountsAgain) {
  int loaded_before = LoadedImdsPrograms();
  int attached_before = AttachedImdsPrograms();
  Agent agent({"--no-kube"});
  ASSERT_EQ(AttachedImdsPrograms(), attached_before + 5);
  // Hooks running while the signal arrives: connects to the metadata address
  // from a network namespace of the loop's own, with no route, so nothing
  // leaves the machine (the host may route 169.254.169.254 to a real network).
  auto load = std::make_unique<Process>(std::vector<std::string>{
      "unshare", "--net", "bash", "-c",
      "while true; do curl -s -m 1 http://169.254.169.254/ >/dev/null; sleep 0.01; done"});
  auto start = std::chrono::steady_clock::now();
  kill(agent.process().pid(), SIGTERM);
  while (AttachedImdsPrograms() != attached_before &&
         std::chrono::steady_clock::now() - start < std::chrono::seconds(3))
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  auto detach_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count();
  std::printf("detached %lld ms after SIGTERM\n", static_cast<long long>(detach_ms));
  EXPECT_LT(detach_ms, 1000);
  EXPECT_EQ(agent.process().Wait(std::chrono::seconds(5)), 0);
  // the kernel frees programs after a grace period once the last fd is gone
  for (int i = 0; i < 50 && LoadedImdsPrograms() != loaded_before; i++)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(LoadedImdsPrograms(), loaded_before);

  // A restart picks up again: a new agent attaches and counts from zero.
  load.reset();
  std::string work = "/tmp/imdswatch-restart-" + UniquePrefix();
  const int port = FreePort();
  Process standin({"/usr/bin/python3", SourceDir() + "/tests/fixtures/imds_standin.py", "--listen",
                   "127.0.0.1:" + std::to_string(port), "--ready-file", work + ".ready"});
  ASSERT_TRUE(WaitForFile(work + ".ready", std::chrono::seconds(10)));
  Agent again({"--no-kube", "--endpoint", "127.0.0.1:" + std::to_string(port)});
  EXPECT_EQ(AttachedImdsPrograms(), attached_before + 5);
  ASSERT_EQ(RunCommand({"curl", "-sS", "-o", "/dev/null", "http://127.0.0.1:" + std::to_string(port) +
                                                            "/latest/meta-data/instance-id"}),
            0);
  const std::map<std::string, std::string> mine = {{"client", "curl"}, {"call", "metadata"}};
  auto scraped =
      again.ScrapeUntil([&](const std::vector<Sample>& x) { return SumOf(x, "imds_requests_total", mine) >= 1; });
  EXPECT_EQ(SumOf(scraped, "imds_requests_total", mine), 1);
  unlink((work + ".ready").c_str());
}

TEST_F(LifecycleTest, TracePrintsOneJsonLinePerRequest) {
  std::string work = "/tmp/imdswatch-trace-" + UniquePrefix();
  int port = FreePort();
  Process standin({"/usr/bin/python3", SourceDir() + "/tests/fixtures/imds_standin.py", "--listen",
                   "127.0.0.1:" + std::to_string(port), "--canary", "TRACECANARY", "--ready-file", work + ".ready"});
  ASSERT_TRUE(WaitForFile(work + ".ready", std::chrono::seconds(10)));
  Process trace({AgentBinary(), "trace", "--output", "json", "--no-kube", "--endpoint", "127.0.0.1:" + std::to_string(port)},
                {.stdout_file = work + ".out", .stderr_file = work + ".err"});
  // the programs are attached once trace logs it
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (ReadFile(work + ".err").find("attached cgroup_skb/ingress") == std::string::npos &&
         std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  std::string base = "http://127.0.0.1:" + std::to_string(port);
  std::string token;
  ASSERT_EQ(RunCommand({"curl", "-sS", "-X", "PUT", "-H", "X-aws-ec2-metadata-token-ttl-seconds: 60",
                        base + "/latest/api/token"},
                       {}, std::chrono::seconds(10), &token),
            0);
  ASSERT_EQ(RunCommand({"curl", "-sS", "-o", "/dev/null", "-H", "X-aws-ec2-metadata-token: " + token,
                        base + "/latest/meta-data/iam/security-credentials/imdswatch-test-role"}),
            0);
  deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  std::string out = ReadFile(work + ".out");
  while (std::count(out.begin(), out.end(), '\n') < 2 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    out = ReadFile(work + ".out");
  }
  trace.Terminate();
  out = ReadFile(work + ".out");
  std::stringstream lines(out);
  std::string first, second;
  std::getline(lines, first);
  std::getline(lines, second);
  EXPECT_NE(first.find("\"call\":\"token\""), std::string::npos) << out;
  EXPECT_NE(first.find("\"version\":\"v2\""), std::string::npos) << out;
  EXPECT_NE(first.find("\"process\":\"curl\""), std::string::npos) << out;
  EXPECT_NE(first.find("\"status\":200"), std::string::npos) << out;
  EXPECT_NE(second.find("\"call\":\"credentials\""), std::string::npos) << out;
  EXPECT_NE(second.find("\"outcome\":\"ok\""), std::string::npos) << out;
  EXPECT_EQ(out.find("TRACECANARY"), std::string::npos) << "a secret reached trace output";
  EXPECT_EQ(ReadFile(work + ".err").find("TRACECANARY"), std::string::npos);
  for (const char* ext : {".out", ".err", ".ready"}) unlink((work + ext).c_str());
}

TEST_F(LifecycleTest, DoctorWatchesLocallyAndExitsOneOnFindings) {
  std::string work = "/tmp/imdswatch-doctor-" + UniquePrefix();
  int port = FreePort();
  Process standin({"/usr/bin/python3", SourceDir() + "/tests/fixtures/imds_standin.py", "--listen",
                   "127.0.0.1:" + std::to_string(port), "--ready-file", work + ".ready"});
  ASSERT_TRUE(WaitForFile(work + ".ready", std::chrono::seconds(10)));
  Process doctor({AgentBinary(), "doctor", "--no-kube", "--duration", "6s", "--endpoint",
                  "127.0.0.1:" + std::to_string(port)},
                 {.stdout_file = work + ".out", .stderr_file = work + ".err"});
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (ReadFile(work + ".err").find("watching metadata calls") == std::string::npos &&
         std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ASSERT_EQ(RunCommand({"curl", "-sS", "-o", "/dev/null",
                        "http://127.0.0.1:" + std::to_string(port) + "/latest/meta-data/instance-id"}),
            0);
  EXPECT_EQ(doctor.Wait(std::chrono::seconds(20)), 1);
  std::string out = ReadFile(work + ".out");
  EXPECT_NE(out.find("imdsv1"), std::string::npos) << out;
  EXPECT_NE(out.find("Fix:"), std::string::npos) << out;
  for (const char* ext : {".out", ".err", ".ready"}) unlink((work + ext).c_str());
}

TEST_F(LifecycleTest, DoctorSaysSoWhenTheAgentIsUnreachable) {
  std::string out;
  EXPECT_EQ(RunCommand({AgentBinary(), "doctor", "--url", "http://127.0.0.1:" + std::to_string(FreePort())}, {},
                       std::chrono::seconds(20), &out),
            2);
  EXPECT_NE(out.find("doctor:"), std::string::npos) << out;
}

}  // namespace
}  // namespace imdswatch::testing
