#include "imdswatch/diagnoser.h"

#include <gtest/gtest.h>

#include "exposition.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <functional>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

namespace imdswatch {
namespace {

using namespace std::chrono_literals;
using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;
using exposition::Render;
using namespace exposition;

// ---- Helpers ------------------------------------------------------------------------

struct FakeClock {
  std::chrono::steady_clock::time_point steady{std::chrono::hours(1000)};
  std::chrono::system_clock::time_point wall = ParseExpiration("2026-11-25T12:00:00Z").value();

  DiagnoserClock Clock() {
    return {[this] { return steady; }, [this] { return wall; }};
  }
  void Advance(std::chrono::milliseconds d) {
    steady += d;
    wall += d;
  }
  // An Expiration string `ahead` after the current wall time.
  std::string ExpiryIn(std::chrono::seconds ahead) const {
    const auto t = std::chrono::time_point_cast<std::chrono::seconds>(wall + ahead);
    const std::time_t tt = std::chrono::system_clock::to_time_t(t);
    std::tm tm{};
    gmtime_r(&tt, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
  }
};

Workload Pod(const std::string& name) { return Workload{"ns", "deploy-" + name, name, "app"}; }

// cgroup 1 is pod "sick", 2 "healthy", 3 "other", 4 "busy"; 11 is a second cgroup of "sick" (a restart).
Workload TestResolver(uint64_t cgroup_id, std::string_view) {
  switch (cgroup_id) {
    case 1:
    case 11: return Pod("sick");
    case 2: return Pod("healthy");
    case 3: return Pod("other");
    case 4: return Pod("busy");
    default: return Workload{};
  }
}
constexpr uint64_t kSick = 1, kHealthy = 2, kOther = 3, kBusy = 4, kSickRestarted = 11;

CallRecord Rec(Call call, Version version, Outcome outcome, uint16_t status, Client client, double seconds) {
  CallRecord r;
  r.sample.call = call;
  r.sample.version = version;
  r.sample.outcome = outcome;
  r.sample.status = status;
  r.sample.client = client;
  r.sample.duration_seconds = seconds;
  r.sample.ttfb_seconds = status ? seconds / 2 : 0;
  r.method = call == Call::kToken ? "PUT" : "GET";
  r.path = call == Call::kToken ? "/latest/api/token" : "/latest/meta-data/instance-id";
  return r;
}

CallRecord TokenLost(Client client = Client::kBotocore) {
  return Rec(Call::kToken, Version::kV2, Outcome::kTimeout, 0, client, 1.0);
}
CallRecord TokenOk() { return Rec(Call::kToken, Version::kV2, Outcome::kOk, 200, Client::kBotocore, 0.001); }
CallRecord V1Get(Client client = Client::kBotocore) {
  return Rec(Call::kMetadata, Version::kV1, Outcome::kOk, 200, client, 0.002);
}
CallRecord V2Get() { return Rec(Call::kMetadata, Version::kV2, Outcome::kOk, 200, Client::kBotocore, 0.002); }
CallRecord Creds(const std::string& expiry, const std::string& role = "app-role", Client client = Client::kJavaV1) {
  CallRecord r = Rec(Call::kCredentials, Version::kV2, Outcome::kOk, 200, client, 0.003);
  r.role = role;
  r.path = "/latest/meta-data/iam/security-credentials/" + role;
  r.expiry = expiry;
  return r;
}

// Evaluate returns Diagnoses, Current Findings: the helpers take either.
template <typename F>
std::vector<const F*> FindingsOf(const std::vector<F>& findings, const std::string& pod, std::string_view kind = {}) {
  std::vector<const F*> out;
  for (const F& f : findings)
    if (f.who.pod == pod && (kind.empty() || f.kind == kind)) out.push_back(&f);
  return out;
}

template <typename F>
bool Has(const std::vector<F>& findings, const std::string& pod, std::string_view kind) {
  return !FindingsOf(findings, pod, kind).empty();
}

// The one finding of `kind` for `pod`, explained.
Finding Get(const std::vector<Diagnosis>& findings, const std::string& pod, std::string_view kind) {
  const auto found = FindingsOf(findings, pod, kind);
  if (found.size() != 1)
    throw std::runtime_error(pod + "/" + std::string(kind) + ": " + std::to_string(found.size()) + " findings");
  return Explain(*found[0]);
}

bool Contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// ---- ParseExpiration ---------------------------------------------------------------

int64_t UnixSeconds(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}

TEST(ParseExpiration, AcceptsTheFormsIsoUtcTakes) {
  constexpr int64_t k = 1795640400;  // 2026-11-25T21:00:00Z
  EXPECT_EQ(UnixSeconds(ParseExpiration("2026-11-25T21:00:00Z").value()), k);
  EXPECT_EQ(UnixSeconds(ParseExpiration("2026-11-25T21:00:00+00:00").value()), k);
  EXPECT_EQ(UnixSeconds(ParseExpiration("2026-11-25T23:00:00+02:00").value()), k);
  EXPECT_EQ(UnixSeconds(ParseExpiration("2026-11-25T19:30:00-0130").value()), k);
  EXPECT_EQ(UnixSeconds(ParseExpiration("2026-11-25t21:00:00z").value()), k);
  EXPECT_EQ(UnixSeconds(ParseExpiration("2026-11-25 21:00:00Z").value()), k);
  EXPECT_EQ(UnixSeconds(ParseExpiration("1970-01-01T00:00:00Z").value()), 0);
  EXPECT_EQ(UnixSeconds(ParseExpiration("2024-02-29T00:00:00Z").value()), 1709164800);  // leap day
  const auto frac = ParseExpiration("2026-11-25T21:00:00.25Z").value();
  EXPECT_EQ(std::chrono::duration_cast<std::chrono::milliseconds>(frac.time_since_epoch()).count(), k * 1000 + 250);
  const auto long_frac = ParseExpiration("2026-11-25T21:00:00.1234567891234Z").value();
  EXPECT_EQ(std::chrono::duration_cast<std::chrono::microseconds>(long_frac.time_since_epoch()).count(),
            k * 1000000 + 123456);
}

TEST(ParseExpiration, RejectsAnythingElse) {
  for (const char* bad : {"", "2026-11-25T21:00:00", "2026-11-25", "2026-11-25T21:00Z", "2026-13-01T00:00:00Z", "9999-12-31T23:59:59Z", "1900-01-01T00:00:00Z",
                          "2026-02-29T00:00:00Z", "2026-11-31T00:00:00Z", "2026-11-25T24:00:00Z",
                          "2026-11-25T21:60:00Z", "2026-11-25T21:00:61Z", "2026-11-25T21:00:00.Z",
                          "2026-11-25T21:00:00Zjunk", "2026-11-25T21:00:00+2", "2026-11-25T21:00:00+24:00",
                          " 2026-11-25T21:00:00Z", "2026/11/25T21:00:00Z", "20261125T210000Z", "CANARY",
                          "2026-11-25T21:00:00ZCANARY", "+2026-11-25T21:00:00Z", "２026-11-25T21:00:00Z"}) {
    EXPECT_FALSE(ParseExpiration(bad).has_value()) << bad;
  }
  EXPECT_FALSE(ParseExpiration(std::string(200, '1')).has_value());
}

// ---- One test per kind: the sick pod has it, the healthy pod fed at the same time does not ----

class DiagnoserTest : public ::testing::Test {
 protected:
  FakeClock clock;
  Diagnoser diag{TestResolver, DiagnosisThresholds{}, clock.Clock()};

  // Healthy traffic: an IMDSv2 SDK with 6-hour credentials, one refresh a minute.
  void FeedHealthy(uint64_t cgroup = kHealthy) {
    diag.OnCall(cgroup, "python3", TokenOk());
    diag.OnCall(cgroup, "python3", Creds(clock.ExpiryIn(6h), "healthy-role", Client::kBotocore));
    diag.OnCall(cgroup, "python3", V2Get());
  }
};

TEST_F(DiagnoserTest, HopLimitForThePodWhoseTokenRepliesAreLost) {
  for (int i = 0; i < 3; i++) {
    diag.OnCall(kSick, "python3", TokenLost());
    diag.OnCall(kSick, "python3", V1Get());
    FeedHealthy();
    clock.Advance(5s);
  }
  // The service itself unreachable: token PUTs and v1 GETs both time out. Not a hop limit.
  for (int i = 0; i < 2; i++) {
    diag.OnCall(kOther, "python3", TokenLost());
    diag.OnCall(kOther, "python3", Rec(Call::kMetadata, Version::kV1, Outcome::kTimeout, 0, Client::kBotocore, 1));
  }
  const auto fresh = diag.Evaluate();
  const Finding& f = Get(fresh, "sick", diagnosis::kHopLimit);
  EXPECT_EQ(f.who, Pod("sick"));
  EXPECT_EQ(f.client, "botocore");
  EXPECT_EQ(f.numbers.at("token_timeouts"), 3);
  EXPECT_DOUBLE_EQ(f.numbers.at("token_wait_seconds"), 1.0);
  EXPECT_EQ(f.numbers.at("v1_answered"), 3);
  EXPECT_TRUE(Contains(f.evidence, "3 IMDSv2 token PUTs")) << f.evidence;
  EXPECT_TRUE(Contains(f.evidence, "waited 1 s")) << f.evidence;
  EXPECT_TRUE(Contains(f.evidence, "3 IMDSv1 requests")) << f.evidence;
  EXPECT_TRUE(Contains(f.evidence, "botocore")) << f.evidence;
  EXPECT_TRUE(Contains(f.fix, "set the instance's http-put-response-hop-limit to 2 (3 with some overlay CNIs)") ||
              Contains(f.fix, "Set the instance's http-put-response-hop-limit to 2 (3 with some overlay CNIs)"))
      << f.fix;
  EXPECT_FALSE(f.cause.empty());
  // The lost token replies explain the timeouts: not also "throttled".
  EXPECT_FALSE(Has(fresh, "sick", diagnosis::kThrottled));
  EXPECT_TRUE(Has(fresh, "sick", diagnosis::kImdsV1));
  EXPECT_TRUE(Contains(Get(fresh, "sick", diagnosis::kImdsV1).cause, "hop_limit"));

  EXPECT_TRUE(FindingsOf(fresh, "healthy").empty());
  EXPECT_FALSE(Has(fresh, "other", diagnosis::kHopLimit));
  EXPECT_TRUE(Has(fresh, "other", diagnosis::kThrottled));  // 4 timeouts
}

TEST_F(DiagnoserTest, RefreshStormJudgedAgainstTheLifetimeLeft) {
  // sick: 15-minute proxy credentials refetched every 5 s (Java v1's 15-min window).
  // healthy: the same rate would be a storm too, but it fetches twice a minute.
  // other: 12 fetches a minute of credentials 40 s from expiry: refreshing is right.
  for (int i = 0; i < 12; i++) {
    diag.OnCall(kSick, "java", Creds(clock.ExpiryIn(900s), "proxy-role", Client::kJavaV1));
    diag.OnCall(kOther, "java", Creds(clock.ExpiryIn(40s), "proxy-role", Client::kJavaV1));
    if (i % 6 == 0) FeedHealthy();
    clock.Advance(5s);
  }
  const auto fresh = diag.Evaluate();
  const Finding& f = Get(fresh, "sick", diagnosis::kRefreshStorm);
  EXPECT_EQ(f.client, "aws-sdk-java-v1");
  // The oldest of the 12 fetches has aged out of the window (the span judged is 55-60 s).
  EXPECT_EQ(f.numbers.at("fetches"), 11);
  EXPECT_NEAR(f.numbers.at("fetch_interval_seconds"), 60.0 / 11, 1e-9);
  EXPECT_NEAR(f.numbers.at("remaining_lifetime_seconds"), 900, 1e-3);
  EXPECT_TRUE(Contains(f.evidence, "11 credentials fetches")) << f.evidence;
  EXPECT_TRUE(Contains(f.evidence, "one every 5.5 s")) << f.evidence;
  EXPECT_TRUE(Contains(f.evidence, "15 min")) << f.evidence;
  EXPECT_TRUE(Contains(f.cause, "credential proxy")) << f.cause;
  EXPECT_TRUE(Contains(f.cause, "refresh window")) << f.cause;
  EXPECT_TRUE(Contains(f.cause, "within 15 min")) << f.cause;
  EXPECT_FALSE(f.fix.empty());

  EXPECT_FALSE(Has(fresh, "healthy", diagnosis::kRefreshStorm));
  EXPECT_FALSE(Has(fresh, "other", diagnosis::kRefreshStorm));
  EXPECT_TRUE(FindingsOf(fresh, "healthy").empty());
}

TEST_F(DiagnoserTest, RefreshStormNeedsAnExpirationToJudge) {
  for (int i = 0; i < 20; i++) {
    diag.OnCall(kSick, "java", Creds(""));
    clock.Advance(1s);
  }
  EXPECT_FALSE(Has(diag.Evaluate(), "sick", diagnosis::kRefreshStorm));
  for (int i = 0; i < 20; i++) {
    diag.OnCall(kSick, "java", Creds(clock.ExpiryIn(3600s)));
    clock.Advance(1s);
  }
  EXPECT_TRUE(Has(diag.Evaluate(), "sick", diagnosis::kRefreshStorm));
}

TEST_F(DiagnoserTest, ThrottledNamesTheNodesTopCallers) {
  diag.OnCall(kSick, "node", Rec(Call::kCredentials, Version::kV2, Outcome::kThrottled, 429, Client::kJsV3, 0.01));
  diag.OnCall(kSick, "node", Rec(Call::kCredentials, Version::kV2, Outcome::kThrottled, 503, Client::kJsV3, 0.01));
  diag.OnCall(kSick, "node", Rec(Call::kToken, Version::kV2, Outcome::kReset, 0, Client::kJsV3, 0.01));
  diag.OnConnection(kSick, "node", ConnOutcome::kRefused);
  diag.OnConnection(kSick, "node", ConnOutcome::kTimeout);
  diag.OnConnection(kHealthy, "python3", ConnOutcome::kEstablished);  // not a failure
  diag.OnConnection(kHealthy, "python3", ConnOutcome::kReset);
  for (int i = 0; i < 2; i++) FeedHealthy();    // 6 calls
  for (int i = 0; i < 20; i++) diag.OnCall(kBusy, "app", V2Get());
  for (int i = 0; i < 2; i++) diag.OnCall(kOther, "app", V2Get());

  const auto fresh = diag.Evaluate();
  const Finding& f = Get(fresh, "sick", diagnosis::kThrottled);
  EXPECT_EQ(f.numbers.at("failures"), 5);
  EXPECT_EQ(f.numbers.at("throttled_responses"), 2);
  EXPECT_EQ(f.numbers.at("resets"), 1);
  EXPECT_EQ(f.numbers.at("connect_refused"), 1);
  EXPECT_EQ(f.numbers.at("connect_timeouts"), 1);
  EXPECT_EQ(f.numbers.at("calls"), 3);
  EXPECT_EQ(f.client, "aws-sdk-js-v3");
  EXPECT_TRUE(Contains(f.evidence, "2 answered 429/503")) << f.evidence;
  EXPECT_TRUE(Contains(f.fix, "ache credentials")) << f.fix;
  EXPECT_TRUE(Contains(f.fix, "back off")) << f.fix;
  EXPECT_TRUE(Contains(f.fix, "ns/busy (app) (20 calls), ns/healthy (app) (6 calls), ns/sick (app) (3 calls)"))
      << f.fix;
  EXPECT_FALSE(Contains(f.fix, "ns/other")) << f.fix;  // only the top 3

  EXPECT_FALSE(Has(fresh, "healthy", diagnosis::kThrottled));
  EXPECT_FALSE(Has(fresh, "busy", diagnosis::kThrottled));
  EXPECT_EQ(FindingsOf(fresh, "sick").size(), 1u);
}

TEST_F(DiagnoserTest, ThrottledNeedsTheThresholdOfFailures) {
  diag.OnCall(kSick, "node", Rec(Call::kCredentials, Version::kV2, Outcome::kThrottled, 429, Client::kJsV3, 0.01));
  diag.OnCall(kSick, "node", Rec(Call::kMetadata, Version::kV2, Outcome::kTimeout, 0, Client::kJsV3, 0.01));
  diag.OnCall(kSick, "node", Rec(Call::kMetadata, Version::kV2, Outcome::kError, 404, Client::kJsV3, 0.01));
  EXPECT_FALSE(Has(diag.Evaluate(), "sick", diagnosis::kThrottled));  // 404 is not a failure to reach IMDS
  diag.OnConnection(kSick, "node", ConnOutcome::kTimeout);
  EXPECT_TRUE(Has(diag.Evaluate(), "sick", diagnosis::kThrottled));
}

TEST_F(DiagnoserTest, ImdsV1NamesTheClients) {
  diag.OnCall(kSick, "curl", V1Get(Client::kCurl));
  diag.OnCall(kSick, "python3", Rec(Call::kCredentials, Version::kV1, Outcome::kOk, 200, Client::kBotocore, 0.01));
  diag.OnCall(kSick, "python3", Rec(Call::kMetadata, Version::kV1, Outcome::kOk, 200, Client::kBotocore, 0.01));
  FeedHealthy();
  const auto fresh = diag.Evaluate();
  const Finding& f = Get(fresh, "sick", diagnosis::kImdsV1);
  EXPECT_EQ(f.client, "botocore");
  EXPECT_EQ(f.numbers.at("v1_requests"), 3);
  EXPECT_TRUE(Contains(f.evidence, "3 IMDSv1 requests")) << f.evidence;
  EXPECT_TRUE(Contains(f.evidence, "botocore 2, curl 1")) << f.evidence;
  EXPECT_TRUE(Contains(f.cause, "botocore")) << f.cause;
  EXPECT_TRUE(Contains(f.fix, "botocore")) << f.fix;
  EXPECT_TRUE(Contains(f.fix, "must be gone before")) << f.fix;
  EXPECT_TRUE(Contains(f.fix, "require IMDSv2")) << f.fix;
  EXPECT_FALSE(Has(fresh, "sick", diagnosis::kHopLimit));  // no token PUT was lost
  EXPECT_TRUE(FindingsOf(fresh, "healthy").empty());
}

TEST_F(DiagnoserTest, SlowIsTheShareOfWallTimeInCalls) {
  // sick: 7 s of calls in the window (11.7 %); healthy: 5.4 s (9 %).
  for (int i = 0; i < 6; i++) {
    diag.OnCall(kSick, "ruby", Rec(Call::kCredentials, Version::kV2, Outcome::kOk, 200, Client::kRuby, 1.0));
    diag.OnCall(kHealthy, "ruby", Rec(Call::kCredentials, Version::kV2, Outcome::kOk, 200, Client::kRuby, 0.9));
    clock.Advance(5s);
  }
  diag.OnCall(kSick, "ruby", Rec(Call::kToken, Version::kV2, Outcome::kOk, 200, Client::kRuby, 1.0));
  const auto fresh = diag.Evaluate();
  const Finding& f = Get(fresh, "sick", diagnosis::kSlow);
  EXPECT_NEAR(f.numbers.at("share"), 7.0 / 60, 1e-6);
  EXPECT_NEAR(f.numbers.at("busy_seconds"), 7.0, 1e-5);
  EXPECT_EQ(f.numbers.at("calls"), 7);
  EXPECT_EQ(f.client, "aws-sdk-ruby");
  EXPECT_TRUE(Contains(f.evidence, "12 %")) << f.evidence;
  EXPECT_TRUE(Contains(f.evidence, "86 % of it in credentials calls")) << f.evidence;
  EXPECT_FALSE(Has(fresh, "healthy", diagnosis::kSlow));
  EXPECT_TRUE(FindingsOf(fresh, "healthy").empty());
}

// ---- Life cycle of a finding, for every kind ------------------------------------------

struct KindCase {
  std::string_view kind;
  std::function<void(Diagnoser&, FakeClock&)> feed;  // one burst of the behaviour for pod "sick"
};

std::vector<KindCase> KindCases() {
  return {
      {diagnosis::kHopLimit,
       [](Diagnoser& d, FakeClock&) {
         d.OnCall(kSick, "python3", TokenLost());
         d.OnCall(kSick, "python3", V1Get());
       }},
      {diagnosis::kRefreshStorm,
       [](Diagnoser& d, FakeClock& c) {
         for (int i = 0; i < 8; i++) d.OnCall(kSick, "java", Creds(c.ExpiryIn(900s)));
       }},
      {diagnosis::kThrottled,
       [](Diagnoser& d, FakeClock&) {
         for (int i = 0; i < 3; i++)
           d.OnCall(kSick, "node", Rec(Call::kMetadata, Version::kV2, Outcome::kThrottled, 429, Client::kJsV3, 0));
       }},
      {diagnosis::kImdsV1, [](Diagnoser& d, FakeClock&) { d.OnCall(kSick, "curl", V1Get(Client::kCurl)); }},
      {diagnosis::kSlow,
       [](Diagnoser& d, FakeClock&) {
         d.OnCall(kSick, "app", Rec(Call::kMetadata, Version::kV2, Outcome::kOk, 200, Client::kGoV2, 6.5));
       }},
  };
}

class KindLifecycle : public ::testing::TestWithParam<size_t> {};

TEST_P(KindLifecycle, AppearsOnceForTheSickPodAndClearsAWindowAfterItStops) {
  const KindCase c = KindCases()[GetParam()];
  FakeClock clock;
  Diagnoser diag(TestResolver, DiagnosisThresholds{}, clock.Clock());
  auto healthy = [&] {
    diag.OnCall(kHealthy, "python3", TokenOk());
    diag.OnCall(kHealthy, "python3", V2Get());
  };
  // The values of the pod's imds_diagnosis series for this kind.
  auto diagnosed = [&](const std::string& pod) {
    std::vector<double> values;
    const auto families = Scrape(diag);
    for (const ClientMetric* m : Find(Family(families, "imds_diagnosis"), {{"pod", pod}, {"kind", std::string(c.kind)}}))
      values.push_back(m->gauge.value);
    return values;
  };

  EXPECT_TRUE(diag.Evaluate().empty());
  c.feed(diag, clock);
  healthy();
  auto fresh = diag.Evaluate();
  ASSERT_TRUE(Has(fresh, "sick", c.kind)) << c.kind;
  EXPECT_TRUE(FindingsOf(fresh, "healthy").empty());
  ASSERT_EQ(diagnosed("sick").size(), 1u);
  EXPECT_EQ(diagnosed("sick")[0], 1);
  EXPECT_TRUE(diagnosed("healthy").empty());
  EXPECT_TRUE(Has(diag.Current(), "sick", c.kind));

  // Still going: current, but not new again.
  clock.Advance(20s);
  c.feed(diag, clock);
  healthy();
  fresh = diag.Evaluate();
  EXPECT_FALSE(Has(fresh, "sick", c.kind));
  EXPECT_TRUE(Has(diag.Current(), "sick", c.kind));
  EXPECT_FALSE(Has(diag.Evaluate(), "sick", c.kind));

  // Stopped: current until the last burst leaves the window, then cleared and the series gone.
  clock.Advance(50s);
  healthy();
  EXPECT_TRUE(diag.Evaluate().empty());
  EXPECT_TRUE(Has(diag.Current(), "sick", c.kind));
  clock.Advance(11s);
  healthy();
  EXPECT_TRUE(diag.Evaluate().empty());
  EXPECT_FALSE(Has(diag.Current(), "sick", c.kind));
  EXPECT_TRUE(diagnosed("sick").empty());

  // Back again: reported as new once more.
  c.feed(diag, clock);
  EXPECT_TRUE(Has(diag.Evaluate(), "sick", c.kind));
}

INSTANTIATE_TEST_SUITE_P(AllKinds, KindLifecycle, ::testing::Range<size_t>(0, 5),
                         [](const ::testing::TestParamInfo<size_t>& info) {
                           return std::string(KindCases()[info.param].kind);
                         });

TEST_F(DiagnoserTest, ThresholdsAreHonoured) {
  DiagnosisThresholds t;
  t.window = 120s;
  t.imdsv1_min_requests = 3;
  t.slow_min_share = 0.5;
  t.throttled_min_failures = 1;
  Diagnoser strict(TestResolver, t, clock.Clock());
  strict.OnCall(kSick, "curl", V1Get(Client::kCurl));
  strict.OnCall(kSick, "curl", V1Get(Client::kCurl));
  strict.OnCall(kSick, "app", Rec(Call::kMetadata, Version::kV2, Outcome::kTimeout, 0, Client::kGoV2, 50));
  auto fresh = strict.Evaluate();
  EXPECT_FALSE(Has(fresh, "sick", diagnosis::kImdsV1));
  EXPECT_FALSE(Has(fresh, "sick", diagnosis::kSlow));  // 50 s of 120 s
  EXPECT_TRUE(Has(fresh, "sick", diagnosis::kThrottled));
  EXPECT_EQ(Get(fresh, "sick", diagnosis::kThrottled).numbers.at("window_seconds"), 120);
  strict.OnCall(kSick, "curl", V1Get(Client::kCurl));
  strict.OnCall(kSick, "app", Rec(Call::kMetadata, Version::kV2, Outcome::kOk, 200, Client::kGoV2, 11));
  fresh = strict.Evaluate();
  EXPECT_TRUE(Has(fresh, "sick", diagnosis::kImdsV1));
  EXPECT_TRUE(Has(fresh, "sick", diagnosis::kSlow));
  // A 120 s window: 70 s later the behaviour still counts.
  clock.Advance(70s);
  strict.Evaluate();
  EXPECT_TRUE(Has(strict.Current(), "sick", diagnosis::kImdsV1));
  clock.Advance(60s);
  strict.Evaluate();
  EXPECT_TRUE(strict.Current().empty());
}

TEST_F(DiagnoserTest, OnlyProblemsNotCurrentBeforeAreNew) {
  diag.OnCall(kSick, "curl", V1Get(Client::kCurl));
  diag.OnCall(kOther, "curl", V1Get(Client::kCurl));
  auto fresh = diag.Evaluate();
  ASSERT_EQ(fresh.size(), 2u);
  EXPECT_EQ(fresh[0].who, Pod("other"));  // ordered by workload
  EXPECT_EQ(fresh[1].who, Pod("sick"));

  // New ones before, between and after the current ones, and a new kind for a current workload.
  clock.Advance(5s);
  diag.OnCall(kBusy, "curl", V1Get(Client::kCurl));
  diag.OnCall(kHealthy, "curl", V1Get(Client::kCurl));
  diag.OnCall(kSick, "app", Rec(Call::kMetadata, Version::kV2, Outcome::kOk, 200, Client::kGoV2, 6.5));
  diag.OnCall(99, "zz", V1Get(Client::kCurl));
  fresh = diag.Evaluate();
  std::vector<std::string> got;
  for (const Diagnosis& d : fresh) got.push_back(d.who.workload + "/" + std::string(d.kind));
  EXPECT_EQ(got, (std::vector<std::string>{"zz/imdsv1", "deploy-busy/imdsv1", "deploy-healthy/imdsv1",
                                           "deploy-sick/slow"}));  // no namespace sorts first
  EXPECT_EQ(diag.Current().size(), 6u);
  EXPECT_TRUE(diag.Evaluate().empty());
}

TEST_F(DiagnoserTest, ExplainedAsServed) {
  // Every kind, two clients in one owner (the second arrives once the first has counts).
  for (int i = 0; i < 10; i++) {
    diag.OnCall(kSick, "java", Creds(clock.ExpiryIn(900s)));
    diag.OnCall(kSick, "java", TokenLost(Client::kJavaV1));
    diag.OnCall(kSick, "java", V1Get(i < 4 ? Client::kJavaV1 : Client::kJavaV2));
    diag.OnCall(kSick, "java", Rec(Call::kMetadata, Version::kV2, Outcome::kThrottled, 429, Client::kJavaV2, 2));
    clock.Advance(1s);
  }
  const auto fresh = diag.Evaluate();
  ASSERT_EQ(fresh.size(), 5u);
  std::vector<Finding> explained;
  for (const Diagnosis& d : fresh) explained.push_back(Explain(d));
  EXPECT_EQ(diag.Current(), explained);
  EXPECT_EQ(diag.CurrentJson(), FindingsJson(explained));
  EXPECT_TRUE(Contains(Get(fresh, "sick", diagnosis::kImdsV1).evidence, "aws-sdk-java-v2 6, aws-sdk-java-v1 4"));
  EXPECT_EQ(Get(fresh, "sick", diagnosis::kThrottled).client, "aws-sdk-java-v1");  // 24 calls to 16
  EXPECT_EQ(FindingsJson({}), "[]");
  EXPECT_EQ(nlohmann::json::parse(diag.CurrentJson()).size(), 5u);
}

// ---- Metrics -----------------------------------------------------------------------

TEST_F(DiagnoserTest, CollectsExactlyTheThreeFamilies) {
  const auto families = Scrape(diag);
  ASSERT_EQ(families.size(), 3u);
  EXPECT_EQ(families[0].name, "imds_credentials_remaining_seconds");
  EXPECT_EQ(families[0].type, MetricType::Gauge);
  EXPECT_EQ(families[1].name, "imds_credential_fetch_interval_seconds");
  EXPECT_EQ(families[1].type, MetricType::Histogram);
  EXPECT_EQ(families[2].name, "imds_diagnosis");
  EXPECT_EQ(families[2].type, MetricType::Gauge);
  for (const auto& f : families) {
    EXPECT_FALSE(f.help.empty());
    EXPECT_TRUE(f.metric.empty());
  }
}

TEST_F(DiagnoserTest, RemainingLifetimeFallsWithTheClock) {
  diag.OnCall(kSick, "java", Creds(clock.ExpiryIn(900s), "app-role"));
  diag.OnCall(kSick, "java", Creds(clock.ExpiryIn(6h), "other-role"));
  FeedHealthy();
  auto families = Scrape(diag);
  const MetricFamily& remaining = Family(families, "imds_credentials_remaining_seconds");
  ASSERT_EQ(remaining.metric.size(), 3u);
  const ClientMetric& m = One(remaining, {{"pod", "sick"}, {"role", "app-role"}});
  const std::vector<ClientMetric::Label> want = {{"namespace", "ns"}, {"workload", "deploy-sick"}, {"pod", "sick"},
                                                 {"container", "app"}, {"role", "app-role"}};
  EXPECT_EQ(m.label, want);
  EXPECT_DOUBLE_EQ(m.gauge.value, 900);
  EXPECT_DOUBLE_EQ(One(remaining, {{"pod", "sick"}, {"role", "other-role"}}).gauge.value, 21600);
  EXPECT_DOUBLE_EQ(One(remaining, {{"pod", "healthy"}}).gauge.value, 21600);

  clock.Advance(100s);
  families = Scrape(diag);
  EXPECT_DOUBLE_EQ(One(Family(families, "imds_credentials_remaining_seconds"), {{"pod", "sick"}, {"role", "app-role"}})
                       .gauge.value,
                   800);
  clock.Advance(1000s);
  families = Scrape(diag);
  EXPECT_DOUBLE_EQ(One(Family(families, "imds_credentials_remaining_seconds"), {{"pod", "sick"}, {"role", "app-role"}})
                       .gauge.value,
                   -200);  // expired 200 s ago

  // A newer fetch replaces the value; a failed fetch or one without Expiration does not.
  diag.OnCall(kSick, "java", Creds(clock.ExpiryIn(3600s), "app-role"));
  CallRecord failed = Creds(clock.ExpiryIn(60s), "app-role");
  failed.sample.outcome = Outcome::kError;
  failed.sample.status = 500;
  diag.OnCall(kSick, "java", failed);
  diag.OnCall(kSick, "java", Creds("", "app-role"));
  families = Scrape(diag);
  EXPECT_DOUBLE_EQ(One(Family(families, "imds_credentials_remaining_seconds"), {{"pod", "sick"}, {"role", "app-role"}})
                       .gauge.value,
                   3600);
}

TEST_F(DiagnoserTest, RolesPerOwnerAreBounded) {
  for (size_t i = 0; i < Diagnoser::kMaxRolesPerOwner + 3; i++) {
    diag.OnCall(kSick, "java", Creds(clock.ExpiryIn(3600s), "role-" + std::to_string(i)));
    clock.Advance(1s);
  }
  diag.OnCall(kSick, "java", Creds(clock.ExpiryIn(3600s), std::string(1000, 'r')));
  const auto families = Scrape(diag);
  const MetricFamily& remaining = Family(families, "imds_credentials_remaining_seconds");
  ASSERT_EQ(remaining.metric.size(), Diagnoser::kMaxRolesPerOwner);
  std::set<std::string> roles;
  for (const auto& m : remaining.metric) roles.insert(LabelsOf(m).at("role"));
  EXPECT_TRUE(roles.count(std::string(Diagnoser::kMaxRoleLength, 'r')));  // cut, the newest kept
  EXPECT_TRUE(roles.count("role-" + std::to_string(Diagnoser::kMaxRolesPerOwner + 2)));
  EXPECT_FALSE(roles.count("role-0"));  // the least recently served went
}

TEST_F(DiagnoserTest, FetchIntervalHistogramBuckets) {
  // Intervals: 0.5 s, 5 s (on a bound: le is inclusive), 10 s, 100 s, 5000 s, 30000 s.
  const std::vector<std::chrono::milliseconds> gaps = {500ms, 5s, 10s, 100s, 5000s, 30000s};
  diag.OnCall(kSick, "java", Creds(clock.ExpiryIn(6h)));
  for (auto gap : gaps) {
    clock.Advance(gap);
    diag.OnCall(kSick, "java", Creds(clock.ExpiryIn(6h)));
  }
  // Failed fetches are not fetches; other calls are not either.
  CallRecord failed = Creds(clock.ExpiryIn(6h));
  failed.sample.outcome = Outcome::kThrottled;
  failed.sample.status = 429;
  diag.OnCall(kSick, "java", failed);
  diag.OnCall(kSick, "java", V2Get());
  diag.OnCall(kHealthy, "python3", Creds(clock.ExpiryIn(6h)));  // one fetch: no interval yet

  const auto families = Scrape(diag);
  const MetricFamily& intervals = Family(families, "imds_credential_fetch_interval_seconds");
  ASSERT_EQ(intervals.metric.size(), 1u);
  const ClientMetric& m = intervals.metric[0];
  const std::vector<ClientMetric::Label> want = {
      {"namespace", "ns"}, {"workload", "deploy-sick"}, {"pod", "sick"}, {"container", "app"}};
  EXPECT_EQ(m.label, want);
  EXPECT_EQ(m.histogram.sample_count, 6u);
  EXPECT_DOUBLE_EQ(m.histogram.sample_sum, 35115.5);
  ASSERT_EQ(m.histogram.bucket.size(), kFetchIntervalBuckets.size() + 1);
  const std::vector<uint64_t> cumulative = {1, 2, 3, 3, 3, 4, 4, 4, 4, 5, 6};
  for (size_t i = 0; i < cumulative.size(); i++) {
    EXPECT_EQ(m.histogram.bucket[i].cumulative_count, cumulative[i]) << "bucket " << i;
    if (i < kFetchIntervalBuckets.size()) {
      EXPECT_EQ(m.histogram.bucket[i].upper_bound, kFetchIntervalBuckets[i]);
    }
  }
  EXPECT_TRUE(std::isinf(m.histogram.bucket.back().upper_bound));

  const std::string text = Render(diag);
  EXPECT_TRUE(Contains(text, R"(imds_credential_fetch_interval_seconds_bucket{namespace="ns",workload="deploy-sick",)"
                             R"(pod="sick",container="app",le="15"} 3)"))
      << text;
}

TEST_F(DiagnoserTest, MalformedExpirationIsIgnoredAndCounted) {
  diag.OnCall(kSick, "java", Creds("not a time"));
  diag.OnCall(kSick, "java", Creds("2026-11-25T21:00:00"));  // no zone
  diag.OnCall(kSick, "java", Creds(""));                     // none: not malformed
  EXPECT_EQ(diag.MalformedExpirations(), 2u);
  EXPECT_TRUE(Family(Scrape(diag), "imds_credentials_remaining_seconds").metric.empty());
  // The fetches still count as fetches.
  const auto families = Scrape(diag);
  EXPECT_EQ(Family(families, "imds_credential_fetch_interval_seconds").metric.at(0).histogram.sample_count, 2u);
}

// ---- Owners ------------------------------------------------------------------------

TEST_F(DiagnoserTest, OwnersWithTheSameLabelsAreOneWorkload) {
  // The PUT is lost in one process, the v1 fallback comes from another, in a restarted cgroup of the pod.
  diag.OnCall(kSick, "python3", TokenLost());
  diag.OnCall(kSickRestarted, "aws", V1Get(Client::kAwsCli));
  diag.OnCall(kSick, "java", Creds(clock.ExpiryIn(900s), "app-role"));
  clock.Advance(10s);
  diag.OnCall(kSickRestarted, "java", Creds(clock.ExpiryIn(890s), "app-role"));
  diag.OnCall(kSickRestarted, "java", Creds(clock.ExpiryIn(890s), "app-role"));
  clock.Advance(1s);
  diag.OnCall(kSick, "java", Creds(clock.ExpiryIn(6h), "app-role"));
  EXPECT_EQ(diag.OwnerCount(), 4u);

  const auto fresh = diag.Evaluate();
  EXPECT_EQ(FindingsOf(fresh, "sick", diagnosis::kHopLimit).size(), 1u);
  EXPECT_EQ(Get(fresh, "sick", diagnosis::kImdsV1).client, "aws-cli");

  const auto families = Scrape(diag);
  const MetricFamily& remaining = Family(families, "imds_credentials_remaining_seconds");
  ASSERT_EQ(remaining.metric.size(), 1u);
  EXPECT_DOUBLE_EQ(remaining.metric[0].gauge.value, 21600);  // the credentials served last
  const MetricFamily& intervals = Family(families, "imds_credential_fetch_interval_seconds");
  ASSERT_EQ(intervals.metric.size(), 1u);
  EXPECT_EQ(intervals.metric[0].histogram.sample_count, 2u);  // 11 s in one owner, 0 s in the other
  EXPECT_DOUBLE_EQ(intervals.metric[0].histogram.sample_sum, 11);
  EXPECT_EQ(Family(families, "imds_diagnosis").metric.size(), fresh.size());
}

TEST_F(DiagnoserTest, UnresolvedOwnersAreNamedByTheirProcess) {
  diag.OnCall(99, "curl", V1Get(Client::kCurl));
  const auto fresh = diag.Evaluate();
  ASSERT_EQ(fresh.size(), 1u);
  EXPECT_EQ(fresh[0].who, (Workload{"", "curl", "", ""}));
}

TEST_F(DiagnoserTest, ResolverThatThrowsStillLabels) {
  Diagnoser d([](uint64_t, std::string_view) -> Workload { throw std::runtime_error("kube down"); },
              DiagnosisThresholds{}, clock.Clock());
  d.OnCall(7, "curl", V1Get(Client::kCurl));
  d.OnCall(7, "curl", Creds(clock.ExpiryIn(60s)));
  const auto fresh = d.Evaluate();
  ASSERT_FALSE(fresh.empty());
  EXPECT_EQ(fresh[0].who.workload, "curl");
  EXPECT_EQ(LabelsOf(Family(Scrape(d), "imds_credentials_remaining_seconds").metric.at(0)).at("workload"), "curl");
}

TEST_F(DiagnoserTest, ExpireGoneDropsDeadOwnersButKeepsTheirCounts) {
  std::set<uint64_t> alive = {kSick, kSickRestarted, kHealthy};
  auto is_alive = [&](uint64_t id) { return alive.count(id) > 0; };
  for (int i = 0; i < 3; i++) {
    diag.OnCall(kSick, "java", Creds(clock.ExpiryIn(3600s)));
    diag.OnCall(kSickRestarted, "java", Creds(clock.ExpiryIn(3600s)));
    diag.OnCall(kHealthy, "java", Creds(clock.ExpiryIn(3600s)));
    clock.Advance(10s);
  }
  auto count = [&](const std::string& pod) -> uint64_t {
    const auto families = Scrape(diag);
    const auto found = Find(Family(families, "imds_credential_fetch_interval_seconds"), {{"pod", pod}});
    return found.empty() ? 0 : found[0]->histogram.sample_count;
  };
  EXPECT_EQ(count("sick"), 4u);  // exported once: the labels are known
  EXPECT_EQ(count("healthy"), 2u);
  EXPECT_EQ(diag.OwnerCount(), 3u);

  alive = {kSickRestarted};
  const auto t0 = clock.steady;
  EXPECT_EQ(diag.ExpireGone(is_alive, t0, 60s), 0u);
  EXPECT_EQ(diag.ExpireGone(is_alive, t0 + 30s, 60s), 0u);
  EXPECT_EQ(diag.ExpireGone(is_alive, t0 + 61s, 60s), 2u);
  EXPECT_EQ(diag.OwnerCount(), 1u);
  EXPECT_EQ(count("sick"), 4u);     // the dead cgroup's counts stay while the pod lives on
  EXPECT_EQ(count("healthy"), 2u);  // and a gone pod's for ttl more
  EXPECT_TRUE(Find(Family(Scrape(diag), "imds_credentials_remaining_seconds"), {{"pod", "healthy"}}).empty());

  alive.clear();
  diag.ExpireGone(is_alive, t0 + 200s, 60s);
  EXPECT_EQ(count("healthy"), 0u);
  EXPECT_EQ(diag.ExpireGone(is_alive, t0 + 300s, 60s), 1u);
  EXPECT_EQ(diag.OwnerCount(), 0u);
  diag.ExpireGone(is_alive, t0 + 400s, 60s);
  EXPECT_EQ(count("sick"), 0u);  // retired counts go ttl after the last owner

  // An owner seen alive again is kept.
  diag.OnCall(kOther, "java", Creds(clock.ExpiryIn(3600s)));
  alive.clear();
  diag.ExpireGone(is_alive, t0 + 500s, 60s);
  alive = {kOther};
  EXPECT_EQ(diag.ExpireGone(is_alive, t0 + 600s, 60s), 0u);
  alive.clear();
  EXPECT_EQ(diag.ExpireGone(is_alive, t0 + 601s, 60s), 0u);  // its clock restarted
}

TEST_F(DiagnoserTest, OwnersAreCapped) {
  for (uint64_t id = 0; id < Diagnoser::kMaxOwners + 10; id++) diag.OnCall(1000 + id, "x", V2Get());
  EXPECT_EQ(diag.OwnerCount(), Diagnoser::kMaxOwners);
  EXPECT_EQ(diag.DroppedRecords(), 10u);
  diag.OnCall(1000, "x", V2Get());  // an existing owner still records
  EXPECT_EQ(diag.DroppedRecords(), 10u);
}

// ---- Nothing but the documented fields leaves the diagnoser ---------------------------

TEST_F(DiagnoserTest, OnlyDocumentedFieldsAreExported) {
  const std::string canary = "CANARY7f3a";
  auto poisoned = [&](CallRecord r) {
    r.method = canary + "-method";
    r.path = "/latest/meta-data/iam/security-credentials/" + canary + "-path";
    r.tgid = 4242;
    return r;
  };
  // Every kind for the sick pod, a valid and a malformed Expiration, canaries in role/path/method/expiry.
  for (int i = 0; i < 10; i++) {
    CallRecord c = poisoned(Creds(clock.ExpiryIn(900s), "role-" + canary, Client::kJavaV1));
    diag.OnCall(kSick, "java", c);
    diag.OnCall(kSick, "java", poisoned(Creds(canary + "-expiry", "role-" + canary)));
    diag.OnCall(kSick, "java", poisoned(Creds(clock.ExpiryIn(900s) + canary, "role-" + canary)));
    CallRecord lost = poisoned(TokenLost());
    lost.role = canary + "-token-role";  // a role on a non-credentials call is ignored
    lost.expiry = canary + "-token-expiry";
    diag.OnCall(kSick, "java", lost);
    diag.OnCall(kSick, "java", poisoned(V1Get()));
    diag.OnCall(kSick, "java", poisoned(Rec(Call::kMetadata, Version::kV2, Outcome::kThrottled, 429,
                                            Client::kJavaV1, 2)));
    CallRecord failed = poisoned(Creds(clock.ExpiryIn(900s), canary + "-failed-role"));
    failed.sample.outcome = Outcome::kError;
    failed.sample.status = 404;
    diag.OnCall(kSick, "java", failed);
    clock.Advance(1s);
  }
  diag.Evaluate();
  std::set<std::string> kinds;
  for (const Finding& f : diag.Current()) kinds.insert(f.kind);
  EXPECT_EQ(kinds, (std::set<std::string>{"hop_limit", "refresh_storm", "throttled", "imdsv1", "slow"}));

  const std::string json = diag.CurrentJson();
  EXPECT_FALSE(Contains(json, canary)) << json;
  EXPECT_FALSE(Contains(json, "4242"));
  for (const Finding& f : diag.Current())
    for (const std::string* s : {&f.kind, &f.client, &f.evidence, &f.cause, &f.fix}) EXPECT_FALSE(Contains(*s, canary));

  // Metrics: every label is a documented one; values come from the resolver, the kind
  // vocabulary, or the role of a successful credentials fetch whose Expiration parsed.
  const auto families = Scrape(diag);
  const std::set<std::string> workload_labels = {"namespace", "workload", "pod", "container"};
  const Workload sick = Pod("sick");
  const Labels sick_labels = {{"namespace", sick.namespace_name}, {"workload", sick.workload},
                              {"pod", sick.pod}, {"container", sick.container}};
  for (const MetricFamily& f : families) {
    for (const ClientMetric& m : f.metric) {
      for (const auto& l : m.label) {
        if (workload_labels.count(l.name)) {
          EXPECT_EQ(sick_labels.at(l.name), l.value);
        } else if (l.name == "role") {
          EXPECT_EQ(f.name, "imds_credentials_remaining_seconds");
          EXPECT_EQ(l.value, "role-" + canary);
        } else if (l.name == "kind") {
          EXPECT_EQ(f.name, "imds_diagnosis");
          EXPECT_TRUE(kinds.count(l.value)) << l.value;
        } else {
          ADD_FAILURE() << f.name << " has undocumented label " << l.name << "=" << l.value;
        }
      }
    }
  }
  // In the text exposition the canary appears only inside that role label.
  const std::string text = Render(diag);
  size_t hits = 0, role_hits = 0;
  for (size_t pos = text.find(canary); pos != std::string::npos; pos = text.find(canary, pos + 1)) hits++;
  const std::string role_label = "role=\"role-" + canary + "\"";
  for (size_t pos = text.find(role_label); pos != std::string::npos; pos = text.find(role_label, pos + 1)) role_hits++;
  EXPECT_EQ(role_hits, 1u) << text;
  EXPECT_EQ(hits, role_hits) << text;
  EXPECT_EQ(diag.MalformedExpirations(), 20u);
}

// ---- Threads -----------------------------------------------------------------------

TEST(DiagnoserThreads, RecordsWhileOthersCollectAndEvaluate) {
  Diagnoser diag(TestResolver, DiagnosisThresholds{}, DiagnoserClock::System());
  std::atomic<bool> stop{false}, collecting{false};
  std::thread writer([&] {
    const auto expiry = ParseExpiration("2099-01-01T00:00:00Z");
    ASSERT_TRUE(expiry.has_value());
    while (!collecting) std::this_thread::yield();  // on a busy machine it could otherwise finish first
    for (int i = 0; i < 20000; i++) {
      const uint64_t cgroup = 1 + i % 4;
      diag.OnCall(cgroup, "w", i % 3 ? V1Get() : Creds("2099-01-01T00:00:00Z"));
      if (i % 100 == 0) diag.OnConnection(cgroup, "w", ConnOutcome::kTimeout);
    }
    stop = true;
  });
  std::thread evaluator([&] {
    while (!stop) diag.Evaluate();
  });
  size_t collects = 0;
  while (!stop) {
    collecting = true;
    const auto families = Scrape(diag);
    EXPECT_EQ(families.size(), 3u);
    (void)diag.CurrentJson();
    collects++;
  }
  writer.join();
  evaluator.join();
  diag.Evaluate();
  EXPECT_TRUE(Has(diag.Current(), "sick", diagnosis::kImdsV1));
  EXPECT_GT(collects, 0u);
}

}  // namespace
}  // namespace imdswatch
