// What the agent and `trace` share: checked privileges, the kernel probes,
// attribution (cgroups and, optionally, the Kubernetes API) and the decoder
// feeding a CallTracker.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>

#include "imdswatch/attributor.h"
#include "imdswatch/call_tracker.h"
#include "imdswatch/cgroup_resolver.h"
#include "imdswatch/config.h"
#include "imdswatch/event_decoder.h"
#include "imdswatch/kube_client.h"
#include "imdswatch/pod_store.h"
#include "imdswatch/probes.h"

namespace imdswatch {

class Pipeline {
 public:
  // Checks privileges and kernel features, loads the probes, starts the
  // Kubernetes watcher. Null with *error (one line) on failure. delivery:
  // see Probes (batched unless each record must show at once, as in trace).
  static std::unique_ptr<Pipeline> Start(const AgentConfig& config, CallSink* sink, std::string* error,
                                         Delivery delivery = Delivery::kBatched);
  ~Pipeline();

  // Handles one ring-buffer record.
  void OnRecord(const void* data, size_t size);
  // Thread-safe: names a cgroup for labels.
  Workload Resolve(uint64_t cgroup_id, std::string_view comm);
  bool CgroupAlive(uint64_t cgroup_id);

  Probes& probes() { return *probes_; }
  CallTracker& tracker() { return *tracker_; }
  CgroupResolver& cgroups() { return *cgroups_; }
  Attributor& attributor() { return *attributor_; }
  KubePodWatcher* kube() { return kube_.get(); }
  PodStore* pods() { return pods_.get(); }
  const std::string& cgroup_root() const { return cgroup_root_; }
  uint64_t decode_errors(DecodeError e) const { return decode_errors_[static_cast<int>(e)]; }
  uint64_t events(uint8_t type) const { return type < 16 ? events_[type].load() : 0; }

 private:
  Pipeline() = default;
  std::string cgroup_root_;
  std::unique_ptr<CgroupResolver> cgroups_;
  std::unique_ptr<PodStore> pods_;
  std::unique_ptr<KubePodWatcher> kube_;
  std::unique_ptr<Attributor> attributor_;
  std::mutex attributor_mu_;
  std::unique_ptr<CallTracker> tracker_;
  std::unique_ptr<Probes> probes_;
  std::atomic<uint64_t> decode_errors_[4] = {};
  std::atomic<uint64_t> events_[16] = {};
};

}  // namespace imdswatch
