// Series owners: the (cgroup id, process name) pairs under which the
// Aggregator and the Diagnoser keep their counts, labelled only at scrape
// time through a resolver. They are named, labelled and expire the same way:
// an owner whose cgroup has been gone longer than the ttl is dropped, and what
// it had exported is kept under its last labels ("retired") while a live
// owner shares them, so exported counters never go down, and for ttl after
// the last one goes.
#pragma once

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <utility>
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

// An owner's labels as last exported, with their text for /metrics:
// namespace, workload, pod, container -- in that order, as every imds_ metric
// has them -- escaped once (LabelText). Owners keep the one they were last
// scraped under and get a new one only when the resolver names them
// differently, so the text is made once per label change, not per scrape.
struct ExportedLabels {
  Workload who;
  std::string text;
};
std::shared_ptr<const ExportedLabels> MakeExportedLabels(Workload who);

// The series of one label set at a scrape: its labels and the merged data of
// every owner (and retired entry) under them.
template <typename Data>
struct LabelGroup {
  std::shared_ptr<const ExportedLabels> labels;
  Data data;
};

// One scrape's label sets, ordered by labels. Owners for which include(owner)
// holds (under mu) are labelled through the resolver WITHOUT mu held; an owner
// whose labels changed gets new ExportedLabels. Then, under mu again, each
// owner still present records its labels and merge(data, owner) adds it to its
// group, and merge_retired(data, retired) adds every retired entry to the
// group of its labels (a group of its own if no owner has them). So the lock
// is never held across the resolver, and each group's data is one copy, taken
// in one critical section.
// owners: map of OwnerKey -> unique_ptr<Owner>, Owner having key and exported
// (shared_ptr<const ExportedLabels>); retired: map Workload -> unique_ptr<R>.
template <typename Data, typename Owners, typename RetiredMap, typename Include, typename Merge, typename MergeRetired>
std::vector<LabelGroup<Data>> GroupByLabels(std::mutex& mu, Owners& owners, const RetiredMap& retired,
                                            const std::function<Workload(uint64_t, std::string_view)>& resolver,
                                            Include include, Merge merge, MergeRetired merge_retired) {
  struct Entry {
    OwnerKey key;
    std::shared_ptr<const ExportedLabels> labels;
    bool relabelled = false;
    size_t group = 0;
  };
  std::vector<Entry> entries;
  {
    std::lock_guard<std::mutex> lock(mu);
    entries.reserve(owners.size());
    for (const auto& [key, owner] : owners)
      if (include(*owner)) entries.push_back({key, owner->exported});
  }
  for (Entry& e : entries) {
    Workload who = LabelOwner(resolver, e.key);
    if (!e.labels || !(e.labels->who == who)) {
      e.labels = MakeExportedLabels(std::move(who));
      e.relabelled = true;
    }
  }
  std::vector<size_t> order(entries.size());
  for (size_t i = 0; i < order.size(); i++) order[i] = i;
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return entries[a].labels->who < entries[b].labels->who; });
  std::vector<LabelGroup<Data>> groups;
  for (size_t i : order) {
    if (groups.empty() || !(groups.back().labels->who == entries[i].labels->who))
      groups.push_back({entries[i].labels, Data{}});
    entries[i].group = groups.size() - 1;
  }
  auto group_of = [&groups](const Workload& who) -> LabelGroup<Data>* {
    auto it = std::lower_bound(groups.begin(), groups.end(), who,
                               [](const LabelGroup<Data>& g, const Workload& w) { return g.labels->who < w; });
    return it != groups.end() && it->labels->who == who ? &*it : nullptr;
  };

  std::vector<std::pair<Workload, Data>> orphans;  // retired label sets no owner has now
  {
    std::lock_guard<std::mutex> lock(mu);
    for (Entry& e : entries) {
      auto it = owners.find(e.key);
      if (it == owners.end()) continue;  // dropped meanwhile: its counts are in retired now
      if (e.relabelled) it->second->exported = e.labels;
      merge(groups[e.group].data, *it->second);
    }
    for (const auto& [who, r] : retired) {
      if (LabelGroup<Data>* g = group_of(who)) {
        merge_retired(g->data, *r);
      } else {
        orphans.emplace_back(who, Data{});
        merge_retired(orphans.back().second, *r);
      }
    }
  }
  if (!orphans.empty()) {
    for (auto& [who, data] : orphans) groups.push_back({MakeExportedLabels(std::move(who)), std::move(data)});
    std::sort(groups.begin(), groups.end(),
              [](const LabelGroup<Data>& a, const LabelGroup<Data>& b) { return a.labels->who < b.labels->who; });
  }
  return groups;
}

// The owner of (cgroup id, process name), made if the table has room for it;
// nullptr when it has not (the caller counts the record as dropped). last is
// the previous record's owner: most records repeat it, and it saves the hash.
// owners: map of OwnerKey -> unique_ptr<Owner>, Owner having key.
template <typename Owner, typename Owners>
Owner* FindOrMakeOwner(Owners& owners, Owner*& last, size_t max_owners, uint64_t cgroup_id, std::string_view comm) {
  const OwnerKey key = MakeOwnerKey(cgroup_id, comm);
  if (last && last->key == key) return last;
  auto it = owners.find(key);
  if (it == owners.end()) {
    if (owners.size() >= max_owners) return nullptr;
    auto owner = std::make_unique<Owner>();
    owner->key = key;
    it = owners.emplace(key, std::move(owner)).first;
  }
  last = it->second.get();
  return last;
}

// owners: map of key -> unique_ptr<Owner>, Owner having key.cgroup_id,
// gone_since (optional time) and exported (shared_ptr<const ExportedLabels>).
// retire(owner) runs under mu for each owner dropped. Asks alive() without
// holding mu.
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
    if (entry.second->exported) live.insert(entry.second->exported->who);
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
