#include "imdswatch/attributor.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

namespace imdswatch {

// Found by gtest through ADL, so it lives in the type's namespace.
void PrintTo(const Workload& w, std::ostream* os) {
  *os << "{ns=\"" << w.namespace_name << "\" workload=\"" << w.workload << "\" pod=\"" << w.pod
      << "\" container=\"" << w.container << "\"}";
}

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const std::string kWebUid = "5c3d8e2a-1b4f-4c6d-9e8f-0a1b2c3d4e5f";
const std::string kWebUidSystemd = "5c3d8e2a_1b4f_4c6d_9e8f_0a1b2c3d4e5f";
const std::string kAppId = "0b3cd6f0e4c0a1d2f2b2e52e7b1f3a8c9d0e1f2a3b4c5d6e7f8091a2b3c4d5e6";
const std::string kWebPodDir =
    "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + kWebUidSystemd + ".slice";

json LoadItems() {
  std::ifstream in(std::string(IMDSWATCH_SOURCE_DIR) + "/tests/unit/data/pod_list.json");
  return json::parse(in)["items"];
}

Workload W(std::string ns, std::string workload, std::string pod, std::string container) {
  return Workload{std::move(ns), std::move(workload), std::move(pod), std::move(container)};
}

class AttributorTest : public testing::Test {
 protected:
  AttributorTest() {
    std::string tmpl = (fs::temp_directory_path() / "imdswatch-attr-XXXXXX").string();
    root_ = mkdtemp(tmpl.data());
  }
  ~AttributorTest() override {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }

  uint64_t Cgroup(const std::string& rel) {
    fs::create_directories(root_ + rel);
    struct stat st {};
    EXPECT_EQ(stat((root_ + rel).c_str(), &st), 0);
    now_ += std::chrono::seconds(1);  // let the resolver rescan for it
    return st.st_ino;
  }

  std::string root_;
  std::chrono::steady_clock::time_point now_{std::chrono::hours(1)};
  PodStore store_;

  CgroupResolver MakeResolver() { return CgroupResolver(root_, 1000, [this] { return now_; }); }
};

TEST_F(AttributorTest, PodContainerGetsAllNames) {
  uint64_t id = Cgroup(kWebPodDir + "/cri-containerd-" + kAppId + ".scope");
  store_.ReplaceAll(LoadItems());
  CgroupResolver cgroups = MakeResolver();
  Attributor attributor(&cgroups, &store_);
  EXPECT_EQ(attributor.Resolve(id, "python3"), W("shop", "web", "web-7d9f8b6c5d-x2x4q", "app"));
  AttributorStats stats = attributor.Stats();
  EXPECT_EQ(stats.pod_unknown + stats.container_unknown + stats.cgroup_unknown, 0u);
}

TEST_F(AttributorTest, CgroupfsCriOPod) {
  uint64_t id = Cgroup("/kubepods/besteffort/pod6d4e9f3b-2c5a-4d7e-8f90-1b2c3d4e5f60/crio-" + std::string(64, '5'));
  store_.ReplaceAll(LoadItems());
  CgroupResolver cgroups = MakeResolver();
  Attributor attributor(&cgroups, &store_);
  EXPECT_EQ(attributor.Resolve(id, "sh"), W("batch", "report", "report-28391040-7xk2p", "report"));
}

TEST_F(AttributorTest, StaticPodByKubeletUid) {
  uint64_t id = Cgroup("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod3f1e9a0b7c2d4e5f60718293a4b5c6d7"
                       ".slice/cri-containerd-" +
                       std::string(64, '7') + ".scope");
  store_.ReplaceAll(LoadItems());
  CgroupResolver cgroups = MakeResolver();
  Attributor attributor(&cgroups, &store_);
  EXPECT_EQ(attributor.Resolve(id, "kube-proxy"), W("kube-system", "kube-proxy", "kube-proxy-node-a", "kube-proxy"));
}

TEST_F(AttributorTest, PodUnknownUntilTheStoreLearnsIt) {
  uint64_t id = Cgroup(kWebPodDir + "/cri-containerd-" + kAppId + ".scope");
  CgroupResolver cgroups = MakeResolver();
  Attributor attributor(&cgroups, &store_);
  Workload early = W("", "", kWebUid, kAppId.substr(0, 12));
  EXPECT_EQ(attributor.Resolve(id, "python3"), early);
  EXPECT_EQ(attributor.Resolve(id, "python3"), early);  // cached while the store is unchanged
  EXPECT_EQ(attributor.Stats().pod_unknown, 2u);
  EXPECT_EQ(attributor.Stats().cache_hits, 1u);

  store_.ApplyPod(LoadItems()[0]);
  EXPECT_EQ(attributor.Resolve(id, "python3"), W("shop", "web", "web-7d9f8b6c5d-x2x4q", "app"));
  EXPECT_EQ(attributor.Stats().pod_unknown, 2u);

  store_.Remove(kWebUid);  // deleted pods fall back to the uid again
  EXPECT_EQ(attributor.Resolve(id, "python3"), early);
}

TEST_F(AttributorTest, ContainerUnknownKeepsPodNames) {
  const std::string fresh(64, 'c');
  uint64_t id = Cgroup(kWebPodDir + "/cri-containerd-" + fresh + ".scope");
  uint64_t pod_level = Cgroup(kWebPodDir);
  store_.ReplaceAll(LoadItems());
  CgroupResolver cgroups = MakeResolver();
  Attributor attributor(&cgroups, &store_);
  EXPECT_EQ(attributor.Resolve(id, "app"), W("shop", "web", "web-7d9f8b6c5d-x2x4q", "cccccccccccc"));
  EXPECT_EQ(attributor.Stats().container_unknown, 1u);
  EXPECT_EQ(attributor.Resolve(pod_level, "x"), W("shop", "web", "web-7d9f8b6c5d-x2x4q", ""));
  EXPECT_EQ(attributor.Stats().container_unknown, 1u);
}

TEST_F(AttributorTest, WithoutPodStore) {
  uint64_t id = Cgroup(kWebPodDir + "/cri-containerd-" + kAppId + ".scope");
  CgroupResolver cgroups = MakeResolver();
  Attributor attributor(&cgroups, nullptr);
  EXPECT_EQ(attributor.Resolve(id, "python3"), W("", "", kWebUid, kAppId.substr(0, 12)));
  EXPECT_EQ(attributor.Stats().pod_unknown, 1u);
}

TEST_F(AttributorTest, OutsidePods) {
  uint64_t docker = Cgroup("/system.slice/docker-" + kAppId + ".scope");
  uint64_t service = Cgroup("/system.slice/sshd.service");
  uint64_t session = Cgroup("/user.slice/user-1000.slice/session-3.scope");
  CgroupResolver cgroups = MakeResolver();
  Attributor attributor(&cgroups, &store_);
  EXPECT_EQ(attributor.Resolve(docker, "aws"), W("", "docker:" + kAppId.substr(0, 12), "", ""));
  EXPECT_EQ(attributor.Resolve(service, "sshd"), W("", "sshd.service", "", ""));
  EXPECT_EQ(attributor.Resolve(session, "curl"), W("", "curl", "", ""));
  EXPECT_EQ(attributor.Resolve(session, "aws"), W("", "aws", "", ""));  // keyed by comm too
  EXPECT_EQ(attributor.Resolve(session, std::string_view("aws\0\0\0\0\0", 8)), W("", "aws", "", ""));
  EXPECT_EQ(attributor.Stats().entries, 4u);
  AttributorStats stats = attributor.Stats();
  EXPECT_EQ(stats.pod_unknown + stats.container_unknown + stats.cgroup_unknown, 0u);
}

TEST_F(AttributorTest, UnknownCgroupFallsBackToCommAndIsRetried) {
  Cgroup("/system.slice");
  CgroupResolver cgroups = MakeResolver();
  Attributor attributor(&cgroups, &store_);
  uint64_t missing = 0xfeedface;
  EXPECT_EQ(attributor.Resolve(missing, "curl"), W("", "curl", "", ""));
  EXPECT_EQ(attributor.Stats().cgroup_unknown, 1u);
  EXPECT_EQ(attributor.Stats().entries, 0u);  // not pinned: the next rescan may find it
  using Counts = std::vector<std::pair<std::string, uint64_t>>;
  EXPECT_EQ(attributor.FailureCounts(), (Counts{{"cgroup_unknown", 1}, {"pod_unknown", 0}, {"container_unknown", 0}}));

  uint64_t late = Cgroup("/system.slice/late.service");
  EXPECT_EQ(attributor.Resolve(late, "late"), W("", "late.service", "", ""));
}

TEST_F(AttributorTest, StoreChangesOnlyRefreshPodEntries) {
  uint64_t pod = Cgroup(kWebPodDir + "/cri-containerd-" + kAppId + ".scope");
  uint64_t service = Cgroup("/system.slice/sshd.service");
  store_.ReplaceAll(LoadItems());
  CgroupResolver cgroups = MakeResolver();
  Attributor attributor(&cgroups, &store_);
  attributor.Resolve(pod, "a");
  attributor.Resolve(service, "b");

  json renamed = LoadItems()[0];
  renamed["status"]["containerStatuses"][0]["name"] = "app-v2";
  store_.ApplyPod(renamed);
  uint64_t hits = attributor.Stats().cache_hits;
  EXPECT_EQ(attributor.Resolve(service, "b").workload, "sshd.service");
  EXPECT_EQ(attributor.Stats().cache_hits, hits + 1);
  EXPECT_EQ(attributor.Resolve(pod, "a").container, "app-v2");
  EXPECT_EQ(attributor.Stats().cache_hits, hits + 1);
}

TEST_F(AttributorTest, CacheIsBounded) {
  uint64_t service = Cgroup("/system.slice/sshd.service");
  CgroupResolver cgroups = MakeResolver();
  Attributor attributor(&cgroups, &store_, 2);
  attributor.Resolve(service, "a");
  attributor.Resolve(service, "b");
  attributor.Resolve(service, "a");  // a is now the most recent
  attributor.Resolve(service, "c");  // evicts b
  EXPECT_EQ(attributor.Stats().entries, 2u);
  uint64_t hits = attributor.Stats().cache_hits;
  attributor.Resolve(service, "a");
  EXPECT_EQ(attributor.Stats().cache_hits, hits + 1);
  attributor.Resolve(service, "b");
  EXPECT_EQ(attributor.Stats().cache_hits, hits + 1);
}

}  // namespace
}  // namespace imdswatch
