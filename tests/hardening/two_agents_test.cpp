// Two agents on one node (a rollout overlap, or a second copy started by
// hand): each loads its own programs and maps, so each must count every call
// exactly once; and stopping one must not disturb the other.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <thread>

#include "hardening/hardening.h"

namespace imdswatch::testing {
namespace {

// What one agent process holds: its cgroup links (the programs it attached)
// and its ring buffer, read from /proc/PID/fdinfo (bpftool would also list
// other agents on this machine).
struct AgentBpf {
  std::set<uint64_t> linked_programs;  // prog ids of its cgroup links
  std::set<uint64_t> ringbufs;         // map ids of its ring buffers
};

AgentBpf BpfOf(pid_t pid) {
  AgentBpf out;
  const std::string dir = "/proc/" + std::to_string(pid);
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir + "/fd", ec)) {
    std::error_code link_ec;
    const std::string target = std::filesystem::read_symlink(entry.path(), link_ec).string();
    if (target.find("bpf") == std::string::npos) continue;
    std::map<std::string, std::string> info;
    std::ifstream in(dir + "/fdinfo/" + entry.path().filename().string());
    std::string key, value;
    while (in >> key >> value) info[key] = value;
    if (target == "anon_inode:bpf_link" && info["link_type:"] == "cgroup")
      out.linked_programs.insert(std::stoull(info["prog_id:"]));
    if (target == "anon_inode:bpf-map" && info["map_type:"] == "27")  // BPF_MAP_TYPE_RINGBUF
      out.ringbufs.insert(std::stoull(info["map_id:"]));
  }
  return out;
}

bool Disjoint(const std::set<uint64_t>& a, const std::set<uint64_t>& b) {
  for (uint64_t x : a)
    if (b.count(x)) return false;
  return true;
}

class TwoAgentsTest : public ::testing::Test {
 protected:
  void SetUp() override { HARDENING_REQUIRE_KERNEL(); }
};

TEST_F(TwoAgentsTest, EachCountsEveryCallExactlyOnce) {
  TempDir dir("two");
  LoopbackImds imds(dir.path());
  Agent first({"--no-kube", "--endpoint", imds.Endpoint()}, dir.path() + "/first.log");
  Agent second({"--no-kube", "--endpoint", imds.Endpoint()}, dir.path() + "/second.log");
  const AgentBpf a = BpfOf(first.process().pid()), b = BpfOf(second.process().pid());
  std::printf("first agent: %zu programs attached at the cgroup root, %zu ring buffer; second: %zu and %zu; "
              "shared: %s\n",
              a.linked_programs.size(), a.ringbufs.size(), b.linked_programs.size(), b.ringbufs.size(),
              Disjoint(a.linked_programs, b.linked_programs) && Disjoint(a.ringbufs, b.ringbufs) ? "none" : "SOME");
  EXPECT_EQ(a.linked_programs.size(), 5u);
  EXPECT_EQ(b.linked_programs.size(), 5u);
  EXPECT_EQ(a.ringbufs.size(), 1u);
  EXPECT_EQ(b.ringbufs.size(), 1u);
  EXPECT_TRUE(Disjoint(a.linked_programs, b.linked_programs)) << "the agents share programs";
  EXPECT_TRUE(Disjoint(a.ringbufs, b.ringbufs)) << "the agents share a ring buffer";

  PodCgroup pod;
  ASSERT_EQ(CurlFrom(*pod.cgroup, imds.Url()), 200);
  ASSERT_EQ(CurlFrom(*pod.cgroup, imds.Url("/latest/meta-data/iam/security-credentials/")), 200);
  const std::map<std::string, std::string> of_pod = {{"pod", pod.uid}};
  auto counted = [&](const Agent& a, double n) {
    return a.ScrapeUntil([&](const std::vector<Sample>& s) { return SumOf(s, "imds_requests_total", of_pod) >= n; });
  };
  auto s1 = counted(first, 2);
  auto s2 = counted(second, 2);
  std::this_thread::sleep_for(std::chrono::seconds(1));  // anything counted twice would show by now
  s1 = first.Scrape();
  s2 = second.Scrape();
  std::printf("2 calls: first agent counted %.0f, second %.0f (stand-in served %llu)\n",
              SumOf(s1, "imds_requests_total", of_pod), SumOf(s2, "imds_requests_total", of_pod),
              static_cast<unsigned long long>(imds.Requests()));
  EXPECT_EQ(SumOf(s1, "imds_requests_total", of_pod), 2);
  EXPECT_EQ(SumOf(s2, "imds_requests_total", of_pod), 2);
  EXPECT_EQ(SumOf(s1, "imds_connections_total", {{"pod", pod.uid}, {"outcome", "established"}}), 2);
  EXPECT_EQ(SumOf(s2, "imds_connections_total", {{"pod", pod.uid}, {"outcome", "established"}}), 2);

  // Stopping the first leaves the second's programs attached; it keeps counting.
  const auto took = first.process().Terminate();
  EXPECT_EQ(first.process().Wait(std::chrono::seconds(1)), 0) << ReadFile(first.log_file());
  std::printf("first agent stopped by SIGTERM in %lld ms\n", static_cast<long long>(took.count()));
  EXPECT_EQ(BpfOf(second.process().pid()).linked_programs, b.linked_programs);
  ASSERT_EQ(CurlFrom(*pod.cgroup, imds.Url()), 200);
  s2 = counted(second, 3);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  s2 = second.Scrape();
  std::printf("after the first agent stopped: second counted %.0f of 3\n", SumOf(s2, "imds_requests_total", of_pod));
  EXPECT_EQ(SumOf(s2, "imds_requests_total", of_pod), 3);
}

}  // namespace
}  // namespace imdswatch::testing
