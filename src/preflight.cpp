#include "imdswatch/preflight.h"

#include <linux/capability.h>
#include <linux/magic.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fstream>

#ifndef CAP_PERFMON
#define CAP_PERFMON 38
#endif
#ifndef CAP_BPF
#define CAP_BPF 39
#endif

namespace imdswatch {

const std::vector<CapabilityNeed>& RequiredCapabilities() {
  static const std::vector<CapabilityNeed> needs = {
      {CAP_BPF, "CAP_BPF", "create maps and load programs"},
      {CAP_PERFMON, "CAP_PERFMON",
       "load the HTTP parsers (pointer arithmetic the verifier allows only with it) and the kfree_skb tracepoint"},
      {CAP_NET_ADMIN, "CAP_NET_ADMIN",
       "load and attach cgroup_skb, sockops and cgroup/connect programs (network program types)"},
      {CAP_SYS_RESOURCE, "CAP_SYS_RESOURCE",
       "raise RLIMIT_MEMLOCK on kernels before 5.11, which charge BPF memory to it"},
  };
  return needs;
}

namespace {

bool HasEffective(int cap) {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  if (syscall(SYS_capget, &header, data) != 0) return false;
  return (data[cap / 32].effective >> (cap % 32)) & 1u;
}

// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK; later ones to the memcg.
bool KernelChargesMemlock() {
  std::ifstream in("/proc/sys/kernel/osrelease");
  int major = 0, minor = 0;
  char dot = 0;
  in >> major >> dot >> minor;
  return major < 5 || (major == 5 && minor < 11);
}

}  // namespace

std::vector<std::string> MissingCapabilities() {
  std::vector<std::string> missing;
  for (const auto& need : RequiredCapabilities()) {
    if (need.cap == CAP_SYS_RESOURCE && !KernelChargesMemlock()) continue;
    // CAP_SYS_ADMIN stands in for CAP_BPF/CAP_PERFMON on kernels that predate them.
    if ((need.cap == CAP_BPF || need.cap == CAP_PERFMON) && HasEffective(CAP_SYS_ADMIN)) continue;
    if (!HasEffective(need.cap))
      missing.push_back(std::string(need.name) + " is missing (needed to " + need.why + ")");
  }
  return missing;
}

bool DropCapability(int cap) {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  if (syscall(SYS_capget, &header, data) != 0) return false;
  const uint32_t bit = 1u << (cap % 32);
  auto& set = data[cap / 32];
  if (!((set.effective | set.permitted | set.inheritable) & bit)) return true;
  set.effective &= ~bit;
  set.permitted &= ~bit;
  set.inheritable &= ~bit;
  return syscall(SYS_capset, &header, data) == 0;
}

std::string CheckKernelBtf(const std::string& btf_path) {
  if (access(btf_path.c_str(), R_OK) == 0) return "";
  return "kernel BTF not readable at " + btf_path + " (" + std::strerror(errno) +
         "): imdswatch needs a kernel built with CONFIG_DEBUG_INFO_BTF=y";
}

std::string CheckCgroupV2Root(const std::string& dir) {
  struct statfs fs {};
  if (statfs(dir.c_str(), &fs) != 0)
    return "cgroup root " + dir + ": " + std::strerror(errno);
  if (fs.f_type != CGROUP2_SUPER_MAGIC)
    return "cgroup root " + dir + " is not a cgroup v2 mount (give --cgroup-root)";
  return "";
}

}  // namespace imdswatch
