// ParsePod and PodStore (include/imdswatch/pod_store.h) on any JSON: what the
// Kubernetes API (or anything answering in its place) sends in a pod list or
// a watch event's object.
//
// Input: JSON text (a Pod, or a PodList whose "items" are used).
// Invariants:
//  - ParsePod never throws and is deterministic; container ids have no
//    upper case, container names are never empty;
//  - a pod with a uid is found by it after ApplyPod, exactly as parsed, and
//    applying it again is a no-op (the generation does not move);
//  - ReplaceAll keeps one pod per distinct non-empty uid, the last listed;
//    every pod IP finds a pod holding it.
#include <cstdint>
#include <map>
#include <string>

#include <nlohmann/json.hpp>

#include "fuzz_common.h"
#include "imdswatch/pod_store.h"

using imdswatch::ParsePod;
using imdswatch::PodInfo;
using imdswatch::PodStore;
using nlohmann::json;

namespace {

void CheckPod(const PodInfo& pod) {
  for (const auto& [id, name] : pod.containers) {
    FUZZ_CHECK(!name.empty(), "container %s without a name", id.c_str());
    for (char c : id) FUZZ_CHECK(!(c >= 'A' && c <= 'Z'), "container id with upper case");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const json doc = json::parse(data, data + size, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return 0;

  const PodInfo pod = ParsePod(doc);
  CheckPod(pod);
  FUZZ_CHECK(ParsePod(doc) == pod, "ParsePod is not deterministic");
  {
    PodStore store;
    store.ApplyPod(doc);
    if (pod.uid.empty()) {
      FUZZ_CHECK(store.Size() == 0, "a pod without uid was stored");
    } else {
      auto found = store.Lookup(pod.uid);
      FUZZ_CHECK(found && *found == pod, "stored pod differs from the parsed one");
      const uint64_t generation = store.Generation();
      store.ApplyPod(doc);
      FUZZ_CHECK(store.Generation() == generation, "re-applying the same pod changed the generation");
      store.Remove(pod.uid);
      FUZZ_CHECK(store.Size() == 0 && !store.Lookup(pod.uid), "Remove left the pod");
    }
  }

  if (doc.is_object() && doc.contains("items")) {
    const json& items = doc["items"];
    PodStore store;
    store.ReplaceAll(items);
    std::map<std::string, PodInfo> last;
    if (items.is_array()) {
      for (const json& item : items) {
        PodInfo p = ParsePod(item);
        CheckPod(p);
        if (!p.uid.empty()) last[p.uid] = std::move(p);
      }
    }
    FUZZ_CHECK(store.Size() == last.size(), "%zu pods stored of %zu distinct uids", store.Size(), last.size());
    for (const auto& [uid, p] : last) {
      auto found = store.Lookup(uid);
      FUZZ_CHECK(found && *found == p, "listed pod %s stored differently", uid.c_str());
      for (const auto& ip : p.ips) {
        auto by_ip = store.LookupByIp(ip);
        FUZZ_CHECK(by_ip && std::find(by_ip->ips.begin(), by_ip->ips.end(), ip) != by_ip->ips.end(),
                   "pod IP %s finds no pod holding it", ip.c_str());
      }
    }
  }
  return 0;
}
