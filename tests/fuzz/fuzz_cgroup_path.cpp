// ParseCgroupPath (include/imdswatch/cgroup_path.h) on any path: the agent
// reads cgroup paths from cgroupfs, whose names any pod with a writable
// cgroup (or a runtime) can choose.
//
// Input: the path.
// Invariants:
//  - a pod uid is canonical (36 lower-case hex with dashes at 8/13/18/23,
//    or kubelet's 32 hex); a container id is 64 lower-case hex; the runtime
//    is "", containerd, cri-o or docker; a unit ends in ".service";
//  - a pod never has a systemd unit; a container id always has a pod or is
//    a plain docker container;
//  - doubled slashes and a trailing slash change nothing.
#include <cstdint>
#include <string>

#include "fuzz_common.h"
#include "imdswatch/cgroup_path.h"

using imdswatch::CgroupIdentity;
using imdswatch::ParseCgroupPath;
using imdswatch::fuzz::Printable;

namespace {

bool LowerHex(const std::string& s) {
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

bool CanonicalUid(const std::string& uid) {
  if (uid.size() == 32) return LowerHex(uid);
  if (uid.size() != 36) return false;
  for (size_t i = 0; i < uid.size(); i++) {
    bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash != (uid[i] == '-')) return false;
    if (!dash && !LowerHex(std::string(1, uid[i]))) return false;
  }
  return true;
}

std::string Describe(const CgroupIdentity& id) {
  return "pod=" + id.pod_uid + " container=" + id.container_id + " runtime=" + id.runtime +
         " unit=" + Printable(id.systemd_unit);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path(reinterpret_cast<const char*>(data), size);
  const CgroupIdentity id = ParseCgroupPath(path);

  FUZZ_CHECK(id.pod_uid.empty() || CanonicalUid(id.pod_uid), "%s", Describe(id).c_str());
  FUZZ_CHECK(id.container_id.empty() || (id.container_id.size() == 64 && LowerHex(id.container_id)), "%s",
             Describe(id).c_str());
  FUZZ_CHECK(id.runtime.empty() || id.runtime == "containerd" || id.runtime == "cri-o" || id.runtime == "docker",
             "%s", Describe(id).c_str());
  FUZZ_CHECK(id.systemd_unit.empty() ||
                 (id.systemd_unit.size() > 8 && id.systemd_unit.substr(id.systemd_unit.size() - 8) == ".service"),
             "%s", Describe(id).c_str());
  FUZZ_CHECK(!(id.InPod() && !id.systemd_unit.empty()), "%s", Describe(id).c_str());
  FUZZ_CHECK(id.container_id.empty() || id.InPod() || id.runtime == "docker", "%s", Describe(id).c_str());

  if (!path.empty() && path[0] == '/' && path.size() < 2000) {
    std::string doubled;
    for (char c : path) {
      doubled += c;
      if (c == '/') doubled += '/';
    }
    FUZZ_CHECK(ParseCgroupPath(doubled) == id, "doubled slashes: %s vs %s", Describe(ParseCgroupPath(doubled)).c_str(),
               Describe(id).c_str());
    if (path.size() < 4000)
      FUZZ_CHECK(ParseCgroupPath(path + "/") == id, "trailing slash: %s vs %s",
                 Describe(ParseCgroupPath(path + "/")).c_str(), Describe(id).c_str());
  }
  return 0;
}
