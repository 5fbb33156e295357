// The agent's own CPU, memory and file descriptors, as the Prometheus client
// libraries export them (prometheus-cpp 1.0 has no process collector).
#pragma once

#include <string>

namespace imdswatch {

struct ProcessStats {
  double cpu_seconds = 0;       // user + system
  double resident_bytes = 0;
  double open_fds = 0;
  double start_time_seconds = 0;  // since the epoch
};

// Reads /proc/self (proc_root for tests); fields stay 0 when unreadable.
ProcessStats ReadProcessStats(const std::string& proc_root = "/proc");

}  // namespace imdswatch
