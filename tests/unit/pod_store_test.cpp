#include "imdswatch/pod_store.h"

#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

namespace imdswatch {
namespace {

using nlohmann::json;

json LoadPodList() {
  std::ifstream in(std::string(IMDSWATCH_SOURCE_DIR) + "/tests/unit/data/pod_list.json");
  return json::parse(in);
}

json PodNamed(const std::string& name) {
  const json list = LoadPodList();
  for (const json& pod : list["items"]) {
    if (pod["metadata"]["name"] == name) return pod;
  }
  ADD_FAILURE() << "no pod " << name << " in pod_list.json";
  return json::object();
}

std::string Id(char digit) { return std::string(64, digit); }

TEST(ParsePod, DeploymentPodWithEveryKindOfContainer) {
  PodInfo pod = ParsePod(PodNamed("web-7d9f8b6c5d-x2x4q"));
  EXPECT_EQ(pod.uid, "5c3d8e2a-1b4f-4c6d-9e8f-0a1b2c3d4e5f");
  EXPECT_EQ(pod.namespace_name, "shop");
  EXPECT_EQ(pod.name, "web-7d9f8b6c5d-x2x4q");
  EXPECT_EQ(pod.workload, "web");
  EXPECT_EQ(pod.workload_kind, "Deployment");
  EXPECT_EQ(pod.static_uid, "");
  std::map<std::string, std::string> want = {
      {Id('1'), "migrate"},
      {"0b3cd6f0e4c0a1d2f2b2e52e7b1f3a8c9d0e1f2a3b4c5d6e7f8091a2b3c4d5e6", "app"},
      {Id('2'), "app"},  // the instance before the restart
      {Id('3'), "envoy"},
      {Id('4'), "debugger-abcde"},
  };
  EXPECT_EQ(pod.containers, want);
}

TEST(ParsePod, CronJobPodStripsRuntimePrefix) {
  PodInfo pod = ParsePod(PodNamed("report-28391040-7xk2p"));
  EXPECT_EQ(pod.workload, "report");
  EXPECT_EQ(pod.workload_kind, "CronJob");
  EXPECT_EQ(pod.containers, (std::map<std::string, std::string>{{Id('5'), "report"}}));
}

TEST(ParsePod, StatefulSetPodSkipsContainersWithoutId) {
  PodInfo pod = ParsePod(PodNamed("db-0"));
  EXPECT_EQ(pod.workload, "db");
  EXPECT_EQ(pod.workload_kind, "StatefulSet");
  EXPECT_EQ(pod.containers, (std::map<std::string, std::string>{{Id('6'), "postgres"}}));
}

TEST(ParsePod, StaticPodKeepsKubeletUid) {
  PodInfo pod = ParsePod(PodNamed("kube-proxy-node-a"));
  EXPECT_EQ(pod.workload, "kube-proxy");
  EXPECT_EQ(pod.workload_kind, "StaticPod");
  EXPECT_EQ(pod.static_uid, "3f1e9a0b7c2d4e5f60718293a4b5c6d7");
}

TEST(ParsePod, BarePodIsItsOwnWorkload) {
  PodInfo pod = ParsePod(PodNamed("debug-shell"));
  EXPECT_EQ(pod.workload, "debug-shell");
  EXPECT_EQ(pod.workload_kind, "Pod");
  EXPECT_TRUE(pod.containers.empty());
}

TEST(ParsePod, PrefersControllerOwner) {
  json pod = {{"metadata",
               {{"name", "p"},
                {"ownerReferences",
                 {{{"kind", "ConfigMap"}, {"name", "cm"}},
                  {{"kind", "DaemonSet"}, {"name", "agent"}, {"controller", true}}}}}}};
  EXPECT_EQ(ParsePod(pod).workload, "agent");
  EXPECT_EQ(ParsePod(pod).workload_kind, "DaemonSet");
  pod["metadata"]["ownerReferences"][1]["controller"] = false;
  EXPECT_EQ(ParsePod(pod).workload, "cm");
}

struct WorkloadCase {
  std::string kind, owner, pod, hash;
  std::string want_kind, want_name;
};

void PrintTo(const WorkloadCase& c, std::ostream* os) {
  *os << c.kind << "/" << c.owner << " pod=" << c.pod << " hash=" << c.hash;
}

class ResolveWorkloadTest : public testing::TestWithParam<WorkloadCase> {};

TEST_P(ResolveWorkloadTest, Resolves) {
  const WorkloadCase& c = GetParam();
  WorkloadRef got = ResolveWorkload(c.kind, c.owner, c.pod, c.hash);
  EXPECT_EQ(got.kind, c.want_kind);
  EXPECT_EQ(got.name, c.want_name);
}

INSTANTIATE_TEST_SUITE_P(
    Owners, ResolveWorkloadTest,
    testing::Values(WorkloadCase{"ReplicaSet", "web-7d9f8b6c5d", "web-7d9f8b6c5d-x", "7d9f8b6c5d", "Deployment", "web"},
                    WorkloadCase{"ReplicaSet", "my-web-api-5f4b", "p", "5f4b", "Deployment", "my-web-api"},
                    // No hash label (a hand-made ReplicaSet): keep it as is.
                    WorkloadCase{"ReplicaSet", "web-7d9f8b6c5d", "p", "", "ReplicaSet", "web-7d9f8b6c5d"},
                    WorkloadCase{"ReplicaSet", "web-abc", "p", "xyz", "ReplicaSet", "web-abc"},
                    WorkloadCase{"ReplicaSet", "-abc", "p", "abc", "ReplicaSet", "-abc"},
                    WorkloadCase{"ReplicaSet", "abc", "p", "abc", "ReplicaSet", "abc"},
                    WorkloadCase{"Job", "report-28391040", "p", "", "CronJob", "report"},
                    WorkloadCase{"Job", "a-b-123456789", "p", "", "CronJob", "a-b"},
                    WorkloadCase{"Job", "migrate-1234567", "p", "", "Job", "migrate-1234567"},
                    WorkloadCase{"Job", "migrate-2024010x", "p", "", "Job", "migrate-2024010x"},
                    WorkloadCase{"Job", "-12345678", "p", "", "Job", "-12345678"},
                    WorkloadCase{"Job", "migrate", "p", "", "Job", "migrate"},
                    WorkloadCase{"StatefulSet", "db", "db-0", "", "StatefulSet", "db"},
                    WorkloadCase{"DaemonSet", "node-exporter", "node-exporter-x", "", "DaemonSet", "node-exporter"},
                    WorkloadCase{"Node", "node-a", "etcd-node-a", "", "StaticPod", "etcd"},
                    WorkloadCase{"Node", "node-a", "etcd", "", "StaticPod", "etcd"},
                    WorkloadCase{"Rollout", "canary", "p", "", "Rollout", "canary"},
                    WorkloadCase{"", "", "bare", "", "Pod", "bare"},
                    WorkloadCase{"ReplicaSet", "", "bare", "h", "Pod", "bare"}),
    [](const testing::TestParamInfo<WorkloadCase>& info) {
      std::string name = std::to_string(info.index) + "_" + (info.param.kind.empty() ? "None" : info.param.kind);
      return name;
    });

TEST(ParsePod, MalformedObjectsReadAsEmpty) {
  const json inputs[] = {
      json(),
      json(42),
      json("pod"),
      json::array({1, 2}),
      json::object(),
      json{{"metadata", 5}},
      json{{"metadata", {{"uid", 5}, {"name", json::array()}, {"ownerReferences", "x"}}}},
      json{{"metadata", {{"ownerReferences", {5, nullptr, "x"}}, {"labels", 3}, {"annotations", json::array()}}}},
      json{{"metadata", {{"ownerReferences", json::array()}}}},
      json{{"status", {{"containerStatuses", {1, nullptr, {{"name", 3}}, {{"name", "a"}, {"containerID", 7}}}}}}},
      json{{"status", {{"containerStatuses", {{{"name", "a"}, {"lastState", {{"terminated", 1}}}}}}}}},
      json{{"status", {{"initContainerStatuses", {{"containerID", "containerd://x"}}}}}},
      json{{"metadata", {{"ownerReferences", {{{"kind", 1}, {"name", "x"}, {"controller", "yes"}}}}}}},
  };
  for (const json& input : inputs) {
    PodInfo pod;
    EXPECT_NO_THROW(pod = ParsePod(input)) << input.dump();
    EXPECT_EQ(pod.uid, "") << input.dump();
    EXPECT_EQ(pod.namespace_name, "") << input.dump();
    EXPECT_TRUE(pod.containers.empty()) << input.dump();
  }
}

TEST(ParsePod, NeverThrowsWhenAnyFieldHasAnyType) {
  // Replace every node of a real pod, one at a time, by every JSON type.
  const json pod = PodNamed("web-7d9f8b6c5d-x2x4q");
  const json replacements[] = {json(), json(1), json(-1.5), json(true), json("s"), json::array(), json::object()};
  json flat = pod.flatten();
  size_t tried = 0;
  for (auto& [pointer, value] : flat.items()) {
    std::string path = pointer;
    // Also the parents of each leaf, so whole objects and arrays get replaced.
    while (!path.empty()) {
      for (const json& replacement : replacements) {
        json mutated = pod;
        mutated[json::json_pointer(path)] = replacement;
        EXPECT_NO_THROW(ParsePod(mutated)) << path;
        ++tried;
      }
      path = path.substr(0, path.rfind('/'));
    }
  }
  EXPECT_GT(tried, 100u);
}

TEST(PodStore, ApplyLookupRemove) {
  PodStore store;
  EXPECT_EQ(store.Lookup("5c3d8e2a-1b4f-4c6d-9e8f-0a1b2c3d4e5f"), std::nullopt);
  store.ApplyPod(PodNamed("web-7d9f8b6c5d-x2x4q"));
  std::optional<PodInfo> pod = store.Lookup("5c3d8e2a-1b4f-4c6d-9e8f-0a1b2c3d4e5f");
  ASSERT_TRUE(pod);
  EXPECT_EQ(pod->workload, "web");
  EXPECT_EQ(store.Size(), 1u);
  store.Remove("5c3d8e2a-1b4f-4c6d-9e8f-0a1b2c3d4e5f");
  EXPECT_EQ(store.Lookup("5c3d8e2a-1b4f-4c6d-9e8f-0a1b2c3d4e5f"), std::nullopt);
  EXPECT_EQ(store.Size(), 0u);
}

TEST(PodStore, GenerationMovesOnlyWhenContentChanges) {
  PodStore store;
  uint64_t g0 = store.Generation();
  json pod = PodNamed("db-0");
  store.ApplyPod(pod);
  uint64_t g1 = store.Generation();
  EXPECT_NE(g1, g0);
  store.ApplyPod(pod);  // a status heartbeat: nothing we use changed
  EXPECT_EQ(store.Generation(), g1);
  pod["status"]["containerStatuses"][1]["containerID"] = "docker://" + Id('8');
  store.ApplyPod(pod);
  uint64_t g2 = store.Generation();
  EXPECT_NE(g2, g1);
  EXPECT_EQ(store.Lookup("7e5f0a4c-3d6b-4e8f-9a01-2c3d4e5f6071")->containers.at(Id('8')), "pending");
  store.Remove("no-such-uid");
  EXPECT_EQ(store.Generation(), g2);
  store.Remove("7e5f0a4c-3d6b-4e8f-9a01-2c3d4e5f6071");
  EXPECT_NE(store.Generation(), g2);
}

TEST(PodStore, IgnoresPodsWithoutUid) {
  PodStore store;
  store.ApplyPod(json{{"metadata", {{"name", "x"}}}});
  EXPECT_EQ(store.Size(), 0u);
  EXPECT_EQ(store.Generation(), 0u);
}

TEST(PodStore, ReplaceAllDropsPodsMissingFromTheList) {
  PodStore store;
  store.ApplyPod(json{{"metadata", {{"uid", "gone"}, {"name", "old"}}}});
  store.ReplaceAll(LoadPodList()["items"]);
  EXPECT_EQ(store.Size(), 5u);
  EXPECT_EQ(store.Lookup("gone"), std::nullopt);
  EXPECT_EQ(store.Lookup("6d4e9f3b-2c5a-4d7e-8f90-1b2c3d4e5f60")->workload, "report");
  uint64_t g = store.Generation();
  store.ReplaceAll(json("not a list"));
  EXPECT_EQ(store.Size(), 0u);
  EXPECT_NE(store.Generation(), g);
}

TEST(PodStore, StaticPodFoundByKubeletUid) {
  PodStore store;
  store.ReplaceAll(LoadPodList()["items"]);
  std::optional<PodInfo> pod = store.Lookup("3f1e9a0b7c2d4e5f60718293a4b5c6d7");
  ASSERT_TRUE(pod);
  EXPECT_EQ(pod->name, "kube-proxy-node-a");
  EXPECT_EQ(store.Lookup("8f6a1b5d-4e7c-4f90-8b12-3d4e5f607182")->name, "kube-proxy-node-a");
  store.Remove("8f6a1b5d-4e7c-4f90-8b12-3d4e5f607182");
  EXPECT_EQ(store.Lookup("3f1e9a0b7c2d4e5f60718293a4b5c6d7"), std::nullopt);
}

TEST(PodStore, ConcurrentReadersAndWriters) {
  PodStore store;
  const json items = LoadPodList()["items"];
  std::atomic<bool> done{false};
  std::thread writer([&] {
    for (int i = 0; i < 500; ++i) {
      store.ReplaceAll(items);
      store.Remove("5c3d8e2a-1b4f-4c6d-9e8f-0a1b2c3d4e5f");
      store.ApplyPod(items[0]);
    }
    done = true;
  });
  while (!done) {
    if (auto pod = store.Lookup("5c3d8e2a-1b4f-4c6d-9e8f-0a1b2c3d4e5f")) {
      EXPECT_EQ(pod->workload, "web");
    }
  }
  writer.join();
  EXPECT_EQ(store.Lookup("5c3d8e2a-1b4f-4c6d-9e8f-0a1b2c3d4e5f")->workload, "web");
}

}  // namespace
}  // namespace imdswatch

namespace imdswatch {
namespace {

nlohmann::json PodWithIp(const std::string& uid, const std::string& name, const std::string& ip,
                         const std::string& phase = "Running") {
  return {{"metadata", {{"uid", uid}, {"namespace", "ns"}, {"name", name}}},
          {"status", {{"phase", phase}, {"podIP", ip}, {"podIPs", {{{"ip", ip}}, {{"ip", "fd00::" + uid}}}}}}};
}

std::string HolderOf(const PodStore& store, const std::string& ip) {
  auto pod = store.LookupByIp(ip);
  return pod ? pod->name : "";
}

// An address goes to the next pod while the last one may still be listed:
// the forwarding-drop proof must reach the pod that holds it now.
TEST(PodStore, AnAddressBelongsToThePodGivenItLast) {
  PodStore store;
  store.ApplyPod(PodWithIp("1", "old", "10.0.0.7"));
  EXPECT_EQ(HolderOf(store, "10.0.0.7"), "old");
  EXPECT_EQ(HolderOf(store, "fd00::1"), "old");
  store.ApplyPod(PodWithIp("2", "new", "10.0.0.7"));
  EXPECT_EQ(HolderOf(store, "10.0.0.7"), "new");
  store.ApplyPod(PodWithIp("1", "old", "10.0.0.7"));  // an unchanged heartbeat of the old one
  EXPECT_EQ(HolderOf(store, "10.0.0.7"), "new");
  store.Remove("2");
  EXPECT_EQ(HolderOf(store, "10.0.0.7"), "old");  // still listed with it
  store.Remove("1");
  EXPECT_EQ(HolderOf(store, "10.0.0.7"), "");
  EXPECT_EQ(HolderOf(store, "fd00::1"), "");
}

// A list naming a uid twice keeps the last entry, and only its addresses
// (the fuzzer found the first entry's address still pointing at the uid).
TEST(PodStore, AUidListedTwiceKeepsOnlyItsLastAddresses) {
  PodStore store;
  store.ReplaceAll(nlohmann::json::array({PodWithIp("1", "a", "10.0.0.1"), PodWithIp("1", "a", "10.0.0.2")}));
  EXPECT_EQ(HolderOf(store, "10.0.0.1"), "");
  EXPECT_EQ(HolderOf(store, "10.0.0.2"), "a");
}

TEST(PodStore, FinishedPodsHoldNoAddress) {
  PodStore store;
  store.ApplyPod(PodWithIp("1", "job", "10.0.0.8"));
  store.ApplyPod(PodWithIp("1", "job", "10.0.0.8", "Succeeded"));
  EXPECT_EQ(HolderOf(store, "10.0.0.8"), "");
  store.ApplyPod(PodWithIp("3", "failed", "10.0.0.9", "Failed"));
  EXPECT_EQ(HolderOf(store, "10.0.0.9"), "");
  store.ReplaceAll(nlohmann::json::array({PodWithIp("4", "web", "10.0.0.8")}));
  EXPECT_EQ(HolderOf(store, "10.0.0.8"), "web");
}

}  // namespace
}  // namespace imdswatch
