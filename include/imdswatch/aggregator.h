// Counts and times metadata calls per owner -- a (cgroup id, comm) pair --
// and writes them to /metrics at scrape time. Owners are labelled when
// scraped, through a resolver, because a pod's names can arrive from the
// Kubernetes API after its first calls; owners that resolve to the same
// labels are summed into one series.
//
// Records come from one thread (the event loop), WriteMetrics from the HTTP
// server's threads: one mutex guards the owners, and WriteMetrics holds it
// only to merge them per label set, never while calling the resolver or
// writing.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "imdswatch/call.h"
#include "imdswatch/metrics_writer.h"
#include "imdswatch/series_owner.h"

namespace imdswatch {

// Upper bounds (seconds) of imds_request_duration_seconds; +Inf follows.
inline constexpr std::array<double, 14> kDurationBuckets = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                            0.1,    0.25,  0.5,    1,     2.5,  5,     10};

class Aggregator : public MetricsSource {
 public:
  using Resolver = std::function<Workload(uint64_t cgroup_id, std::string_view comm)>;

  // Owners beyond this many are not created; their records are counted in
  // DroppedRecords() instead (ExpireGone keeps the real number far lower).
  static constexpr size_t kMaxOwners = 16384;
  static constexpr size_t kCommLen = 16;  // comm is cut to this many bytes, as the kernel does

  explicit Aggregator(Resolver resolver);
  ~Aggregator() override;
  Aggregator(const Aggregator&) = delete;
  Aggregator& operator=(const Aggregator&) = delete;

  void RecordCall(uint64_t cgroup_id, std::string_view comm, const CallSample& sample);
  void RecordConnection(uint64_t cgroup_id, std::string_view comm, ConnOutcome outcome);
  void RecordRetransmit(uint64_t cgroup_id, std::string_view comm);

  // Drops every owner whose cgroup has been gone (alive() == false) for
  // longer than ttl; an owner seen alive again is kept. The clock of an
  // owner starts at the first call that finds it gone, so call this
  // periodically. `alive` is called without the lock held, once per cgroup.
  // Counts of a dropped owner that was already exported stay in its series
  // while another owner still contributes to it (a restarted container's new
  // cgroup), so exported counters never go down. Returns the owners dropped.
  size_t ExpireGone(const std::function<bool(uint64_t cgroup_id)>& alive, std::chrono::steady_clock::time_point now,
                    std::chrono::seconds ttl);

  // imds_requests_total, imds_request_duration_seconds, imds_connections_total,
  // imds_tcp_retransmits_total, series ordered by labels. Calls the resolver
  // once per owner.
  void WriteMetrics(MetricsWriter& out) const override;

  size_t OwnerCount() const;
  uint64_t DroppedRecords() const { return dropped_records_.load(std::memory_order_relaxed); }

  using Key = OwnerKey;
  using KeyHash = OwnerKeyHash;

 private:
  struct Stats;  // all counts of one owner, or of one label set
  struct Owner;
  struct Retired;

  Owner* FindOrCreate(uint64_t cgroup_id, std::string_view comm);  // mutex held

  Resolver resolver_;
  mutable std::mutex mu_;
  // WriteMetrics (const) updates each owner's last exported labels: guarded by mu_.
  std::unordered_map<Key, std::unique_ptr<Owner>, KeyHash> owners_;
  Owner* last_owner_ = nullptr;  // the owner of the previous record: most records repeat it
  // Counts of dropped owners, by the labels they were last exported under.
  std::map<Workload, std::unique_ptr<Retired>> retired_;
  std::atomic<uint64_t> dropped_records_{0};
};

}  // namespace imdswatch
