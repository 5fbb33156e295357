// Answers "who made this call": kernel events carry a cgroup id and a process
// name, metrics want namespace/workload/pod/container. Composes the cgroup
// resolver, the path parser and the pod store, and caches the answers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "imdswatch/call.h"
#include "imdswatch/cgroup_resolver.h"
#include "imdswatch/pod_store.h"

namespace imdswatch {

// Failures count once per Resolve call, so they compare with event counts.
struct AttributorStats {
  uint64_t resolves = 0;
  uint64_t cache_hits = 0;
  uint64_t cgroup_unknown = 0;     // id not found under the cgroup root
  uint64_t pod_unknown = 0;        // pod cgroup whose uid the store does not (yet) know
  uint64_t container_unknown = 0;  // known pod, container id not (yet) reported
  uint64_t entries = 0;
};

class Attributor {
 public:
  // `cgroups` is required; `pods` may be null (running without the
  // Kubernetes API). Both must outlive the attributor. `max_entries` bounds
  // the cache. Thread-safe.
  Attributor(CgroupResolver* cgroups, const PodStore* pods, size_t max_entries = 16384);

  // Pod processes: {namespace, workload, pod name, container name}. While the
  // store lacks the pod: {"", "", pod uid, first 12 of the container id}
  // (resolve again later: the cache refreshes when the store changes).
  // Outside pods: empty namespace/pod/container and workload =
  // "docker:<12 hex>" for plain docker containers, the systemd unit for host
  // services, else `comm`. Unknown cgroup ids also fall back to `comm`.
  Workload Resolve(uint64_t cgroup_id, std::string_view comm);

  AttributorStats Stats() const;
  // {"cgroup_unknown", n}, {"pod_unknown", n}, {"container_unknown", n}: the
  // failure counters as label/value pairs, zeros included.
  std::vector<std::pair<std::string, uint64_t>> FailureCounts() const;

 private:
  enum class Failure : uint8_t { kNone, kCgroupUnknown, kPodUnknown, kContainerUnknown };
  struct Key {
    uint64_t cgroup_id;
    std::string comm;
    bool operator==(const Key& other) const { return cgroup_id == other.cgroup_id && comm == other.comm; }
  };
  struct KeyHash {
    size_t operator()(const Key& key) const;
  };
  struct Entry {
    Workload workload;
    Failure failure = Failure::kNone;
    bool from_pod_store = false;  // only these go stale when the store changes
    uint64_t generation = 0;
    std::list<Key>::iterator lru;
  };

  Workload Compute(uint64_t cgroup_id, std::string_view comm, Failure* failure, bool* from_pod_store);
  void Count(Failure failure);

  CgroupResolver* cgroups_;
  const PodStore* pods_;
  const size_t max_entries_;

  mutable std::mutex mu_;
  std::unordered_map<Key, Entry, KeyHash> cache_;
  std::list<Key> lru_;  // most recently used first
  AttributorStats stats_;
};

}  // namespace imdswatch
