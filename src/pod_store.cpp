#include <algorithm>
#include "imdswatch/pod_store.h"

#include <mutex>
#include <nlohmann/json.hpp>
#include <utility>

namespace imdswatch {
namespace {

using nlohmann::json;

const json* Field(const json* object, const char* key) {
  if (object == nullptr || !object->is_object()) return nullptr;
  auto it = object->find(key);
  return it == object->end() ? nullptr : &*it;
}

std::string String(const json* value) {
  if (value == nullptr || !value->is_string()) return "";
  return value->get_ref<const std::string&>();
}

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

bool AllDigits(std::string_view s) {
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return !s.empty();
}

// "containerd://<id>", "cri-o://<id>", "docker://<id>" -> "<id>".
std::string ContainerId(std::string_view raw) {
  size_t sep = raw.find("://");
  if (sep != std::string_view::npos) raw.remove_prefix(sep + 3);
  std::string id(raw);
  for (char& c : id) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return id;
}

void AddContainers(const json* statuses, std::map<std::string, std::string>& out) {
  if (statuses == nullptr || !statuses->is_array()) return;
  for (const json& status : *statuses) {
    std::string name = String(Field(&status, "name"));
    if (name.empty()) continue;
    // The previous instance's id too: its last events may arrive after the
    // restart has already been reported.
    const json* terminated = Field(Field(&status, "lastState"), "terminated");
    for (const json* id_field : {Field(&status, "containerID"), Field(terminated, "containerID")}) {
      std::string id = ContainerId(String(id_field));
      if (!id.empty()) out[id] = name;
    }
  }
}

// The controlling owner, else the first one listed.
const json* Owner(const json* metadata) {
  const json* owners = Field(metadata, "ownerReferences");
  if (owners == nullptr || !owners->is_array() || owners->empty()) return nullptr;
  for (const json& owner : *owners) {
    const json* controller = Field(&owner, "controller");
    if (controller != nullptr && controller->is_boolean() && controller->get<bool>()) return &owner;
  }
  return &owners->front();
}

}  // namespace

WorkloadRef ResolveWorkload(std::string_view owner_kind, std::string_view owner_name, std::string_view pod_name,
                            std::string_view pod_template_hash) {
  if (owner_kind.empty() || owner_name.empty()) return {"Pod", std::string(pod_name)};
  if (owner_kind == "ReplicaSet" && !pod_template_hash.empty()) {
    std::string suffix = "-" + std::string(pod_template_hash);
    if (owner_name.size() > suffix.size() && EndsWith(owner_name, suffix)) {
      return {"Deployment", std::string(owner_name.substr(0, owner_name.size() - suffix.size()))};
    }
  }
  if (owner_kind == "Job") {
    // CronJob controller names its Jobs "<cronjob>-<scheduled minute since epoch>".
    size_t dash = owner_name.rfind('-');
    if (dash != std::string_view::npos && dash > 0) {
      std::string_view stamp = owner_name.substr(dash + 1);
      if (stamp.size() >= 8 && AllDigits(stamp)) return {"CronJob", std::string(owner_name.substr(0, dash))};
    }
  }
  if (owner_kind == "Node") {
    // Mirror pods of static pods are "<manifest name>-<node name>".
    std::string suffix = "-" + std::string(owner_name);
    if (pod_name.size() > suffix.size() && EndsWith(pod_name, suffix)) {
      return {"StaticPod", std::string(pod_name.substr(0, pod_name.size() - suffix.size()))};
    }
    return {"StaticPod", std::string(pod_name)};
  }
  return {std::string(owner_kind), std::string(owner_name)};
}

PodInfo ParsePod(const json& pod) {
  PodInfo info;
  const json* metadata = Field(&pod, "metadata");
  info.uid = String(Field(metadata, "uid"));
  info.namespace_name = String(Field(metadata, "namespace"));
  info.name = String(Field(metadata, "name"));

  const json* owner = Owner(metadata);
  std::string hash = String(Field(Field(metadata, "labels"), "pod-template-hash"));
  WorkloadRef workload =
      ResolveWorkload(String(Field(owner, "kind")), String(Field(owner, "name")), info.name, hash);
  info.workload = std::move(workload.name);
  info.workload_kind = std::move(workload.kind);

  const json* annotations = Field(metadata, "annotations");
  info.static_uid = String(Field(annotations, "kubernetes.io/config.mirror"));
  if (info.static_uid.empty() && info.workload_kind == "StaticPod") {
    info.static_uid = String(Field(annotations, "kubernetes.io/config.hash"));
  }
  if (info.static_uid == info.uid) info.static_uid.clear();

  const json* status = Field(&pod, "status");
  AddContainers(Field(status, "initContainerStatuses"), info.containers);
  AddContainers(Field(status, "containerStatuses"), info.containers);
  AddContainers(Field(status, "ephemeralContainerStatuses"), info.containers);
  const json* host_network = Field(Field(&pod, "spec"), "hostNetwork");
  if (!(host_network && host_network->is_boolean() && host_network->get<bool>())) {
    if (const json* ips = Field(status, "podIPs"); ips && ips->is_array()) {
      for (const json& entry : *ips)
        if (std::string ip = String(Field(&entry, "ip")); !ip.empty()) info.ips.push_back(std::move(ip));
    }
    std::string ip = String(Field(status, "podIP"));
    if (!ip.empty() && std::find(info.ips.begin(), info.ips.end(), ip) == info.ips.end()) info.ips.push_back(ip);
  }
  // A finished pod keeps status.podIPs, but the address is free for the next pod.
  const std::string phase = String(Field(status, "phase"));
  if (phase == "Succeeded" || phase == "Failed") info.ips.clear();
  return info;
}

void PodStore::ApplyPod(const json& pod) { Apply(ParsePod(pod)); }

void PodStore::Apply(PodInfo pod) {
  if (pod.uid.empty()) return;
  std::unique_lock<std::shared_mutex> lock(mu_);
  auto it = pods_.find(pod.uid);
  if (it != pods_.end() && it->second == pod) return;
  RemoveLocked(pod.uid);
  InsertLocked(std::move(pod));
  generation_.fetch_add(1, std::memory_order_acq_rel);
}

void PodStore::Remove(std::string_view uid) {
  std::unique_lock<std::shared_mutex> lock(mu_);
  std::string key(uid);
  if (pods_.count(key) == 0) return;
  RemoveLocked(key);
  generation_.fetch_add(1, std::memory_order_acq_rel);
}

void PodStore::ReplaceAll(const json& items) {
  std::vector<PodInfo> pods;
  if (items.is_array()) {
    pods.reserve(items.size());
    for (const json& item : items) pods.push_back(ParsePod(item));
  }
  ReplaceAll(std::move(pods));
}

void PodStore::ReplaceAll(std::vector<PodInfo> pods) {
  std::unique_lock<std::shared_mutex> lock(mu_);
  pods_.clear();
  static_uids_.clear();
  uid_by_ip_.clear();
  for (PodInfo& pod : pods) {
    if (pod.uid.empty()) continue;
    RemoveLocked(pod.uid);  // a uid listed twice: the last one stands, with only its own addresses
    InsertLocked(std::move(pod));
  }
  generation_.fetch_add(1, std::memory_order_acq_rel);
}

std::optional<PodInfo> PodStore::LookupByIp(std::string_view ip) const {
  std::shared_lock<std::shared_mutex> lock(mu_);
  auto holder = uid_by_ip_.find(std::string(ip));
  if (holder == uid_by_ip_.end()) return std::nullopt;
  return pods_.at(holder->second);
}

std::optional<PodInfo> PodStore::Lookup(std::string_view uid) const {
  std::shared_lock<std::shared_mutex> lock(mu_);
  std::string key(uid);
  auto it = pods_.find(key);
  if (it == pods_.end()) {
    auto alias = static_uids_.find(key);
    if (alias == static_uids_.end()) return std::nullopt;
    it = pods_.find(alias->second);
    if (it == pods_.end()) return std::nullopt;
  }
  return it->second;
}

size_t PodStore::Size() const {
  std::shared_lock<std::shared_mutex> lock(mu_);
  return pods_.size();
}

void PodStore::RemoveLocked(const std::string& uid) {
  auto it = pods_.find(uid);
  if (it == pods_.end()) return;
  if (!it->second.static_uid.empty()) {
    auto alias = static_uids_.find(it->second.static_uid);
    if (alias != static_uids_.end() && alias->second == uid) static_uids_.erase(alias);
  }
  const std::vector<std::string> ips = std::move(it->second.ips);
  pods_.erase(it);
  for (const std::string& ip : ips) {
    auto holder = uid_by_ip_.find(ip);
    if (holder == uid_by_ip_.end() || holder->second != uid) continue;
    uid_by_ip_.erase(holder);
    // another pod may still hold it (an address reused before its old pod left the list)
    for (const auto& [other, pod] : pods_)
      if (std::find(pod.ips.begin(), pod.ips.end(), ip) != pod.ips.end()) uid_by_ip_[ip] = other;
  }
}

void PodStore::InsertLocked(PodInfo pod) {
  if (!pod.static_uid.empty()) static_uids_[pod.static_uid] = pod.uid;
  for (const std::string& ip : pod.ips) uid_by_ip_[ip] = pod.uid;  // the latest pod given an address holds it
  std::string uid = pod.uid;
  pods_[uid] = std::move(pod);
}

}  // namespace imdswatch
