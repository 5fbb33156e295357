// Checks made before any program is loaded, so a missing privilege or kernel
// feature is one clear line instead of a verifier dump.
#pragma once

#include <string>
#include <vector>

namespace imdswatch {

struct CapabilityNeed {
  int cap;
  const char* name;
  const char* why;
};

// The capabilities the agent needs, with the reason for each (also what the
// DaemonSet grants; tests/unit check deploy/ against this list).
const std::vector<CapabilityNeed>& RequiredCapabilities();

// Empty when everything is present; otherwise one message per problem.
std::vector<std::string> MissingCapabilities();

// Gives up cap (effective, permitted and inheritable sets) if the process
// holds it; true when it is not held afterwards. For a capability needed
// only while the programs load.
bool DropCapability(int cap);

// "" when the kernel exposes BTF; otherwise why CO-RE cannot work.
std::string CheckKernelBtf(const std::string& btf_path = "/sys/kernel/btf/vmlinux");

// "" when dir is a cgroup v2 mount root; otherwise why not.
std::string CheckCgroupV2Root(const std::string& dir);

}  // namespace imdswatch
