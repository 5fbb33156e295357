#include "imdswatch/attributor.h"

#include <algorithm>
#include <functional>
#include <optional>
#include <utility>

#include "imdswatch/cgroup_path.h"

namespace imdswatch {
namespace {

constexpr size_t kShortIdLength = 12;  // what `docker ps` and `crictl ps` show

std::string ShortId(const std::string& id) { return id.substr(0, kShortIdLength); }

}  // namespace

size_t Attributor::KeyHash::operator()(const Key& key) const {
  size_t h = std::hash<uint64_t>()(key.cgroup_id);
  return h ^ (std::hash<std::string>()(key.comm) + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2));
}

Attributor::Attributor(CgroupResolver* cgroups, const PodStore* pods, size_t max_entries)
    : cgroups_(cgroups), pods_(pods), max_entries_(std::max<size_t>(max_entries, 1)) {}

Workload Attributor::Resolve(uint64_t cgroup_id, std::string_view comm) {
  // The kernel's comm is a NUL-padded 16-byte array; callers may pass it whole.
  comm = comm.substr(0, comm.find('\0'));
  const uint64_t generation = pods_ != nullptr ? pods_->Generation() : 0;

  std::lock_guard<std::mutex> lock(mu_);
  ++stats_.resolves;
  Key key{cgroup_id, std::string(comm)};
  auto it = cache_.find(key);
  if (it != cache_.end() && (!it->second.from_pod_store || it->second.generation == generation)) {
    ++stats_.cache_hits;
    lru_.splice(lru_.begin(), lru_, it->second.lru);
    Count(it->second.failure);
    return it->second.workload;
  }

  Failure failure = Failure::kNone;
  bool from_pod_store = false;
  Workload workload = Compute(cgroup_id, comm, &failure, &from_pod_store);
  Count(failure);
  // An unknown cgroup may be one the resolver has not rescanned for yet; the
  // resolver's own cache and rate limit keep retries cheap, so do not pin it.
  if (failure == Failure::kCgroupUnknown) {
    if (it != cache_.end()) {
      lru_.erase(it->second.lru);
      cache_.erase(it);
    }
    return workload;
  }

  if (it != cache_.end()) {
    it->second.workload = workload;
    it->second.failure = failure;
    it->second.from_pod_store = from_pod_store;
    it->second.generation = generation;
    lru_.splice(lru_.begin(), lru_, it->second.lru);
    return workload;
  }
  if (cache_.size() >= max_entries_) {
    cache_.erase(lru_.back());
    lru_.pop_back();
  }
  lru_.push_front(key);
  cache_.emplace(std::move(key), Entry{workload, failure, from_pod_store, generation, lru_.begin()});
  return workload;
}

Workload Attributor::Compute(uint64_t cgroup_id, std::string_view comm, Failure* failure, bool* from_pod_store) {
  Workload workload;
  std::optional<std::string> path = cgroups_->PathOf(cgroup_id);
  if (!path) {
    *failure = Failure::kCgroupUnknown;
    workload.workload = std::string(comm);
    return workload;
  }
  CgroupIdentity identity = ParseCgroupPath(*path);
  if (identity.InPod()) {
    *from_pod_store = true;
    std::optional<PodInfo> pod = pods_ != nullptr ? pods_->Lookup(identity.pod_uid) : std::nullopt;
    if (!pod) {
      *failure = Failure::kPodUnknown;
      workload.pod = identity.pod_uid;
      workload.container = ShortId(identity.container_id);
      return workload;
    }
    workload.namespace_name = pod->namespace_name;
    workload.workload = pod->workload;
    workload.pod = pod->name;
    if (!identity.container_id.empty()) {
      auto container = pod->containers.find(identity.container_id);
      if (container != pod->containers.end()) {
        workload.container = container->second;
      } else {
        *failure = Failure::kContainerUnknown;
        workload.container = ShortId(identity.container_id);
      }
    }
    return workload;
  }
  if (identity.runtime == "docker" && !identity.container_id.empty()) {
    workload.workload = "docker:" + ShortId(identity.container_id);
  } else if (!identity.systemd_unit.empty()) {
    workload.workload = identity.systemd_unit;
  } else {
    workload.workload = std::string(comm);
  }
  return workload;
}

void Attributor::Count(Failure failure) {
  switch (failure) {
    case Failure::kNone: break;
    case Failure::kCgroupUnknown: ++stats_.cgroup_unknown; break;
    case Failure::kPodUnknown: ++stats_.pod_unknown; break;
    case Failure::kContainerUnknown: ++stats_.container_unknown; break;
  }
}

std::vector<std::pair<std::string, uint64_t>> Attributor::FailureCounts() const {
  AttributorStats stats = Stats();
  return {{"cgroup_unknown", stats.cgroup_unknown},
          {"pod_unknown", stats.pod_unknown},
          {"container_unknown", stats.container_unknown}};
}

AttributorStats Attributor::Stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  AttributorStats stats = stats_;
  stats.entries = cache_.size();
  return stats;
}

}  // namespace imdswatch
