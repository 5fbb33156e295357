#include "imdswatch/aggregator.h"

#include "imdswatch/series_owner.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <optional>
#include <string>
#include <utility>

namespace imdswatch {

namespace {

constexpr size_t kCalls = static_cast<size_t>(Call::kOther) + 1;
constexpr size_t kVersions = static_cast<size_t>(Version::kV2) + 1;
constexpr size_t kOutcomes = static_cast<size_t>(Outcome::kReset) + 1;
constexpr size_t kConnOutcomes = static_cast<size_t>(ConnOutcome::kReset) + 1;
constexpr size_t kClients = static_cast<size_t>(Client::kUnknown) + 1;
constexpr size_t kBuckets = kDurationBuckets.size() + 1;  // the last one is +Inf

// A request series packed into 32 bits: bit 31 marks a used slot, then call,
// version, outcome, client and the HTTP status (0-999; 0 = no response).
constexpr uint32_t kUsed = 1u << 31;
constexpr unsigned kStatusBits = 10, kClientBits = 4, kOutcomeBits = 3, kVersionBits = 1, kCallBits = 3;
static_assert(kClients <= (1u << kClientBits) && kOutcomes <= (1u << kOutcomeBits) &&
              kVersions <= (1u << kVersionBits) && kCalls <= (1u << kCallBits));
constexpr unsigned kClientShift = kStatusBits;
constexpr unsigned kOutcomeShift = kClientShift + kClientBits;
constexpr unsigned kVersionShift = kOutcomeShift + kOutcomeBits;
constexpr unsigned kCallShift = kVersionShift + kVersionBits;
static_assert(kCallShift + kCallBits < 31);

template <typename E>
size_t Index(E value, size_t count, E fallback) {
  const auto i = static_cast<size_t>(value);
  return i < count ? i : static_cast<size_t>(fallback);
}

uint32_t PackRequest(const CallSample& s) {
  const uint32_t status = s.status > 999 ? 999 : s.status;
  return kUsed | static_cast<uint32_t>(Index(s.call, kCalls, Call::kOther)) << kCallShift |
         static_cast<uint32_t>(Index(s.version, kVersions, Version::kV1)) << kVersionShift |
         static_cast<uint32_t>(Index(s.outcome, kOutcomes, Outcome::kError)) << kOutcomeShift |
         static_cast<uint32_t>(Index(s.client, kClients, Client::kUnknown)) << kClientShift | status;
}

uint32_t Field(uint32_t key, unsigned shift, unsigned bits) { return (key >> shift) & ((1u << bits) - 1); }

size_t BucketOf(double seconds) {
  for (size_t i = 0; i < kDurationBuckets.size(); i++)
    if (seconds <= kDurationBuckets[i]) return i;
  return kDurationBuckets.size();
}

// Open-addressed map from packed request key to count: no allocation once an
// owner has seen its handful of distinct (call, version, outcome, client, code).
class RequestCounts {
 public:
  void Add(uint32_t key, uint64_t n) {
    if (!keys_.empty()) {
      const size_t mask = keys_.size() - 1;
      for (size_t i = Slot(key, mask);; i = (i + 1) & mask) {
        if (keys_[i] == key) {
          counts_[i] += n;
          return;
        }
        if (keys_[i] == 0) break;
      }
    }
    if ((size_ + 1) * 2 > keys_.size()) Grow();
    Insert(key, n);
  }

  // (key, count) pairs in key order.
  std::vector<std::pair<uint32_t, uint64_t>> Sorted() const {
    std::vector<std::pair<uint32_t, uint64_t>> out;
    out.reserve(size_);
    for (size_t i = 0; i < keys_.size(); i++)
      if (keys_[i] != 0) out.emplace_back(keys_[i], counts_[i]);
    std::sort(out.begin(), out.end());
    return out;
  }

  template <typename F>
  void ForEach(F&& f) const {
    for (size_t i = 0; i < keys_.size(); i++)
      if (keys_[i] != 0) f(keys_[i], counts_[i]);
  }

 private:
  static size_t Slot(uint32_t key, size_t mask) { return ((key * 0x9E3779B1u) >> 7) & mask; }

  void Insert(uint32_t key, uint64_t n) {
    const size_t mask = keys_.size() - 1;
    size_t i = Slot(key, mask);
    while (keys_[i] != 0) i = (i + 1) & mask;
    keys_[i] = key;
    counts_[i] = n;
    size_++;
  }

  void Grow() {
    std::vector<uint32_t> old_keys = std::move(keys_);
    std::vector<uint64_t> old_counts = std::move(counts_);
    const size_t capacity = old_keys.empty() ? 8 : old_keys.size() * 2;
    keys_.assign(capacity, 0);
    counts_.assign(capacity, 0);
    size_ = 0;
    for (size_t i = 0; i < old_keys.size(); i++)
      if (old_keys[i] != 0) Insert(old_keys[i], old_counts[i]);
  }

  std::vector<uint32_t> keys_;  // 0 = empty slot (every key has kUsed set)
  std::vector<uint64_t> counts_;
  size_t size_ = 0;
};

struct Histogram {
  std::array<uint64_t, kBuckets> counts{};  // per bucket, not cumulative
  uint64_t count = 0;
  double sum = 0;

  void Merge(const Histogram& other) {
    for (size_t i = 0; i < kBuckets; i++) counts[i] += other.counts[i];
    count += other.count;
    sum += other.sum;
  }
};

}  // namespace

struct Aggregator::Stats {
  RequestCounts requests;
  // Histograms by call * kOutcomes + outcome, kept only for the pairs seen:
  // slot[i] is 1 + the position in hists, or 0.
  std::array<uint8_t, kCalls * kOutcomes> slot{};
  std::vector<std::pair<uint8_t, Histogram>> hists;
  std::array<uint64_t, kConnOutcomes> connections{};
  uint64_t retransmits = 0;

  Histogram& Hist(size_t index) {
    if (slot[index] == 0) {
      hists.emplace_back(static_cast<uint8_t>(index), Histogram{});
      slot[index] = static_cast<uint8_t>(hists.size());
    }
    return hists[slot[index] - 1].second;
  }

  void AddCall(const CallSample& s) {
    requests.Add(PackRequest(s), 1);
    const size_t index =
        Index(s.call, kCalls, Call::kOther) * kOutcomes + Index(s.outcome, kOutcomes, Outcome::kError);
    Histogram& h = Hist(index);
    const double seconds = std::isfinite(s.duration_seconds) && s.duration_seconds > 0 ? s.duration_seconds : 0.0;
    h.counts[BucketOf(seconds)]++;
    h.count++;
    h.sum += seconds;
  }

  void Merge(const Stats& other) {
    other.requests.ForEach([this](uint32_t key, uint64_t n) { requests.Add(key, n); });
    for (const auto& [index, h] : other.hists) Hist(index).Merge(h);
    for (size_t i = 0; i < kConnOutcomes; i++) connections[i] += other.connections[i];
    retransmits += other.retransmits;
  }
};

struct Aggregator::Owner {
  Key key;
  Stats stats;
  std::optional<std::chrono::steady_clock::time_point> gone_since;
  std::shared_ptr<const ExportedLabels> exported;  // labels at the last scrape; null before
};

struct Aggregator::Retired {
  Stats stats;
  std::optional<std::chrono::steady_clock::time_point> orphan_since;  // no live owner shares the labels
};

Aggregator::Aggregator(Resolver resolver) : resolver_(std::move(resolver)) {}

Aggregator::~Aggregator() = default;

Aggregator::Owner* Aggregator::FindOrCreate(uint64_t cgroup_id, std::string_view comm) {
  return FindOrMakeOwner(owners_, last_owner_, kMaxOwners, cgroup_id, comm);
}

void Aggregator::RecordCall(uint64_t cgroup_id, std::string_view comm, const CallSample& sample) {
  std::lock_guard<std::mutex> lock(mu_);
  if (Owner* owner = FindOrCreate(cgroup_id, comm)) {
    owner->stats.AddCall(sample);
  } else {
    dropped_records_.fetch_add(1, std::memory_order_relaxed);
  }
}

void Aggregator::RecordConnection(uint64_t cgroup_id, std::string_view comm, ConnOutcome outcome) {
  std::lock_guard<std::mutex> lock(mu_);
  if (Owner* owner = FindOrCreate(cgroup_id, comm)) {
    owner->stats.connections[Index(outcome, kConnOutcomes, ConnOutcome::kReset)]++;
  } else {
    dropped_records_.fetch_add(1, std::memory_order_relaxed);
  }
}

void Aggregator::RecordRetransmit(uint64_t cgroup_id, std::string_view comm) {
  std::lock_guard<std::mutex> lock(mu_);
  if (Owner* owner = FindOrCreate(cgroup_id, comm)) {
    owner->stats.retransmits++;
  } else {
    dropped_records_.fetch_add(1, std::memory_order_relaxed);
  }
}

size_t Aggregator::OwnerCount() const {
  std::lock_guard<std::mutex> lock(mu_);
  return owners_.size();
}

size_t Aggregator::ExpireGone(const std::function<bool(uint64_t cgroup_id)>& alive,
                              std::chrono::steady_clock::time_point now, std::chrono::seconds ttl) {
  size_t dropped = ExpireGoneOwners(mu_, owners_, alive, now, ttl, [this](Owner& owner) {
    if (owner.exported) {
      std::unique_ptr<Retired>& retired = retired_[owner.exported->who];
      if (!retired) retired = std::make_unique<Retired>();
      retired->stats.Merge(owner.stats);
    }
    if (last_owner_ == &owner) last_owner_ = nullptr;
  });
  std::lock_guard<std::mutex> lock(mu_);
  PruneRetired(retired_, owners_, now, ttl);
  return dropped;
}

void Aggregator::WriteMetrics(MetricsWriter& out) const {
  const std::vector<LabelGroup<Stats>> groups = GroupByLabels<Stats>(
      mu_, owners_, retired_, resolver_, [](const Owner&) { return true; },
      [](Stats& merged, const Owner& owner) { merged.Merge(owner.stats); },
      [](Stats& merged, const Retired& retired) { merged.Merge(retired.stats); });

  out.Family("imds_requests_total",
             "Instance metadata requests by call, IMDS version, outcome, HTTP status code (empty when no response "
             "arrived) and client SDK.",
             MetricType::kCounter);
  for (const auto& [labels, stats] : groups) {
    for (const auto& [key, count] : stats.requests.Sorted()) {
      const uint32_t status = Field(key, 0, kStatusBits);
      char code[8];
      const auto end = status == 0 ? code : std::to_chars(code, code + sizeof code, status).ptr;
      out.Sample(labels->text,
                 {{"call", ToString(static_cast<Call>(Field(key, kCallShift, kCallBits)))},
                  {"version", ToString(static_cast<Version>(Field(key, kVersionShift, kVersionBits)))},
                  {"outcome", ToString(static_cast<Outcome>(Field(key, kOutcomeShift, kOutcomeBits)))},
                  {"code", std::string_view(code, static_cast<size_t>(end - code))},
                  {"client", ToString(static_cast<Client>(Field(key, kClientShift, kClientBits)))}},
                 count);
    }
  }

  static const HistogramBounds kBounds(kDurationBuckets);
  out.Family("imds_request_duration_seconds",
             "Time from a metadata request's first byte to its response's last byte, or to the client giving up.",
             MetricType::kHistogram);
  std::vector<const std::pair<uint8_t, Histogram>*> hists;
  for (const auto& [labels, stats] : groups) {
    hists.clear();
    for (const auto& h : stats.hists) hists.push_back(&h);
    std::sort(hists.begin(), hists.end(), [](const auto* a, const auto* b) { return a->first < b->first; });
    for (const auto* entry : hists) {
      const Histogram& h = entry->second;
      out.Histogram(labels->text,
                    {{"call", ToString(static_cast<Call>(entry->first / kOutcomes))},
                     {"outcome", ToString(static_cast<Outcome>(entry->first % kOutcomes))}},
                    kBounds, h.counts, h.count, h.sum);
    }
  }

  out.Family("imds_connections_total", "TCP connections to the metadata service by handshake outcome.",
             MetricType::kCounter);
  for (const auto& [labels, stats] : groups)
    for (size_t i = 0; i < kConnOutcomes; i++)
      if (stats.connections[i] != 0)
        out.Sample(labels->text, {{"outcome", ToString(static_cast<ConnOutcome>(i))}}, stats.connections[i]);

  // One series per label set, zero included, so the first retransmit is a visible increase.
  out.Family("imds_tcp_retransmits_total", "TCP segments retransmitted on connections to the metadata service.",
             MetricType::kCounter);
  for (const auto& [labels, stats] : groups) out.Sample(labels->text, {}, stats.retransmits);
}

}  // namespace imdswatch
