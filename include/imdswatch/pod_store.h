// What this node knows about its pods: uid -> names, owning workload and
// container ids. Fed by the API watcher, read by the attributor.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace imdswatch {

struct PodInfo {
  std::string uid;
  std::string namespace_name;
  std::string name;
  std::string workload;       // owner as people name it: Deployment, CronJob, StatefulSet, ... or the pod
  std::string workload_kind;  // "Deployment", "CronJob", "Job", "Pod", ...
  // Static pods run under kubelet's own uid; the API's mirror pod names it
  // in an annotation, and that is the uid their cgroups carry.
  std::string static_uid;
  std::map<std::string, std::string> containers;  // container id (64 hex, no runtime prefix) -> name
  std::vector<std::string> ips;  // status.podIPs; empty for hostNetwork pods (they share the node's)

  bool operator==(const PodInfo& other) const {
    return uid == other.uid && namespace_name == other.namespace_name && name == other.name &&
           workload == other.workload && workload_kind == other.workload_kind && static_uid == other.static_uid &&
           containers == other.containers && ips == other.ips;
  }
  bool operator!=(const PodInfo& other) const { return !(*this == other); }
};

// A v1.Pod object to PodInfo. Missing or mistyped fields read as empty; never
// throws, whatever the input.
PodInfo ParsePod(const nlohmann::json& pod);

// The owner name a pod's metrics should aggregate under, with its kind:
//   ReplicaSet "<deploy>-<pod-template-hash>" -> Deployment "<deploy>"
//   Job "<cronjob>-<8+ digits>"               -> CronJob "<cronjob>"
//   Node (static pod "<name>-<node>")          -> "<name>", kind "StaticPod"
//   no owner                                   -> the pod's name, kind "Pod"
//   anything else                              -> the owner as is
struct WorkloadRef {
  std::string kind;
  std::string name;
};
WorkloadRef ResolveWorkload(std::string_view owner_kind, std::string_view owner_name, std::string_view pod_name,
                            std::string_view pod_template_hash);

// Thread-safe; readers never block each other.
class PodStore {
 public:
  // ADDED/MODIFIED. Objects without a uid are ignored.
  void ApplyPod(const nlohmann::json& pod);
  void Apply(PodInfo pod);
  void Remove(std::string_view uid);
  // A full list: pods absent from it are dropped. `items` is the list's
  // "items" array; anything else empties the store.
  void ReplaceAll(const nlohmann::json& items);
  void ReplaceAll(std::vector<PodInfo> pods);

  // By API uid, or by a static pod's kubelet uid.
  std::optional<PodInfo> Lookup(std::string_view uid) const;
  // The pod holding this IP (textual form as the API writes it): of pods
  // listing the same address, the one the API reported last; finished pods
  // (Succeeded, Failed) hold none.
  std::optional<PodInfo> LookupByIp(std::string_view ip) const;
  size_t Size() const;

  // Changes whenever the stored content changes (not on no-op updates, which
  // the API sends for every status heartbeat), so callers know when cached
  // attributions may be stale.
  uint64_t Generation() const { return generation_.load(std::memory_order_acquire); }

 private:
  void RemoveLocked(const std::string& uid);
  void InsertLocked(PodInfo pod);

  mutable std::shared_mutex mu_;
  std::unordered_map<std::string, PodInfo> pods_;
  std::unordered_map<std::string, std::string> static_uids_;  // kubelet uid -> API uid
  std::unordered_map<std::string, std::string> uid_by_ip_;   // pod IP -> API uid
  std::atomic<uint64_t> generation_{0};
};

}  // namespace imdswatch
