#include "imdswatch/series_owner.h"

#include <cstring>
#include <exception>

#include "imdswatch/metrics_writer.h"

namespace imdswatch {

size_t OwnerKeyHash::operator()(const OwnerKey& key) const {
  uint64_t a = 0, b = 0;
  std::memcpy(&a, key.comm.data(), 8);
  std::memcpy(&b, key.comm.data() + 8, 8);
  uint64_t h = key.cgroup_id * 0x9E3779B97F4A7C15ull;
  h ^= (a + 0x632BE59BD9B4E019ull + (h << 6) + (h >> 2));
  h ^= (b + 0x85EBCA77C2B2AE63ull + (h << 6) + (h >> 2));
  return static_cast<size_t>(h ^ (h >> 29));
}

OwnerKey MakeOwnerKey(uint64_t cgroup_id, std::string_view comm) {
  OwnerKey key;
  key.cgroup_id = cgroup_id;
  const size_t nul = comm.find('\0');
  const size_t n = std::min({comm.size(), nul, key.comm.size()});
  std::memcpy(key.comm.data(), comm.data(), n);
  return key;
}

std::string_view CommOf(const OwnerKey& key) {
  size_t n = 0;
  while (n < key.comm.size() && key.comm[n] != '\0') n++;
  return {key.comm.data(), n};
}

Workload LabelOwner(const std::function<Workload(uint64_t, std::string_view)>& resolver, const OwnerKey& key) {
  Workload labels;
  try {
    if (resolver) labels = resolver(key.cgroup_id, CommOf(key));
  } catch (const std::exception&) {
    labels = Workload{};
  }
  if (labels.namespace_name.empty() && labels.workload.empty() && labels.pod.empty() && labels.container.empty())
    labels.workload = std::string(CommOf(key));
  return labels;
}

std::shared_ptr<const ExportedLabels> MakeExportedLabels(Workload who) {
  std::string text = LabelText({{"namespace", who.namespace_name},
                                {"workload", who.workload},
                                {"pod", who.pod},
                                {"container", who.container}});
  return std::make_shared<const ExportedLabels>(ExportedLabels{std::move(who), std::move(text)});
}

}  // namespace imdswatch
