#include "imdswatch/diagnoser.h"

#include "imdswatch/series_owner.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <exception>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <utility>

namespace imdswatch {

namespace {

using SteadyTime = std::chrono::steady_clock::time_point;
using WallTime = std::chrono::system_clock::time_point;

constexpr size_t kCalls = static_cast<size_t>(Call::kOther) + 1;
constexpr size_t kClients = static_cast<size_t>(Client::kUnknown) + 1;
constexpr size_t kIntervalBuckets = kFetchIntervalBuckets.size() + 1;  // the last one is +Inf

template <typename E>
size_t Index(E value, size_t count, E fallback) {
  const auto i = static_cast<size_t>(value);
  return i < count ? i : static_cast<size_t>(fallback);
}

void SaturatingIncrement(uint16_t& v) {
  if (v != std::numeric_limits<uint16_t>::max()) v++;
}

double Seconds(std::chrono::nanoseconds d) { return std::chrono::duration<double>(d).count(); }

// ---- Expiration parsing ----------------------------------------------------

// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil).
int64_t DaysFromCivil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

unsigned DaysInMonth(int y, unsigned m) {
  static constexpr unsigned kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0)) return 29;
  return kDays[m - 1];
}

class Cursor {
 public:
  explicit Cursor(std::string_view s) : s_(s) {}
  bool Digits(size_t n, int* out) {
    if (s_.size() - i_ < n) return false;
    int v = 0;
    for (size_t k = 0; k < n; k++) {
      const char c = s_[i_ + k];
      if (c < '0' || c > '9') return false;
      v = v * 10 + (c - '0');
    }
    i_ += n;
    *out = v;
    return true;
  }
  bool Take(char c) {
    if (i_ < s_.size() && s_[i_] == c) {
      i_++;
      return true;
    }
    return false;
  }
  bool TakeAny(std::string_view set, char* which = nullptr) {
    if (i_ < s_.size() && set.find(s_[i_]) != std::string_view::npos) {
      if (which) *which = s_[i_];
      i_++;
      return true;
    }
    return false;
  }
  bool AtDigit() const { return i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9'; }
  bool Done() const { return i_ == s_.size(); }

 private:
  std::string_view s_;
  size_t i_ = 0;
};

// ---- Tallies -----------------------------------------------------------------

// The sums over a window (or over several owners' windows).
struct Tally {
  uint64_t calls = 0;
  uint64_t token_no_response = 0;
  uint64_t v1 = 0;
  uint64_t v1_answered = 0;
  uint64_t cred_fetches = 0;
  uint64_t remaining_count = 0;
  uint64_t throttled = 0;
  uint64_t timeouts = 0;
  uint64_t resets = 0;
  uint64_t conn_refused = 0;
  uint64_t conn_timeout = 0;
  double token_wait_seconds = 0;
  double remaining_sum = 0;
  double remaining_min = std::numeric_limits<double>::infinity();
  double busy_seconds = 0;
  std::array<double, kCalls> busy_by_call{};
  std::array<uint64_t, kClients> v1_by_client{};
  std::array<uint64_t, kClients> calls_by_client{};

  void Add(const Tally& b) {
    calls += b.calls;
    token_no_response += b.token_no_response;
    v1 += b.v1;
    v1_answered += b.v1_answered;
    cred_fetches += b.cred_fetches;
    remaining_count += b.remaining_count;
    throttled += b.throttled;
    timeouts += b.timeouts;
    resets += b.resets;
    conn_refused += b.conn_refused;
    conn_timeout += b.conn_timeout;
    token_wait_seconds += b.token_wait_seconds;
    remaining_sum += b.remaining_sum;
    remaining_min = std::min(remaining_min, b.remaining_min);
    busy_seconds += b.busy_seconds;
    for (size_t i = 0; i < kCalls; i++) busy_by_call[i] += b.busy_by_call[i];
    for (size_t i = 0; i < kClients; i++) {
      v1_by_client[i] += b.v1_by_client[i];
      calls_by_client[i] += b.calls_by_client[i];
    }
  }

  bool Empty() const { return calls == 0 && conn_refused == 0 && conn_timeout == 0; }
};

// Calls per client in one bucket, saturating. A process nearly always uses one
// client: these are allocated only for a bucket that sees a second one.
struct ClientBucket {
  std::array<uint16_t, kClients> calls{};
  std::array<uint16_t, kClients> v1{};
};

constexpr uint8_t kNoClient = kClients;

uint16_t Saturated16(uint32_t v) { return static_cast<uint16_t>(std::min<uint32_t>(v, 0xffff)); }

}  // namespace

// ---- Owner state ---------------------------------------------------------------

// One time bucket of an owner's window: only what the judgements add up.
struct Diagnoser::Bucket {
  int64_t index = -1;  // absolute bucket number since the epoch
  // Per client: `client` while it is the only one seen in the bucket (its
  // counts are then the bucket's totals, saturated), `clients` after.
  std::unique_ptr<ClientBucket> clients;
  uint8_t client = kNoClient;
  uint32_t calls = 0;
  uint32_t token_no_response = 0;  // token PUTs that timed out without a response byte
  uint32_t v1 = 0;                 // IMDSv1 requests (token PUTs excluded)
  uint32_t v1_answered = 0;        // ... that got a response
  uint32_t cred_fetches = 0;       // credentials GETs answered 2xx/3xx
  uint32_t remaining_count = 0;    // ... whose Expiration parsed
  uint32_t throttled = 0;          // answered 429/503
  uint32_t timeouts = 0;           // no answer, the client gave up
  uint32_t resets = 0;             // no answer, the peer cut the connection
  uint32_t conn_refused = 0;
  uint32_t conn_timeout = 0;
  float token_wait_seconds = 0;
  float remaining_sum = 0;
  float remaining_min = std::numeric_limits<float>::infinity();
  float busy_seconds = 0;
  std::array<float, kCalls> busy_by_call{};

  // The per-client counts to add a call by `client` to, or null while it is the only client.
  ClientBucket* Clients(size_t c) {
    if (!clients) {
      if (client == kNoClient) client = static_cast<uint8_t>(c);
      if (c == client) return nullptr;
      clients = std::make_unique<ClientBucket>();
      clients->calls[client] = Saturated16(calls);
      clients->v1[client] = Saturated16(v1);
    }
    return clients.get();
  }
};

namespace {

// Adds the buckets oldest..newest of `window` (an owner's buckets, oldest
// first) to `t`. In the order of their slots in a ring of kWindowBuckets (the
// sums are floating point: the order is kept as it always was).
template <typename Bucket>
void AddWindow(const std::vector<Bucket>& window, int64_t oldest, int64_t newest, Tally* t) {
  constexpr auto n = static_cast<int64_t>(Diagnoser::kWindowBuckets);
  std::array<const Bucket*, Diagnoser::kWindowBuckets> slots{};
  for (const Bucket& b : window)
    if (b.index >= oldest && b.index <= newest) slots[static_cast<size_t>(b.index % n)] = &b;
  for (const Bucket* b : slots) {
    if (!b) continue;
    t->calls += b->calls;
    t->token_no_response += b->token_no_response;
    t->v1 += b->v1;
    t->v1_answered += b->v1_answered;
    t->cred_fetches += b->cred_fetches;
    t->remaining_count += b->remaining_count;
    t->throttled += b->throttled;
    t->timeouts += b->timeouts;
    t->resets += b->resets;
    t->conn_refused += b->conn_refused;
    t->conn_timeout += b->conn_timeout;
    t->token_wait_seconds += b->token_wait_seconds;
    t->remaining_sum += b->remaining_sum;
    t->remaining_min = std::min(t->remaining_min, static_cast<double>(b->remaining_min));
    t->busy_seconds += b->busy_seconds;
    for (size_t i = 0; i < kCalls; i++) t->busy_by_call[i] += b->busy_by_call[i];
    if (b->clients) {
      for (size_t i = 0; i < kClients; i++) {
        t->v1_by_client[i] += b->clients->v1[i];
        t->calls_by_client[i] += b->clients->calls[i];
      }
    } else if (b->client != kNoClient) {
      t->v1_by_client[b->client] += Saturated16(b->v1);
      t->calls_by_client[b->client] += Saturated16(b->calls);
    }
  }
}

// Whether any bucket oldest..newest has calls or failed connections.
template <typename Bucket>
bool Active(const std::vector<Bucket>& window, int64_t oldest, int64_t newest) {
  return std::any_of(window.begin(), window.end(), [&](const Bucket& b) {
    return b.index >= oldest && b.index <= newest && (b.calls || b.conn_refused || b.conn_timeout);
  });
}

}  // namespace

struct Diagnoser::IntervalHistogram {
  std::array<uint64_t, kIntervalBuckets> counts{};  // per bucket, not cumulative
  uint64_t count = 0;
  double sum = 0;

  void Observe(double seconds) {
    size_t i = 0;
    while (i < kFetchIntervalBuckets.size() && seconds > kFetchIntervalBuckets[i]) i++;
    counts[i]++;
    count++;
    sum += seconds;
  }
  void Merge(const IntervalHistogram& other) {
    for (size_t i = 0; i < kIntervalBuckets; i++) counts[i] += other.counts[i];
    count += other.count;
    sum += other.sum;
  }
};

namespace {

struct RoleExpiry {
  std::string role;
  WallTime expiry;
  SteadyTime served;
};

}  // namespace

struct Diagnoser::Owner {
  Key key;
  // The buckets of the last window that saw behaviour, oldest first: at most
  // kWindowBuckets, as many as needed (most owners call in bursts). Empty, and
  // released, once quiet for a whole window.
  std::vector<Bucket> window;
  int64_t last_index = -1;  // newest bucket written
  std::optional<SteadyTime> last_fetch;
  Client last_fetch_client = Client::kUnknown;
  std::vector<RoleExpiry> roles;  // at most kMaxRolesPerOwner
  IntervalHistogram intervals;
  std::optional<SteadyTime> gone_since;
  std::shared_ptr<const ExportedLabels> exported;  // labels at the last scrape; null before
};

struct Diagnoser::Retired {
  IntervalHistogram intervals;
  std::optional<SteadyTime> orphan_since;  // no live owner shares the labels
};

// ---- Sentences -------------------------------------------------------------------

struct DiagnosisContext {
  double window_seconds = 0;
  double refresh_storm_max_interval_share = 0;
  std::string top_callers;  // the throttled fix names them
};

namespace {

// "250 ms", "2.5 s", "15 min", "6 h".
std::string HumanDuration(double seconds) {
  if (!std::isfinite(seconds)) return "unknown";
  const char* sign = seconds < 0 ? "-" : "";
  const double s = std::fabs(seconds);
  if (s < 1) return fmt::format("{}{:.0f} ms", sign, s * 1000);
  if (s < 120) return fmt::format("{}{:g} s", sign, std::round(s * 10) / 10);
  if (s < 7200) return fmt::format("{}{:g} min", sign, std::round(s / 6) / 10);
  return fmt::format("{}{:g} h", sign, std::round(s / 360) / 10);
}

std::string Percent(double share) {
  return share < 0.1 ? fmt::format("{:.1f} %", share * 100) : fmt::format("{:.0f} %", share * 100);
}

std::string Plural(uint64_t n, std::string_view one, std::string_view many) {
  return fmt::format("{} {}", n, n == 1 ? one : many);
}

std::string Join(const std::vector<std::string>& parts, std::string_view separator) {
  std::string out;
  for (const std::string& p : parts) {
    if (!out.empty()) out += separator;
    out += p;
  }
  return out;
}

std::string WhoName(const Workload& w) {
  if (w.pod.empty()) return w.workload;
  std::string out = w.namespace_name.empty() ? w.pod : w.namespace_name + "/" + w.pod;
  if (!w.container.empty()) out += " (" + w.container + ")";
  return out;
}

// "botocore 40, curl 2", most first.
std::string ClientCounts(const std::array<uint32_t, Diagnosis::kClients>& counts) {
  std::vector<std::pair<uint64_t, size_t>> seen;
  for (size_t i = 0; i < kClients; i++)
    if (counts[i] > 0) seen.emplace_back(counts[i], i);
  std::sort(seen.begin(), seen.end(), [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first > b.first : a.second < b.second;
  });
  std::string out;
  for (const auto& [n, i] : seen) {
    if (!out.empty()) out += ", ";
    out += fmt::format("{} {}", ToString(static_cast<Client>(i)), n);
  }
  return out;
}

// Diagnosis::figures, per kind. The first ones are Finding::numbers (besides
// window_seconds, from the context), in the order AllKindNumbers names them.
static_assert(Diagnosis::kClients == kClients);
enum HopLimitFigure : size_t { kHopTokenTimeouts, kHopTokenWait, kHopV1Requests, kHopV1Answered, kHopTtlDrops };
enum RefreshStormFigure : size_t { kStormFetches, kStormInterval, kStormRemaining, kStormRemainingMin };
enum ThrottledFigure : size_t {
  kThrottledFailures,
  kThrottledResponses,
  kThrottledTimeouts,
  kThrottledResets,
  kThrottledRefused,
  kThrottledConnectTimeouts,
  kThrottledCalls,
};
enum ImdsV1Figure : size_t { kV1Requests, kV1Hop /* 1 when the workload has a hop_limit finding */ };
enum SlowFigure : size_t { kSlowShare, kSlowBusy, kSlowCalls, kSlowTopCall, kSlowTopCallBusy };

struct KindNumbers {
  std::string_view kind;
  std::vector<std::string_view> names;  // of figures 0.. (hop_limit's ttl_exceeded_drops only when > 0)
};
const std::array<KindNumbers, 5>& AllKindNumbers() {
  static const std::array<KindNumbers, 5> kAll = {{
      {diagnosis::kHopLimit,
       {"token_timeouts", "token_wait_seconds", "v1_requests", "v1_answered", "ttl_exceeded_drops"}},
      {diagnosis::kRefreshStorm,
       {"fetches", "fetch_interval_seconds", "remaining_lifetime_seconds", "min_remaining_lifetime_seconds"}},
      {diagnosis::kThrottled,
       {"failures", "throttled_responses", "timeouts", "resets", "connect_refused", "connect_timeouts", "calls"}},
      {diagnosis::kImdsV1, {"v1_requests"}},
      {diagnosis::kSlow, {"share", "busy_seconds", "calls"}},
  }};
  return kAll;
}

// The order of kinds within a workload: the order they are judged in.
int KindOrder(std::string_view kind) {
  const auto& all = AllKindNumbers();
  for (size_t i = 0; i < all.size(); i++)
    if (all[i].kind == kind) return static_cast<int>(i);
  return static_cast<int>(all.size());
}

uint64_t Count(double figure) { return static_cast<uint64_t>(figure); }

void ExplainHopLimit(const Diagnosis& d, const std::string& window, Finding* f) {
  const auto& x = d.figures;
  f->evidence = fmt::format(
      "{} in the last {} got no response at all (the client waited {} on average, then gave up), while {} from "
      "the same workload were answered{}.",
      Plural(Count(x[kHopTokenTimeouts]), "IMDSv2 token PUT", "IMDSv2 token PUTs"), window,
      HumanDuration(x[kHopTokenWait]), Plural(Count(x[kHopV1Answered]), "IMDSv1 request", "IMDSv1 requests"),
      d.client.empty() ? std::string() : fmt::format(" (client: {})", d.client));
  if (x[kHopTtlDrops] > 0) {
    f->evidence += fmt::format(
        " This node dropped {} from the metadata service bound for this pod because their TTL ran out in its "
        "forwarding path: the hop limit is proven, not inferred.",
        Plural(Count(x[kHopTtlDrops]), "reply", "replies"));
  }
  f->cause =
      "The metadata service sends the token reply with the instance's PUT response hop limit as its IP TTL; "
      "with a limit of 1 the reply dies one hop short of a container behind the node's network namespace, so "
      "the SDK waits out its timeout on every token fetch and then falls back to IMDSv1, which still answers.";
  f->fix =
      "Set the instance's http-put-response-hop-limit to 2 (3 with some overlay CNIs): `aws ec2 "
      "modify-instance-metadata-options --instance-id <id> --http-put-response-hop-limit 2`, and set it in the "
      "node group's launch template so new nodes get it too.";
}

void ExplainRefreshStorm(const Diagnosis& d, const DiagnosisContext& c, const std::string& window, Finding* f) {
  const auto& x = d.figures;
  const double interval = x[kStormInterval], remaining = x[kStormRemaining];
  f->evidence = fmt::format(
      "{} in the last {} (one every {}{}), while the credentials served still had {} of their lifetime left on "
      "average (least {}); a fetch every {} is under {} of that lifetime.",
      Plural(Count(x[kStormFetches]), "credentials fetch", "credentials fetches"), window, HumanDuration(interval),
      d.client.empty() ? std::string() : ", client " + std::string(d.client), HumanDuration(remaining),
      HumanDuration(x[kStormRemainingMin]), HumanDuration(interval), Percent(c.refresh_storm_max_interval_share));
  f->cause = fmt::format(
      "The workload refetches credentials long before they expire. The two known causes: the credential "
      "proxy's session is too short (node proxies such as kiam and kube2iam serve credentials with about 15 min "
      "left, real IMDS about 6 h), or the SDK's refresh window: Java v1 and botocore refresh anything expiring "
      "within 15 min (JS v3 and Ruby within 5 min), so credentials served with less than that left are "
      "refetched on every request.{}",
      remaining <= 20 * 60 ? fmt::format(" Credentials with {} left are inside that window.", HumanDuration(remaining))
                           : std::string());
  f->fix =
      "Serve credentials with a lifetime well above the SDK's refresh window (raise the proxy's session "
      "duration to 60 min or more, or move to IRSA or EKS Pod Identity), or use an SDK version that extends "
      "IMDS expiry locally; and keep one credentials provider per process rather than one per request.";
}

void ExplainThrottled(const Diagnosis& d, const DiagnosisContext& c, const std::string& window, Finding* f) {
  const auto& x = d.figures;
  const uint64_t throttled = Count(x[kThrottledResponses]), timeouts = Count(x[kThrottledTimeouts]),
                 resets = Count(x[kThrottledResets]), refused = Count(x[kThrottledRefused]),
                 connect_timeouts = Count(x[kThrottledConnectTimeouts]);
  std::vector<std::string> parts;
  if (throttled) parts.push_back(fmt::format("{} answered 429/503", throttled));
  if (timeouts) parts.push_back(fmt::format("{} timed out without an answer", timeouts));
  if (resets) parts.push_back(fmt::format("{} cut off by the peer before an answer", resets));
  if (refused) parts.push_back(Plural(refused, "connection refused", "connections refused"));
  if (connect_timeouts)
    parts.push_back(Plural(connect_timeouts, "connection attempt timed out", "connection attempts timed out"));
  f->evidence =
      fmt::format("{} with the metadata service in the last {} ({} calls made{}): {}.",
                  Plural(Count(x[kThrottledFailures]), "failure", "failures"), window, Count(x[kThrottledCalls]),
                  d.client.empty() ? std::string() : ", client " + std::string(d.client), Join(parts, ", "));
  f->cause =
      "The metadata service is throttling this node's callers or cannot be reached: IMDS limits the request "
      "rate per instance (EC2 drops packets above it, which shows as timeouts; Azure IMDS and the EKS Pod "
      "Identity Agent answer 429), and every SDK retry adds to the load.";
  f->fix = fmt::format(
      "Cache credentials and metadata instead of refetching them, back off with jitter on 429/503 and "
      "timeouts, and cut the calls of the node's top callers: {}.",
      c.top_callers);
}

void ExplainImdsV1(const Diagnosis& d, const std::string& window, Finding* f) {
  const bool hop = d.figures[kV1Hop] != 0;
  const std::string name = d.client.empty() ? "the client" : std::string(d.client);
  f->evidence = fmt::format("{} (no session token) in the last {}, by client: {}.",
                            Plural(Count(d.figures[kV1Requests]), "IMDSv1 request", "IMDSv1 requests"), window,
                            ClientCounts(d.v1_by_client));
  f->cause = hop ? fmt::format(
                       "{} falls back to IMDSv1 because its IMDSv2 token PUTs get no reply (see the hop_limit "
                       "finding for this workload); CloudWatch counts these calls as MetadataNoToken.",
                       name)
                 : fmt::format(
                       "{} is still using IMDSv1: it is too old for IMDSv2 sessions, is configured for IMDSv1, or "
                       "falls back to it after a token failure; CloudWatch counts these calls as MetadataNoToken.",
                       name);
  f->fix = fmt::format(
      "{}Make {} use IMDSv2 (AWS SDKs released since late 2019 do so by default; for curl and scripts, PUT "
      "/latest/api/token first and send the X-aws-ec2-metadata-token header). These IMDSv1 calls must be gone "
      "before the instance is set to require IMDSv2 (http-tokens required), or they will fail.",
      hop ? "Fix the hop limit first (see hop_limit). " : "", name);
}

void ExplainSlow(const Diagnosis& d, const std::string& window, Finding* f) {
  const auto& x = d.figures;
  const double busy = x[kSlowBusy];
  f->evidence = fmt::format(
      "{} of wall time in the last {} was spent waiting on metadata calls: {} over {} calls, {} of it in {} "
      "calls.",
      Percent(x[kSlowShare]), window, HumanDuration(busy), Count(x[kSlowCalls]),
      Percent(busy > 0 ? x[kSlowTopCallBusy] / busy : 0), ToString(static_cast<Call>(Count(x[kSlowTopCall]))));
  f->cause =
      "Metadata calls block the threads that make them: calls made on every request, or slow and failing "
      "ones (timeouts, retries, a lost token reply), add up to time the workload spends waiting.";
  f->fix =
      "Cache credentials and metadata in the process and refresh them in the background; fix any hop_limit, "
      "throttled or refresh_storm finding for this workload first, as each makes calls slower or more "
      "frequent.";
}

// {"namespace",...,"fix"} as an element of the array FindingsJson writes: what
// the array's dump(2) would write for it, so findings can be written one at a
// time.
void AppendFindingJson(const Finding& f, std::string* out) {
  nlohmann::ordered_json numbers = nlohmann::ordered_json::object();
  for (const auto& [name, value] : f.numbers)
    if (std::isfinite(value)) numbers[name] = value;
  const nlohmann::ordered_json item = {{"namespace", f.who.namespace_name},
                                       {"workload", f.who.workload},
                                       {"pod", f.who.pod},
                                       {"container", f.who.container},
                                       {"kind", f.kind},
                                       {"client", f.client},
                                       {"numbers", std::move(numbers)},
                                       {"evidence", f.evidence},
                                       {"cause", f.cause},
                                       {"fix", f.fix}};
  const std::string text = item.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
  *out += out->empty() ? "[\n  " : ",\n  ";
  // One level deeper than on its own; strings hold no raw newline (JSON escapes them).
  for (const char c : text) {
    *out += c;
    if (c == '\n') *out += "  ";
  }
}

std::string CloseFindingsJson(std::string out) { return out.empty() ? "[]" : std::move(out) + "\n]"; }

}  // namespace

Finding Explain(const Diagnosis& d) {
  static const DiagnosisContext kNoContext;
  const DiagnosisContext& c = d.context ? *d.context : kNoContext;
  Finding f;
  f.who = d.who;
  f.kind = std::string(d.kind);
  f.client = std::string(d.client);
  f.numbers["window_seconds"] = c.window_seconds;
  const int kind = KindOrder(d.kind);
  if (kind < static_cast<int>(AllKindNumbers().size())) {
    const auto& names = AllKindNumbers()[kind].names;
    for (size_t i = 0; i < names.size(); i++)
      if (!(d.kind == diagnosis::kHopLimit && i == kHopTtlDrops && !(d.figures[i] > 0)))
        f.numbers[std::string(names[i])] = d.figures[i];
  }
  const std::string window = HumanDuration(c.window_seconds);
  if (d.kind == diagnosis::kHopLimit) {
    ExplainHopLimit(d, window, &f);
  } else if (d.kind == diagnosis::kRefreshStorm) {
    ExplainRefreshStorm(d, c, window, &f);
  } else if (d.kind == diagnosis::kThrottled) {
    ExplainThrottled(d, c, window, &f);
  } else if (d.kind == diagnosis::kImdsV1) {
    ExplainImdsV1(d, window, &f);
  } else if (d.kind == diagnosis::kSlow) {
    ExplainSlow(d, window, &f);
  }
  return f;
}

// ---- Free functions ----------------------------------------------------------------

std::optional<std::chrono::system_clock::time_point> ParseExpiration(std::string_view text) {
  if (text.size() > 64) return std::nullopt;
  Cursor c(text);
  int year, month, day, hour, minute, second;
  if (!c.Digits(4, &year) || !c.Take('-') || !c.Digits(2, &month) || !c.Take('-') || !c.Digits(2, &day) ||
      !c.TakeAny("Tt ") || !c.Digits(2, &hour) || !c.Take(':') || !c.Digits(2, &minute) || !c.Take(':') ||
      !c.Digits(2, &second))
    return std::nullopt;
  int64_t nanos = 0;
  if (c.Take('.') || c.Take(',')) {
    if (!c.AtDigit()) return std::nullopt;
    int64_t scale = 100000000;
    int digit = 0;
    while (c.Digits(1, &digit)) {
      nanos += digit * scale;
      scale /= 10;  // digits past the ninth add 0
    }
  }
  int offset_seconds = 0;
  char sign = 0;
  if (c.TakeAny("Zz")) {
  } else if (c.TakeAny("+-", &sign)) {
    int oh, om;
    if (!c.Digits(2, &oh)) return std::nullopt;
    c.Take(':');
    if (!c.Digits(2, &om) || oh > 23 || om > 59) return std::nullopt;
    offset_seconds = (sign == '-' ? -1 : 1) * (oh * 3600 + om * 60);
  } else {
    return std::nullopt;  // a time without a zone is ambiguous
  }
  if (!c.Done()) return std::nullopt;
  // the clock's nanoseconds reach only year 2262: an expiry outside this range is not one
  if (year < 1970 || year > 2200) return std::nullopt;
  if (month < 1 || month > 12 || day < 1 || static_cast<unsigned>(day) > DaysInMonth(year, month) || hour > 23 ||
      minute > 59 || second > 60)
    return std::nullopt;
  const int64_t secs = DaysFromCivil(year, static_cast<unsigned>(month), static_cast<unsigned>(day)) * 86400 +
                       hour * 3600 + minute * 60 + second - offset_seconds;
  const auto since_epoch = std::chrono::seconds(secs) + std::chrono::nanoseconds(nanos);
  return WallTime(std::chrono::duration_cast<WallTime::duration>(since_epoch));
}

std::string FindingsJson(const std::vector<Finding>& findings) {
  std::string out;
  for (const Finding& f : findings) AppendFindingJson(f, &out);
  return CloseFindingsJson(std::move(out));
}

DiagnoserClock DiagnoserClock::System() {
  return {[] { return std::chrono::steady_clock::now(); }, [] { return std::chrono::system_clock::now(); }};
}

// ---- Recording -------------------------------------------------------------------

namespace {

std::chrono::steady_clock::duration BucketWidth(std::chrono::seconds window) {
  const auto w = std::max(window, std::chrono::seconds(1));
  return std::chrono::duration_cast<std::chrono::steady_clock::duration>(w) / Diagnoser::kWindowBuckets;
}

DiagnosisThresholds Normalized(DiagnosisThresholds t) {
  t.window = std::max(t.window, std::chrono::seconds(1));
  return t;
}

}  // namespace

Diagnoser::Diagnoser(Resolver resolver, DiagnosisThresholds thresholds, Clock clock)
    : resolver_(std::move(resolver)),
      thresholds_(Normalized(thresholds)),
      clock_(clock.steady && clock.wall ? std::move(clock) : Clock::System()),
      epoch_(clock_.steady()),
      bucket_width_(BucketWidth(thresholds_.window)),
      current_(std::make_shared<const std::vector<Diagnosis>>()) {}

Diagnoser::~Diagnoser() = default;

int64_t Diagnoser::BucketIndex(SteadyTime t) const {
  if (t <= epoch_) return 0;
  return static_cast<int64_t>((t - epoch_) / bucket_width_);
}

Diagnoser::Owner* Diagnoser::FindOrCreate(uint64_t cgroup_id, std::string_view comm) {
  return FindOrMakeOwner(owners_, last_owner_, kMaxOwners, cgroup_id, comm);
}

Diagnoser::Bucket& Diagnoser::CurrentBucket(Owner& owner, int64_t index) {
  index = std::max(index, owner.last_index);  // a clock that steps back keeps writing the newest bucket
  std::vector<Bucket>& window = owner.window;
  if (window.empty() || window.back().index != index) {
    // Drop the buckets this one pushes out of the window, then add it.
    const int64_t oldest = index - static_cast<int64_t>(kWindowBuckets) + 1;
    window.erase(window.begin(),
                 std::find_if(window.begin(), window.end(), [&](const Bucket& b) { return b.index >= oldest; }));
    if (window.size() == window.capacity()) window.reserve(window.size() + 1);  // exact: kWindowBuckets at most
    window.emplace_back().index = index;
  }
  owner.last_index = index;
  return window.back();
}

void Diagnoser::OnCall(uint64_t cgroup_id, std::string_view comm, const CallRecord& call) {
  const CallSample& s = call.sample;
  const SteadyTime now = clock_.steady();
  const bool fetch = s.call == Call::kCredentials && s.outcome == Outcome::kOk;

  // Expiry maths before taking the lock: only the parsed time is kept.
  std::optional<WallTime> expiry;
  double remaining = 0;
  if (fetch && !call.expiry.empty()) {
    expiry = ParseExpiration(call.expiry);
    if (expiry) {
      remaining = Seconds(*expiry - clock_.wall());
    } else {
      malformed_expirations_.fetch_add(1, std::memory_order_relaxed);
    }
  }
  const double duration = std::isfinite(s.duration_seconds) && s.duration_seconds > 0 ? s.duration_seconds : 0.0;
  const size_t client = Index(s.client, kClients, Client::kUnknown);
  const bool v1 = s.version == Version::kV1 && s.call != Call::kToken;
  const bool token_lost =
      s.call == Call::kToken && s.outcome == Outcome::kTimeout && s.status == 0 && !(s.ttfb_seconds > 0);

  std::lock_guard<std::mutex> lock(mu_);
  Owner* owner = FindOrCreate(cgroup_id, comm);
  if (!owner) {
    dropped_records_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  Bucket& b = CurrentBucket(*owner, BucketIndex(now));
  ClientBucket* by_client = b.Clients(client);  // before the counts: it may copy them
  b.calls++;
  if (by_client) SaturatingIncrement(by_client->calls[client]);
  b.busy_seconds += static_cast<float>(duration);
  b.busy_by_call[Index(s.call, kCalls, Call::kOther)] += static_cast<float>(duration);
  switch (s.outcome) {
    case Outcome::kThrottled: b.throttled++; break;
    case Outcome::kTimeout: b.timeouts++; break;
    case Outcome::kReset: b.resets++; break;
    case Outcome::kOk:
    case Outcome::kError: break;
  }
  if (token_lost) {
    b.token_no_response++;
    b.token_wait_seconds += static_cast<float>(duration);
  }
  if (v1) {
    b.v1++;
    if (by_client) SaturatingIncrement(by_client->v1[client]);
    if (s.status != 0) b.v1_answered++;
  }
  if (!fetch) return;

  b.cred_fetches++;
  if (owner->last_fetch) owner->intervals.Observe(std::max(0.0, Seconds(now - *owner->last_fetch)));
  owner->last_fetch = now;
  owner->last_fetch_client = s.client;
  if (!expiry) return;
  b.remaining_count++;
  b.remaining_sum += static_cast<float>(remaining);
  b.remaining_min = std::min(b.remaining_min, static_cast<float>(remaining));

  const std::string_view role = std::string_view(call.role).substr(0, kMaxRoleLength);
  auto& roles = owner->roles;
  auto it = std::find_if(roles.begin(), roles.end(), [&](const RoleExpiry& r) { return r.role == role; });
  if (it == roles.end()) {
    if (roles.size() < kMaxRolesPerOwner) {
      roles.push_back({std::string(role), *expiry, now});
      return;
    }
    it = std::min_element(roles.begin(), roles.end(),
                          [](const RoleExpiry& a, const RoleExpiry& b) { return a.served < b.served; });
    it->role.assign(role);
  }
  it->expiry = *expiry;
  it->served = now;
}

void Diagnoser::OnConnection(uint64_t cgroup_id, std::string_view comm, ConnOutcome outcome) {
  if (outcome != ConnOutcome::kRefused && outcome != ConnOutcome::kTimeout) return;
  const SteadyTime now = clock_.steady();
  std::lock_guard<std::mutex> lock(mu_);
  Owner* owner = FindOrCreate(cgroup_id, comm);
  if (!owner) {
    dropped_records_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  Bucket& b = CurrentBucket(*owner, BucketIndex(now));
  if (outcome == ConnOutcome::kRefused) {
    b.conn_refused++;
  } else {
    b.conn_timeout++;
  }
}

size_t Diagnoser::OwnerCount() const {
  std::lock_guard<std::mutex> lock(mu_);
  return owners_.size();
}

// ---- Judging ---------------------------------------------------------------------

namespace {

// The client with the most of `counts`, or kUnknown when none.
std::optional<Client> TopClient(const std::array<uint64_t, kClients>& counts) {
  size_t best = kClients;
  for (size_t i = 0; i < kClients; i++)
    if (counts[i] > 0 && (best == kClients || counts[i] > counts[best])) best = i;
  if (best == kClients) return std::nullopt;
  return static_cast<Client>(best);
}

std::string_view ClientName(std::optional<Client> c) { return c ? ToString(*c) : std::string_view(); }

struct WorkloadTally {
  Tally tally;
  uint64_t ttl_drops = 0;  // replies the node dropped on their way to this pod
  std::optional<SteadyTime> last_fetch;
  Client fetch_client = Client::kUnknown;
};

// Decides the findings; their sentences are Explain's. Run appends them in
// kind order (KindOrder).
class Judge {
 public:
  Judge(const DiagnosisThresholds& t, std::shared_ptr<const DiagnosisContext> context)
      : t_(t), window_(static_cast<double>(t.window.count())), context_(std::move(context)) {}

  void Run(const Workload& who, const WorkloadTally& w, std::vector<Diagnosis>* out) const {
    const Tally& x = w.tally;
    const bool hop = HopLimit(who, w, out);
    RefreshStorm(who, w, out);
    Throttled(who, x, hop, out);
    ImdsV1(who, x, hop, out);
    Slow(who, x, out);
  }

 private:
  Diagnosis& Make(const Workload& who, std::string_view kind, std::string_view client,
                  std::vector<Diagnosis>* out) const {
    Diagnosis& d = out->emplace_back();
    d.who = who;
    d.kind = kind;
    d.client = client;
    d.context = context_;
    return d;
  }

  bool HopLimit(const Workload& who, const WorkloadTally& w, std::vector<Diagnosis>* out) const {
    const Tally& x = w.tally;
    // inferred from the fallback to IMDSv1, or proven by the node dropping the replies
    if (x.token_no_response < std::max<uint32_t>(1, t_.hop_limit_min_token_timeouts) ||
        (x.v1_answered < std::max<uint32_t>(1, t_.hop_limit_min_v1_answered) && w.ttl_drops == 0))
      return false;
    auto& f = Make(who, diagnosis::kHopLimit, ClientName(TopClient(x.v1_by_client)), out).figures;
    f[kHopTokenTimeouts] = static_cast<double>(x.token_no_response);
    f[kHopTokenWait] = x.token_wait_seconds / static_cast<double>(x.token_no_response);
    f[kHopV1Requests] = static_cast<double>(x.v1);
    f[kHopV1Answered] = static_cast<double>(x.v1_answered);
    f[kHopTtlDrops] = static_cast<double>(w.ttl_drops);
    return true;
  }

  void RefreshStorm(const Workload& who, const WorkloadTally& w, std::vector<Diagnosis>* out) const {
    const Tally& x = w.tally;
    if (x.cred_fetches < std::max<uint32_t>(1, t_.refresh_storm_min_fetches) || x.remaining_count == 0) return;
    const double interval = window_ / static_cast<double>(x.cred_fetches);
    const double remaining = x.remaining_sum / static_cast<double>(x.remaining_count);
    if (!(remaining > 0) || !(interval < t_.refresh_storm_max_interval_share * remaining)) return;
    const std::string_view client = x.cred_fetches > 0 && w.last_fetch ? ToString(w.fetch_client) : "";
    auto& f = Make(who, diagnosis::kRefreshStorm, client, out).figures;
    f[kStormFetches] = static_cast<double>(x.cred_fetches);
    f[kStormInterval] = interval;
    f[kStormRemaining] = remaining;
    f[kStormRemainingMin] = x.remaining_min;
  }

  void Throttled(const Workload& who, const Tally& x, bool hop, std::vector<Diagnosis>* out) const {
    const uint64_t timeouts = hop ? x.timeouts - std::min(x.timeouts, x.token_no_response) : x.timeouts;
    const uint64_t failures = x.throttled + timeouts + x.resets + x.conn_refused + x.conn_timeout;
    if (failures < std::max<uint32_t>(1, t_.throttled_min_failures)) return;
    auto& f = Make(who, diagnosis::kThrottled, ClientName(TopClient(x.calls_by_client)), out).figures;
    f[kThrottledFailures] = static_cast<double>(failures);
    f[kThrottledResponses] = static_cast<double>(x.throttled);
    f[kThrottledTimeouts] = static_cast<double>(timeouts);
    f[kThrottledResets] = static_cast<double>(x.resets);
    f[kThrottledRefused] = static_cast<double>(x.conn_refused);
    f[kThrottledConnectTimeouts] = static_cast<double>(x.conn_timeout);
    f[kThrottledCalls] = static_cast<double>(x.calls);
  }

  void ImdsV1(const Workload& who, const Tally& x, bool hop, std::vector<Diagnosis>* out) const {
    if (x.v1 < std::max<uint32_t>(1, t_.imdsv1_min_requests)) return;
    Diagnosis& d = Make(who, diagnosis::kImdsV1, ClientName(TopClient(x.v1_by_client)), out);
    d.figures[kV1Requests] = static_cast<double>(x.v1);
    d.figures[kV1Hop] = hop ? 1 : 0;
    for (size_t i = 0; i < kClients; i++)
      d.v1_by_client[i] = static_cast<uint32_t>(std::min<uint64_t>(x.v1_by_client[i], UINT32_MAX));
  }

  void Slow(const Workload& who, const Tally& x, std::vector<Diagnosis>* out) const {
    const double share = x.busy_seconds / window_;
    if (!(share >= t_.slow_min_share) || x.calls == 0) return;
    size_t top = 0;
    for (size_t i = 1; i < kCalls; i++)
      if (x.busy_by_call[i] > x.busy_by_call[top]) top = i;
    auto& f = Make(who, diagnosis::kSlow, ClientName(TopClient(x.calls_by_client)), out).figures;
    f[kSlowShare] = share;
    f[kSlowBusy] = x.busy_seconds;
    f[kSlowCalls] = static_cast<double>(x.calls);
    f[kSlowTopCall] = static_cast<double>(top);
    f[kSlowTopCallBusy] = x.busy_by_call[top];
  }

  const DiagnosisThresholds& t_;
  const double window_;
  const std::shared_ptr<const DiagnosisContext> context_;
};

// Findings' order: by workload, then kind.
bool Before(const Diagnosis& a, const Diagnosis& b) {
  if (!(a.who == b.who)) return a.who < b.who;
  return KindOrder(a.kind) < KindOrder(b.kind);
}

}  // namespace

void Diagnoser::OnForwardingDrop(std::string_view namespace_name, std::string_view pod) {
  std::lock_guard<std::mutex> lock(mu_);
  auto key = std::make_pair(std::string(namespace_name), std::string(pod));
  auto it = forwarding_drops_.find(key);
  if (it == forwarding_drops_.end()) {
    if (forwarding_drops_.size() >= kMaxDropPods) {
      dropped_records_++;
      return;
    }
    it = forwarding_drops_.emplace(std::move(key), std::deque<std::chrono::steady_clock::time_point>{}).first;
  }
  if (it->second.size() >= kMaxDropsPerPod) it->second.pop_front();
  it->second.push_back(clock_.steady());
}

// ---- Evaluate --------------------------------------------------------------------

std::vector<Diagnosis> Diagnoser::Evaluate() {
  std::lock_guard<std::mutex> evaluating(evaluate_mu_);
  const int64_t now_index = BucketIndex(clock_.steady());
  const int64_t oldest = now_index - static_cast<int64_t>(kWindowBuckets) + 1;

  // The owners with behaviour in the window, in the owners' order (their sums
  // are added in it). Only keys are kept: each workload's sums are taken, and
  // judged, one workload at a time below.
  std::vector<Key> keys;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [key, owner] : owners_) {
      if (owner->window.empty()) continue;
      if (owner->last_index < oldest) {  // quiet for a whole window: release its buckets
        std::vector<Bucket>().swap(owner->window);
        continue;
      }
      if (Active(owner->window, oldest, now_index)) keys.push_back(key);
    }
    const auto horizon = clock_.steady() - thresholds_.window;
    for (auto it = forwarding_drops_.begin(); it != forwarding_drops_.end();) {
      while (!it->second.empty() && it->second.front() < horizon) it->second.pop_front();
      it = it->second.empty() ? forwarding_drops_.erase(it) : std::next(it);
    }
  }

  // Label without the lock: the resolver may be slow. Owners with the same labels are one workload.
  std::vector<Workload> labels;
  labels.reserve(keys.size());
  for (const Key& key : keys) labels.push_back(LabelOwner(resolver_, key));
  std::vector<uint32_t> order(keys.size());
  for (size_t i = 0; i < order.size(); i++) order[i] = static_cast<uint32_t>(i);
  std::stable_sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) { return labels[a] < labels[b]; });

  auto context = std::make_shared<DiagnosisContext>();
  context->window_seconds = static_cast<double>(thresholds_.window.count());
  context->refresh_storm_max_interval_share = thresholds_.refresh_storm_max_interval_share;
  const Judge judge(thresholds_, context);
  const std::shared_ptr<const std::vector<Diagnosis>> previous = CurrentDiagnoses();
  auto findings = std::make_shared<std::vector<Diagnosis>>();
  findings->reserve(previous->size());  // usually about as many as last time
  std::vector<std::pair<uint64_t, size_t>> busiest;  // (calls, the workload's first position in order)
  for (size_t begin = 0, end = 0; begin < order.size(); begin = end) {
    const Workload& who = labels[order[begin]];
    while (end < order.size() && labels[order[end]] == who) end++;
    WorkloadTally w;
    bool seen = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (size_t i = begin; i < end; i++) {
        const auto it = owners_.find(keys[order[i]]);
        if (it == owners_.end()) continue;  // expired meanwhile
        const Owner& owner = *it->second;
        Tally t;
        AddWindow(owner.window, oldest, now_index, &t);
        if (t.Empty()) continue;
        w.tally.Add(t);
        if (owner.last_fetch && (!w.last_fetch || *owner.last_fetch > *w.last_fetch)) {
          w.last_fetch = owner.last_fetch;
          w.fetch_client = owner.last_fetch_client;
        }
        seen = true;
      }
      if (seen && !forwarding_drops_.empty()) {
        const auto it = forwarding_drops_.find({who.namespace_name, who.pod});
        if (it != forwarding_drops_.end()) w.ttl_drops = it->second.size();
      }
    }
    if (!seen) continue;
    judge.Run(who, w, findings.get());  // workloads in order, kinds in order: findings stay sorted
    if (w.tally.calls > 0) busiest.emplace_back(w.tally.calls, begin);
  }

  // The node's busiest callers, for the throttled fix: most calls first, then by labels (positions are in label order).
  const size_t top = std::min(busiest.size(), thresholds_.throttled_top_callers);
  std::partial_sort(
      busiest.begin(), busiest.begin() + static_cast<ptrdiff_t>(top), busiest.end(),
      [](const auto& a, const auto& b) { return a.first != b.first ? a.first > b.first : a.second < b.second; });
  for (size_t i = 0; i < top; i++) {
    if (!context->top_callers.empty()) context->top_callers += ", ";
    context->top_callers += fmt::format("{} ({} calls)", WhoName(labels[order[busiest[i].second]]), busiest[i].first);
  }
  if (context->top_callers.empty()) context->top_callers = "none made calls in the window";

  if (findings->capacity() > findings->size() + findings->size() / 8) findings->shrink_to_fit();  // kept till next

  // New: not current before. Both lists are sorted: a merge walk marks them, then they are copied.
  std::vector<bool> is_new(findings->size());
  size_t new_count = 0;
  auto old = previous->begin();
  for (size_t i = 0; i < findings->size(); i++) {
    const Diagnosis& d = (*findings)[i];
    while (old != previous->end() && Before(*old, d)) ++old;
    is_new[i] = old == previous->end() || Before(d, *old);
    new_count += is_new[i];
  }
  std::vector<Diagnosis> fresh;
  fresh.reserve(new_count);
  for (size_t i = 0; i < findings->size(); i++)
    if (is_new[i]) fresh.push_back((*findings)[i]);
  std::lock_guard<std::mutex> lock(findings_mu_);
  current_ = std::move(findings);
  return fresh;
}

std::shared_ptr<const std::vector<Diagnosis>> Diagnoser::CurrentDiagnoses() const {
  std::lock_guard<std::mutex> lock(findings_mu_);
  return current_;
}

std::vector<Finding> Diagnoser::Current() const {
  const auto current = CurrentDiagnoses();
  std::vector<Finding> out;
  out.reserve(current->size());
  for (const Diagnosis& d : *current) out.push_back(Explain(d));
  return out;
}

std::string Diagnoser::CurrentJson() const {
  const auto current = CurrentDiagnoses();  // held: an Evaluate may replace it meanwhile
  std::string out;
  for (const Diagnosis& d : *current) AppendFindingJson(Explain(d), &out);
  return CloseFindingsJson(std::move(out));
}

// ---- Expiry ------------------------------------------------------------------------

size_t Diagnoser::ExpireGone(const std::function<bool(uint64_t cgroup_id)>& alive, SteadyTime now,
                             std::chrono::seconds ttl) {
  size_t dropped = ExpireGoneOwners(mu_, owners_, alive, now, ttl, [this](Owner& owner) {
    if (owner.exported && owner.intervals.count > 0) {
      std::unique_ptr<Retired>& retired = retired_[owner.exported->who];
      if (!retired) retired = std::make_unique<Retired>();
      retired->intervals.Merge(owner.intervals);
    }
    if (last_owner_ == &owner) last_owner_ = nullptr;
  });
  std::lock_guard<std::mutex> lock(mu_);
  PruneRetired(retired_, owners_, now, ttl);
  return dropped;
}

// ---- Metrics ---------------------------------------------------------------------

void Diagnoser::WriteMetrics(MetricsWriter& out) const {
  struct Merged {
    IntervalHistogram intervals;
    std::vector<RoleExpiry> roles;  // one per role: the credentials served last (a map costs a node each)
  };
  std::vector<LabelGroup<Merged>> groups = GroupByLabels<Merged>(
      mu_, owners_, retired_, resolver_,
      [](const Owner& owner) { return !owner.roles.empty() || owner.intervals.count > 0; },
      [](Merged& m, const Owner& owner) {
        m.intervals.Merge(owner.intervals);
        for (const RoleExpiry& r : owner.roles) {
          auto it = std::find_if(m.roles.begin(), m.roles.end(), [&](const RoleExpiry& e) { return e.role == r.role; });
          if (it == m.roles.end()) {
            m.roles.push_back(r);
          } else if (r.served > it->served) {
            *it = r;
          }
        }
      },
      [](Merged& m, const Retired& retired) { m.intervals.Merge(retired.intervals); });
  const std::shared_ptr<const std::vector<Diagnosis>> findings = CurrentDiagnoses();
  const WallTime wall_now = clock_.wall();

  out.Family("imds_credentials_remaining_seconds",
             "Lifetime left on the credentials last served to the workload for the role: their Expiration minus "
             "now (negative once expired).",
             MetricType::kGauge);
  for (auto& [labels, m] : groups) {
    std::sort(m.roles.begin(), m.roles.end(), [](const RoleExpiry& a, const RoleExpiry& b) { return a.role < b.role; });
    for (const RoleExpiry& r : m.roles) out.Sample(labels->text, {{"role", r.role}}, Seconds(r.expiry - wall_now));
  }

  static const HistogramBounds kBounds(kFetchIntervalBuckets);
  out.Family("imds_credential_fetch_interval_seconds",
             "Time between successive successful credential fetches of a process.", MetricType::kHistogram);
  for (const auto& [labels, m] : groups)
    if (m.intervals.count > 0)
      out.Histogram(labels->text, {}, kBounds, m.intervals.counts, m.intervals.count, m.intervals.sum);

  out.Family("imds_diagnosis",
             "1 while a metadata problem is diagnosed for the workload (kind: hop_limit, refresh_storm, throttled, "
             "imdsv1, slow); the series disappears when it clears.",
             MetricType::kGauge);
  // Findings are ordered by workload, as the groups are: reuse a group's label text where there is one.
  auto group = groups.begin();
  for (const Diagnosis& f : *findings) {
    while (group != groups.end() && group->labels->who < f.who) ++group;
    if (group != groups.end() && group->labels->who == f.who) {
      out.Sample(group->labels->text, {{"kind", f.kind}}, 1.0);
    } else {
      out.Sample({}, {{"namespace", f.who.namespace_name},
                      {"workload", f.who.workload},
                      {"pod", f.who.pod},
                      {"container", f.who.container},
                      {"kind", f.kind}},
                 1.0);
    }
  }
}

}  // namespace imdswatch
