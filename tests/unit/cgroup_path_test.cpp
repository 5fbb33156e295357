#include "imdswatch/cgroup_path.h"

#include <gtest/gtest.h>

#include <string>

namespace imdswatch {

// Found by gtest through ADL, so it lives in the type's namespace.
void PrintTo(const CgroupIdentity& id, std::ostream* os) {
  *os << "{pod_uid=\"" << id.pod_uid << "\" container_id=\"" << id.container_id << "\" runtime=\"" << id.runtime
      << "\" systemd_unit=\"" << id.systemd_unit << "\"}";
}

namespace {

// Container ids and pod uids as runtimes and kubelet write them.
const std::string kId = "0b3cd6f0e4c0a1d2f2b2e52e7b1f3a8c9d0e1f2a3b4c5d6e7f8091a2b3c4d5e6";
const std::string kUid = "5c3d8e2a-1b4f-4c6d-9e8f-0a1b2c3d4e5f";
const std::string kUidUnderscore = "5c3d8e2a_1b4f_4c6d_9e8f_0a1b2c3d4e5f";
const std::string kStaticUid = "3f1e9a0b7c2d4e5f60718293a4b5c6d7";  // kubelet hash of a static pod

struct Case {
  std::string name;
  std::string path;
  CgroupIdentity want;
};

void PrintTo(const Case& c, std::ostream* os) { *os << testing::PrintToString(c.path); }

class ParseCgroupPathTest : public testing::TestWithParam<Case> {};

TEST_P(ParseCgroupPathTest, Parses) {
  const Case& c = GetParam();
  CgroupIdentity got = ParseCgroupPath(c.path);
  EXPECT_EQ(got, c.want) << c.path << "\n got: " << testing::PrintToString(got)
                         << "\nwant: " << testing::PrintToString(c.want);
}

CgroupIdentity Pod(const std::string& container = kId, const std::string& runtime = "containerd",
                   const std::string& uid = kUid) {
  return {uid, container, runtime, ""};
}

const Case kPodLayouts[] = {
    // systemd driver
    {"SystemdBurstableContainerd",
     "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + kUidUnderscore +
         ".slice/cri-containerd-" + kId + ".scope",
     Pod()},
    {"SystemdBesteffortContainerd",
     "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + kUidUnderscore +
         ".slice/cri-containerd-" + kId + ".scope",
     Pod()},
    {"SystemdGuaranteedContainerd",
     "/kubepods.slice/kubepods-pod" + kUidUnderscore + ".slice/cri-containerd-" + kId + ".scope", Pod()},
    {"SystemdBurstableCrio",
     "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + kUidUnderscore + ".slice/crio-" + kId +
         ".scope",
     Pod(kId, "cri-o")},
    {"SystemdGuaranteedCrio", "/kubepods.slice/kubepods-pod" + kUidUnderscore + ".slice/crio-" + kId + ".scope",
     Pod(kId, "cri-o")},
    {"SystemdCrioConmonIsNotAContainer",
     "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + kUidUnderscore + ".slice/crio-conmon-" +
         kId + ".scope",
     Pod("", "cri-o")},
    {"SystemdDocker",
     "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + kUidUnderscore + ".slice/docker-" +
         kId + ".scope",
     Pod(kId, "docker")},
    {"SystemdPodLevel", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + kUidUnderscore + ".slice",
     Pod("", "")},
    {"SystemdContainerSubCgroup",
     "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + kUidUnderscore +
         ".slice/cri-containerd-" + kId + ".scope/init.scope",
     Pod()},
    {"SystemdStaticPod",
     "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + kStaticUid + ".slice/cri-containerd-" +
         kId + ".scope",
     Pod(kId, "containerd", kStaticUid)},
    {"SystemdUnknownScopeIsPodLevel",
     "/kubepods.slice/kubepods-pod" + kUidUnderscore + ".slice/something-else.scope", Pod("", "")},
    // cgroupfs driver
    {"CgroupfsBurstable", "/kubepods/burstable/pod" + kUid + "/" + kId, Pod(kId, "")},
    {"CgroupfsBesteffort", "/kubepods/besteffort/pod" + kUid + "/" + kId, Pod(kId, "")},
    {"CgroupfsGuaranteed", "/kubepods/pod" + kUid + "/" + kId, Pod(kId, "")},
    {"CgroupfsCrio", "/kubepods/burstable/pod" + kUid + "/crio-" + kId, Pod(kId, "cri-o")},
    {"CgroupfsCrioConmon", "/kubepods/burstable/pod" + kUid + "/crio-conmon-" + kId, Pod("", "cri-o")},
    {"CgroupfsPodLevel", "/kubepods/besteffort/pod" + kUid, Pod("", "")},
    {"CgroupfsUppercaseIdIsLowered", "/kubepods/pod" + kUid + "/" + std::string(64, 'A'),
     Pod(std::string(64, 'a'), "")},
    // kubepods under a prefix
    {"KindSystemd",
     "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod" +
         kUidUnderscore + ".slice/cri-containerd-" + kId + ".scope",
     Pod()},
    {"KindGuaranteed", "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-pod" + kUidUnderscore +
                           ".slice/cri-containerd-" + kId + ".scope",
     Pod()},
    {"KindNodeSeenFromHost",
     "/system.slice/docker-" + std::string(64, 'f') +
         ".scope/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-burstable.slice/"
         "kubelet-kubepods-burstable-pod" +
         kUidUnderscore + ".slice/cri-containerd-" + kId + ".scope",
     Pod()},
    {"ActionsJobCgroupfs", "/actions_job/abc123/kubepods/besteffort/pod" + kUid + "/" + kId, Pod(kId, "")},
    {"K3sCgroupfs", "/kubepods/besteffort/pod" + kUid + "/" + kId, Pod(kId, "")},
    {"DockerNodeCgroupfs", "/docker/" + std::string(64, 'f') + "/kubepods/burstable/pod" + kUid + "/" + kId,
     Pod(kId, "")},
};

INSTANTIATE_TEST_SUITE_P(PodLayouts, ParseCgroupPathTest, testing::ValuesIn(kPodLayouts),
                         [](const testing::TestParamInfo<Case>& info) { return info.param.name; });

CgroupIdentity Docker(const std::string& id = kId) { return {"", id, "docker", ""}; }
CgroupIdentity Unit(const std::string& unit) { return {"", "", "", unit}; }

const Case kHostLayouts[] = {
    {"DockerSystemd", "/system.slice/docker-" + kId + ".scope", Docker()},
    {"DockerCgroupfs", "/docker/" + kId, Docker()},
    {"DockerCgroupfsSubCgroup", "/docker/" + kId + "/inner", Docker()},
    {"DockerDaemonIsAService", "/system.slice/docker.service", Unit("docker.service")},
    {"Service", "/system.slice/sshd.service", Unit("sshd.service")},
    {"ServiceSubCgroup", "/system.slice/containerd.service/tasks", Unit("containerd.service")},
    {"TemplatedServiceInSlice", "/system.slice/system-getty.slice/getty@tty1.service", Unit("getty@tty1.service")},
    {"UserSession", "/user.slice/user-1000.slice/session-3.scope", {}},
    {"UserManager", "/user.slice/user-1000.slice/user@1000.service/app.slice/foo.service", {}},
    {"InitScope", "/init.scope", {}},
    {"Root", "/", {}},
    {"SystemSlice", "/system.slice", {}},
    {"TrailingSlash", "/system.slice/sshd.service/", Unit("sshd.service")},
};

INSTANTIATE_TEST_SUITE_P(HostLayouts, ParseCgroupPathTest, testing::ValuesIn(kHostLayouts),
                         [](const testing::TestParamInfo<Case>& info) { return info.param.name; });

const Case kGarbage[] = {
    {"Empty", "", {}},
    {"Relative", "kubepods/pod" + kUid + "/" + kId, {}},
    {"DotDot", "/kubepods/../kubepods/pod" + kUid + "/" + kId, {}},
    {"Dot", "/kubepods/./pod" + kUid + "/" + kId, {}},
    {"ControlChar", "/system.slice/ss\nhd.service", {}},
    {"EmbeddedNul", std::string("/system.slice/ss\0hd.service", 27), {}},
    {"TooLong", "/" + std::string(5000, 'a'), {}},
    {"KubepodsAlone", "/kubepods.slice", {}},
    {"QosSliceAlone", "/kubepods.slice/kubepods-burstable.slice", {}},
    {"ShortUid", "/kubepods/pod1234/" + kId, {}},
    {"UidBadSeparator", "/kubepods/pod5c3d8e2a+1b4f-4c6d-9e8f-0a1b2c3d4e5f/" + kId, {}},
    {"UidNonHex", "/kubepods/podzc3d8e2a-1b4f-4c6d-9e8f-0a1b2c3d4e5f/" + kId, {}},
    {"SystemdPodNoUid", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod.slice", {}},
    {"SliceWithoutPodMarker", "/kubepods.slice/kubepods-burstable.slice/" + kUidUnderscore + ".slice", {}},
    {"ShortContainerId", "/kubepods/pod" + kUid + "/" + kId.substr(1), Pod("", "")},
    {"NonHexContainerId", "/kubepods/pod" + kUid + "/" + std::string(64, 'g'), Pod("", "")},
    {"DockerShortId", "/system.slice/docker-abc.scope", {}},
    {"DockerWithoutId", "/docker", {}},
    {"BareServiceSuffix", "/system.slice/.service", {}},
    {"ServiceBadChars", "/system.slice/a b.service", {}},
    {"Slashes", "////", {}},
};

INSTANTIATE_TEST_SUITE_P(Garbage, ParseCgroupPathTest, testing::ValuesIn(kGarbage),
                         [](const testing::TestParamInfo<Case>& info) { return info.param.name; });

TEST(ParseCgroupPath, NeverThrowsOnArbitraryBytes) {
  // Cheap deterministic fuzz: every byte value at every position of a valid path.
  const std::string base = "/kubepods/burstable/pod" + kUid + "/crio-" + kId;
  for (size_t pos = 0; pos < base.size(); pos += 7) {
    for (int byte = 0; byte < 256; ++byte) {
      std::string mutated = base;
      mutated[pos] = static_cast<char>(byte);
      EXPECT_NO_THROW(ParseCgroupPath(mutated));
    }
  }
  // Truncation at every point never produces a container id of the wrong size.
  for (size_t len = 0; len <= base.size(); ++len) {
    CgroupIdentity id = ParseCgroupPath(std::string_view(base).substr(0, len));
    EXPECT_TRUE(id.container_id.empty() || id.container_id.size() == 64) << len;
  }
}

}  // namespace
}  // namespace imdswatch
