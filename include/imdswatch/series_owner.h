// Series owners: the (cgroup id, process name) pairs under which the
// Aggregator and the Diagnoser keep their counts, labelled only at scrape
// time through a resolver. They are named, labelled and expire the same way:
// an owner whose cgroup has been gone longer than the ttl is dropped, and what
// it had exported is kept under its last labels ("retired") while a live
// owner shares them, so exported counters never go down, and for ttl after
// the last one goes.
#pragma once

#include <prometheus/client_metric.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <set>
#include <string_view>
#include <vector>

#include "imdswatch/call.h"

namespace imdswatch {

struct OwnerKey {
  static constexpr size_t kCommLen = 16;
  uint64_t cgroup_id = 0;
  std::array<char, kCommLen> comm{};
  bool operator==(const OwnerKey& other) const { return cgroup_id == other.cgroup_id && comm == other.comm; }
};

struct OwnerKeyHash {
  size_t operator()(const OwnerKey& key) const;
};

OwnerKey MakeOwnerKey(uint64_t cgroup_id, std::string_view comm);
std::string_view CommOf(const OwnerKey& key);

// The owner's labels from the resolver; never all empty (the process name
// stands in), and a resolver that throws names the process too.
Workload LabelOwner(const std::function<Workload(uint64_t, std::string_view)>& resolver, const OwnerKey& key);

// namespace, workload, pod, container — in that order, as every imds_ metric has them.
void AddWorkloadLabels(prometheus::ClientMetric& metric, const Workload& who);

// owners: map of key -> unique_ptr<Owner>, Owner having key.cgroup_id,
// gone_since (optional time) and exported (pointer-like Workload). retire(owner)
// runs under mu for each owner dropped. Asks alive() without holding mu.
template <typename Owners, typename Retire>
size_t ExpireGoneOwners(std::mutex& mu, Owners& owners, const std::function<bool(uint64_t cgroup_id)>& alive,
                        std::chrono::steady_clock::time_point now, std::chrono::seconds ttl, Retire retire) {
  std::vector<uint64_t> cgroups;
  {
    std::lock_guard<std::mutex> lock(mu);
    cgroups.reserve(owners.size());
    for (const auto& entry : owners) cgroups.push_back(entry.first.cgroup_id);
  }
  std::sort(cgroups.begin(), cgroups.end());
  cgroups.erase(std::unique(cgroups.begin(), cgroups.end()), cgroups.end());
  std::vector<bool> is_alive(cgroups.size());
  for (size_t i = 0; i < cgroups.size(); i++) is_alive[i] = alive(cgroups[i]);

  std::lock_guard<std::mutex> lock(mu);
  size_t dropped = 0;
  for (auto it = owners.begin(); it != owners.end();) {
    auto& owner = *it->second;
    const auto pos = std::lower_bound(cgroups.begin(), cgroups.end(), owner.key.cgroup_id);
    if (pos == cgroups.end() || *pos != owner.key.cgroup_id) {  // created after the check: next time
      ++it;
      continue;
    }
    if (is_alive[static_cast<size_t>(pos - cgroups.begin())]) {
      owner.gone_since.reset();
      ++it;
      continue;
    }
    if (!owner.gone_since) owner.gone_since = now;
    if (now - *owner.gone_since <= ttl) {
      ++it;
      continue;
    }
    retire(owner);
    it = owners.erase(it);
    dropped++;
  }
  return dropped;
}

// Forgets retired counts no live owner has shared labels with for ttl. Call
// with the owners' mutex held. retired: map Workload -> unique_ptr<R>, R
// having orphan_since.
template <typename Retired, typename Owners>
void PruneRetired(Retired& retired, const Owners& owners, std::chrono::steady_clock::time_point now,
                  std::chrono::seconds ttl) {
  if (retired.empty()) return;
  std::set<Workload> live;
  for (const auto& entry : owners)
    if (entry.second->exported) live.insert(*entry.second->exported);
  for (auto it = retired.begin(); it != retired.end();) {
    auto& r = *it->second;
    if (live.count(it->first)) {
      r.orphan_since.reset();
    } else if (!r.orphan_since) {
      r.orphan_since = now;
    } else if (now - *r.orphan_since > ttl) {
      it = retired.erase(it);
      continue;
    }
    ++it;
  }
}

}  // namespace imdswatch
