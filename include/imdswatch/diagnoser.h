// Names the hidden metadata-service problems per workload, with the evidence
// and the fix (issue 4): hop limit too low, credential-refresh storms,
// throttling or an unreachable service, IMDSv1 still in use, and time lost
// waiting on metadata calls.
//
// Like the aggregator, behaviour is recorded per owner -- a (cgroup id, comm)
// pair -- and owners are labelled through a resolver only when findings are
// evaluated or metrics written; owners that resolve to the same labels are
// judged as one workload. Each owner keeps its recent behaviour in fixed time
// buckets (window / kWindowBuckets wide), only those of the last `window` that
// saw behaviour: at most kWindowBuckets, so memory per owner is bounded however
// many calls it makes; they are released once the owner has been quiet for a
// whole window.
//
// From the responses only two things are kept: the credentials' expiry time
// (parsed from the "Expiration" string into a time point; the string itself is
// never stored) and the role name the credentials path names, which is
// exported as a label (role names are not secret). Paths, methods and
// everything else in a CallRecord are never stored, logged or exported.
//
// Findings are kept compact (Diagnosis: who, kind, client, figures); their
// sentences are written only when a finding is served or logged (Explain), so
// their memory and Evaluate's time stay small at thousands of findings.
//
// Threads: OnCall/OnConnection come from the event loop, Evaluate from its
// tick, WriteMetrics/Current/CurrentJson from the HTTP server's threads. One mutex
// guards the owners and is never held while calling the resolver.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "imdswatch/call.h"
#include "imdswatch/call_tracker.h"
#include "imdswatch/metrics_writer.h"
#include "imdswatch/series_owner.h"

namespace imdswatch {

// Finding kinds; also the values of imds_diagnosis's `kind` label.
namespace diagnosis {
inline constexpr std::string_view kHopLimit = "hop_limit";
inline constexpr std::string_view kRefreshStorm = "refresh_storm";
inline constexpr std::string_view kThrottled = "throttled";
inline constexpr std::string_view kImdsV1 = "imdsv1";
inline constexpr std::string_view kSlow = "slow";
}  // namespace diagnosis

// Upper bounds (seconds) of imds_credential_fetch_interval_seconds; +Inf follows.
inline constexpr std::array<double, 10> kFetchIntervalBuckets = {1, 5, 15, 30, 60, 300, 900, 1800, 3600, 21600};

// When a behaviour becomes a finding. Every rule looks only at the last
// `window`, so a finding clears (at the next Evaluate) one window after the
// behaviour stops.
struct DiagnosisThresholds {
  // Behaviour is judged over this much recent time (kept as kWindowBuckets
  // buckets of window / kWindowBuckets each; the oldest bucket ages out
  // whole, so the span judged is between 11/12 of a window and a window).
  // Values under 1 s are raised to 1 s.
  std::chrono::seconds window{60};

  // hop_limit: at least this many IMDSv2 token PUTs ended in a timeout
  // without a single response byte, AND at least hop_limit_min_v1_answered
  // IMDSv1 requests from the same workload were answered (so the service is
  // reachable: only the token reply, sent with the hop limit as its IP TTL,
  // is lost).
  uint32_t hop_limit_min_token_timeouts = 1;
  uint32_t hop_limit_min_v1_answered = 1;

  // refresh_storm: at least this many successful credential fetches
  // (Call::kCredentials answered 2xx/3xx) in the window (default 6 a minute)...
  uint32_t refresh_storm_min_fetches = 6;
  // ...while the fetch interval seen (window / fetches) is below this share of
  // the lifetime the served credentials still had (mean over the window's
  // fetches whose Expiration parsed; no parsed Expiration, no finding).
  double refresh_storm_max_interval_share = 0.1;

  // throttled: at least this many failures in the window: answers 429/503,
  // requests that timed out or were cut off by the peer (no answer), and
  // connections refused or timed out in the handshake. Token PUT timeouts are
  // not counted when the same workload has a hop_limit finding (that is
  // their cause).
  uint32_t throttled_min_failures = 3;
  // How many of the node's busiest workloads (most calls in the window) the
  // throttled fix names.
  size_t throttled_top_callers = 3;

  // imdsv1: at least this many IMDSv1 requests (no session token) in the window.
  uint32_t imdsv1_min_requests = 1;

  // slow: the summed duration of the workload's calls in the window divided by
  // the window is at least this (0.1 = 10 % of wall time blocked on IMDS;
  // concurrent callers can take it past 1).
  double slow_min_share = 0.1;
};

// A problem found for one workload, in full (Explain writes it from a
// Diagnosis). The text fields are whole sentences with the figures in them;
// `numbers` holds the same figures for machines:
//   hop_limit:     token_timeouts, token_wait_seconds (mean wait of those PUTs),
//                  v1_requests, v1_answered
//   refresh_storm: fetches, fetch_interval_seconds, remaining_lifetime_seconds
//                  (mean), min_remaining_lifetime_seconds, window_seconds
//   throttled:     failures, throttled_responses, timeouts, resets,
//                  connect_refused, connect_timeouts, calls, window_seconds
//   imdsv1:        v1_requests, window_seconds
//   slow:          share, busy_seconds, calls, window_seconds
// `client` is the SDK seen making the calls at fault ("" when none stands out).
struct Finding {
  Workload who;
  std::string kind;
  std::string client;
  std::map<std::string, double> numbers;
  std::string evidence;
  std::string cause;
  std::string fix;

  bool operator==(const Finding& other) const = default;
};

// What the sentences of one Evaluate's findings share (thresholds, the node's
// busiest callers); defined in diagnoser.cpp.
struct DiagnosisContext;

// A finding as the Diagnoser keeps and returns it: who, what, and the figures
// its sentences are written from. Evidence, cause and fix are written by
// Explain only when a finding is served or logged: kept for every finding,
// they were most of the Diagnoser's memory and Evaluate's time.
struct Diagnosis {
  static constexpr size_t kMaxFigures = 8;
  static constexpr size_t kClients = static_cast<size_t>(Client::kUnknown) + 1;

  Workload who;
  std::string_view kind;    // one of diagnosis::k*
  std::string_view client;  // as Finding::client; static storage
  // Finding::numbers' values in an order fixed per kind, then the figures only
  // the sentences use (Explain names them).
  std::array<double, kMaxFigures> figures{};
  // imdsv1 only: the window's IMDSv1 requests by Client, listed in the evidence.
  std::array<uint32_t, kClients> v1_by_client{};
  std::shared_ptr<const DiagnosisContext> context;
};

// The finding in full: numbers by name and the evidence, cause and fix.
Finding Explain(const Diagnosis& diagnosis);

// The agent's /api/v1/diagnoses body and `imdswatch doctor --output json`: a
// JSON array with one object per finding:
//   {"namespace","workload","pod","container","kind","client","numbers":{...},
//    "evidence","cause","fix"}
std::string FindingsJson(const std::vector<Finding>& findings);

// Parses a credentials "Expiration": ISO-8601 "YYYY-MM-DDTHH:MM:SS" with
// optional fractional seconds and a "Z" or "+HH:MM"/"-HH:MM" offset (also
// "+HHMM"; 't', 'z' and a space separator are accepted). Anything else,
// including trailing bytes or out-of-range fields, is nullopt.
std::optional<std::chrono::system_clock::time_point> ParseExpiration(std::string_view text);

// The time sources: steady for windows and intervals, wall (system) for the
// credentials' expiry maths. Tests inject fakes; a clock with an empty
// function is replaced by System().
struct DiagnoserClock {
  std::function<std::chrono::steady_clock::time_point()> steady;
  std::function<std::chrono::system_clock::time_point()> wall;
  static DiagnoserClock System();
};

class Diagnoser : public MetricsSource {
 public:
  using Resolver = std::function<Workload(uint64_t cgroup_id, std::string_view comm)>;
  using Clock = DiagnoserClock;

  static constexpr size_t kWindowBuckets = 12;
  // Owners beyond this many are not created; their records are counted in
  // DroppedRecords() (ExpireGone keeps the real number far lower). As many as
  // the aggregator keeps, so every owner it counts is also judged: an owner
  // active in the last window holds ~0.1 KiB per bucket that saw behaviour
  // (bench/README.md measures the whole at 10,000 containers).
  static constexpr size_t kMaxOwners = 16384;
  // Roles remembered per owner (for imds_credentials_remaining_seconds); the
  // least recently served is replaced. Role names are cut to kMaxRoleLength.
  static constexpr size_t kMaxRolesPerOwner = 4;
  static constexpr size_t kMaxRoleLength = 128;
  static constexpr size_t kCommLen = 16;

  Diagnoser(Resolver resolver, DiagnosisThresholds thresholds = {}, Clock clock = Clock::System());
  ~Diagnoser() override;
  Diagnoser(const Diagnoser&) = delete;
  Diagnoser& operator=(const Diagnoser&) = delete;

  // Records one finished call at the clock's current time (calls are handed
  // over as they finish). Allocates only when an owner, a role, or an owner's
  // window (after a quiet window) is first seen.
  void OnCall(uint64_t cgroup_id, std::string_view comm, const CallRecord& call);
  // The node dropped a reply from the metadata service bound for this pod
  // because its TTL ran out while forwarding: proof of a hop-limit problem.
  void OnForwardingDrop(std::string_view namespace_name, std::string_view pod);
  void OnConnection(uint64_t cgroup_id, std::string_view comm, ConnOutcome outcome);

  // Recomputes the findings from the last window (calls the resolver once per
  // owner with recent behaviour) and returns those that were not current at
  // the previous Evaluate, so the caller logs each problem once per workload
  // until it clears (Explain gives its sentences). Call it periodically (the
  // agent's tick).
  std::vector<Diagnosis> Evaluate();
  // The findings of the last Evaluate, ordered by workload then kind, explained.
  std::vector<Finding> Current() const;
  std::string CurrentJson() const;  // FindingsJson(Current()), explaining one finding at a time

  // Drops every owner whose cgroup has been gone (alive() == false) for
  // longer than ttl, exactly as Aggregator::ExpireGone does, and keeps the
  // fetch-interval counts of dropped owners in their workload's series while
  // it has other owners (and for ttl after), so the histogram never goes
  // down. Returns the owners dropped.
  size_t ExpireGone(const std::function<bool(uint64_t cgroup_id)>& alive, std::chrono::steady_clock::time_point now,
                    std::chrono::seconds ttl);

  // Exactly three families:
  //  imds_credentials_remaining_seconds{namespace,workload,pod,container,role}
  //    gauge: Expiration of the credentials last served for the role minus
  //    the wall clock now (so it falls as time passes; negative once they
  //    have expired). Only fetches whose Expiration parsed set it.
  //  imds_credential_fetch_interval_seconds{namespace,workload,pod,container}
  //    histogram (kFetchIntervalBuckets): time between successive successful
  //    credential fetches of one owner (process name in a cgroup), merged per
  //    workload.
  //  imds_diagnosis{namespace,workload,pod,container,kind}
  //    gauge, 1 for each finding current at the last Evaluate. A cleared
  //    finding's series DISAPPEARS (is not exported at 0).
  // Series ordered by labels. Calls the resolver once per owner with roles or
  // fetch intervals.
  void WriteMetrics(MetricsWriter& out) const override;

  size_t OwnerCount() const;
  uint64_t DroppedRecords() const { return dropped_records_.load(std::memory_order_relaxed); }
  // Expiration values that did not parse (ignored).
  uint64_t MalformedExpirations() const { return malformed_expirations_.load(std::memory_order_relaxed); }
  const DiagnosisThresholds& thresholds() const { return thresholds_; }

  using Key = OwnerKey;
  using KeyHash = OwnerKeyHash;

 private:
  struct Bucket;             // one time bucket of an owner's window
  struct IntervalHistogram;  // fetch intervals, per owner or per retired label set
  struct Owner;
  struct Retired;

  Owner* FindOrCreate(uint64_t cgroup_id, std::string_view comm);  // mu_ held
  Bucket& CurrentBucket(Owner& owner, int64_t index);               // mu_ held
  int64_t BucketIndex(std::chrono::steady_clock::time_point t) const;
  std::shared_ptr<const std::vector<Diagnosis>> CurrentDiagnoses() const;

  const Resolver resolver_;
  const DiagnosisThresholds thresholds_;
  const Clock clock_;
  const std::chrono::steady_clock::time_point epoch_;
  const std::chrono::steady_clock::duration bucket_width_;

  mutable std::mutex mu_;
  std::unordered_map<Key, std::unique_ptr<Owner>, KeyHash> owners_;
  Owner* last_owner_ = nullptr;
  // Fetch intervals of dropped owners, by the labels they were last exported under.
  std::map<Workload, std::unique_ptr<Retired>> retired_;

  // Forwarding drops by (namespace, pod), newest last; bounded.
  static constexpr size_t kMaxDropPods = 4096, kMaxDropsPerPod = 64;
  std::map<std::pair<std::string, std::string>, std::deque<std::chrono::steady_clock::time_point>> forwarding_drops_;

  std::mutex evaluate_mu_;           // one Evaluate at a time
  mutable std::mutex findings_mu_;   // current_
  // Replaced whole by each Evaluate, so readers share it without a copy.
  std::shared_ptr<const std::vector<Diagnosis>> current_;

  std::atomic<uint64_t> dropped_records_{0};
  std::atomic<uint64_t> malformed_expirations_{0};
};

}  // namespace imdswatch
