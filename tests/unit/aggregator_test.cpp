#include "imdswatch/aggregator.h"

#include <gtest/gtest.h>

#include "exposition.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace imdswatch {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;
using exposition::Render;
using namespace exposition;
using Clock = std::chrono::steady_clock;

Workload Pod(std::string ns, std::string workload, std::string pod, std::string container) {
  return Workload{std::move(ns), std::move(workload), std::move(pod), std::move(container)};
}

CallSample Sample(Call call, Version version, Outcome outcome, uint16_t status, Client client, double seconds) {
  CallSample s;
  s.call = call;
  s.version = version;
  s.outcome = outcome;
  s.status = status;
  s.client = client;
  s.duration_seconds = seconds;
  return s;
}

// Every cgroup is its own pod "pod-<id>" in namespace "ns".
Workload PodPerCgroup(uint64_t cgroup_id, std::string_view) {
  const std::string id = std::to_string(cgroup_id);
  return Pod("ns", "deploy-" + id, "pod-" + id, "app");
}

TEST(Aggregator, ExportsExactCountsAndLabels) {
  Aggregator agg(PodPerCgroup);
  const CallSample creds = Sample(Call::kCredentials, Version::kV2, Outcome::kOk, 200, Client::kBotocore, 0.002);
  for (int i = 0; i < 3; i++) agg.RecordCall(7, "python3", creds);
  agg.RecordCall(7, "python3", Sample(Call::kToken, Version::kV2, Outcome::kOk, 200, Client::kBotocore, 0.001));

  const auto families = Scrape(agg);
  ASSERT_EQ(families.size(), 4u);
  const MetricFamily& requests = Family(families, "imds_requests_total");
  EXPECT_EQ(requests.type, MetricType::Counter);
  EXPECT_FALSE(requests.help.empty());
  ASSERT_EQ(requests.metric.size(), 2u);
  const ClientMetric& m = One(requests, {{"call", "credentials"}});
  const std::vector<ClientMetric::Label> want = {
      {"namespace", "ns"}, {"workload", "deploy-7"}, {"pod", "pod-7"}, {"container", "app"}, {"call", "credentials"},
      {"version", "v2"},   {"outcome", "ok"},        {"code", "200"},  {"client", "botocore"}};
  EXPECT_EQ(m.label, want);
  EXPECT_EQ(m.counter.value, 3);
  EXPECT_EQ(One(requests, {{"call", "token"}}).counter.value, 1);

  const MetricFamily& durations = Family(families, "imds_request_duration_seconds");
  EXPECT_EQ(durations.type, MetricType::Histogram);
  EXPECT_FALSE(durations.help.empty());
  ASSERT_EQ(durations.metric.size(), 2u);
  const ClientMetric& h = One(durations, {{"call", "credentials"}});
  const std::vector<ClientMetric::Label> want_h = {{"namespace", "ns"}, {"workload", "deploy-7"}, {"pod", "pod-7"},
                                                   {"container", "app"}, {"call", "credentials"}, {"outcome", "ok"}};
  EXPECT_EQ(h.label, want_h);
  EXPECT_EQ(h.histogram.sample_count, 3u);
  EXPECT_DOUBLE_EQ(h.histogram.sample_sum, 0.006);

  EXPECT_TRUE(Family(families, "imds_connections_total").metric.empty());
  EXPECT_EQ(Family(families, "imds_connections_total").type, MetricType::Counter);
  const MetricFamily& retransmits = Family(families, "imds_tcp_retransmits_total");
  EXPECT_EQ(retransmits.type, MetricType::Counter);
  ASSERT_EQ(retransmits.metric.size(), 1u);  // present at zero for every exported label set
  EXPECT_EQ(retransmits.metric[0].counter.value, 0);
  EXPECT_EQ(LabelsOf(retransmits.metric[0]).size(), 4u);
}

TEST(Aggregator, RendersPrometheusText) {
  Aggregator agg(PodPerCgroup);
  agg.RecordCall(7, "java", Sample(Call::kCredentials, Version::kV1, Outcome::kOk, 200, Client::kJavaV1, 0.003));
  agg.RecordCall(7, "java", Sample(Call::kCredentials, Version::kV1, Outcome::kOk, 200, Client::kJavaV1, 0.02));
  agg.RecordConnection(7, "java", ConnOutcome::kEstablished);
  agg.RecordConnection(7, "java", ConnOutcome::kEstablished);
  agg.RecordConnection(7, "java", ConnOutcome::kRefused);
  agg.RecordRetransmit(7, "java");

  const std::string text = Render(agg);
  const std::string pod = R"(namespace="ns",workload="deploy-7",pod="pod-7",container="app")";
  for (const std::string& line : std::vector<std::string>{
           "# TYPE imds_requests_total counter",
           "imds_requests_total{" + pod +
               R"(,call="credentials",version="v1",outcome="ok",code="200",client="aws-sdk-java-v1"} 2)",
           "# TYPE imds_request_duration_seconds histogram",
           "imds_request_duration_seconds_count{" + pod + R"(,call="credentials",outcome="ok"} 2)",
           "imds_request_duration_seconds_sum{" + pod + R"(,call="credentials",outcome="ok"} 0.023)",
           "imds_request_duration_seconds_bucket{" + pod + R"(,call="credentials",outcome="ok",le="0.0025"} 0)",
           "imds_request_duration_seconds_bucket{" + pod + R"(,call="credentials",outcome="ok",le="0.005"} 1)",
           "imds_request_duration_seconds_bucket{" + pod + R"(,call="credentials",outcome="ok",le="0.025"} 2)",
           "imds_request_duration_seconds_bucket{" + pod + R"(,call="credentials",outcome="ok",le="+Inf"} 2)",
           "# TYPE imds_connections_total counter",
           "imds_connections_total{" + pod + R"(,outcome="established"} 2)",
           "imds_connections_total{" + pod + R"(,outcome="refused"} 1)",
           "# TYPE imds_tcp_retransmits_total counter",
           "imds_tcp_retransmits_total{" + pod + "} 1",
       }) {
    EXPECT_NE(text.find(line + "\n"), std::string::npos) << "missing: " << line << "\nin:\n" << text;
  }
  EXPECT_EQ(text.find(R"(outcome="timeout")"), std::string::npos);  // no zero series for outcomes never seen
}

TEST(Aggregator, CodeIsEmptyWhenNoResponseArrived) {
  Aggregator agg(PodPerCgroup);
  agg.RecordCall(1, "node", Sample(Call::kToken, Version::kV2, Outcome::kTimeout, 0, Client::kUnknown, 1.0));
  agg.RecordCall(1, "node", Sample(Call::kToken, Version::kV2, Outcome::kReset, 0, Client::kUnknown, 0.2));
  agg.RecordCall(1, "node", Sample(Call::kToken, Version::kV2, Outcome::kThrottled, 429, Client::kUnknown, 0.2));
  const auto families = Scrape(agg);
  const MetricFamily& requests = Family(families, "imds_requests_total");
  EXPECT_EQ(LabelsOf(One(requests, {{"outcome", "timeout"}})).at("code"), "");
  EXPECT_EQ(LabelsOf(One(requests, {{"outcome", "reset"}})).at("code"), "");
  EXPECT_EQ(LabelsOf(One(requests, {{"outcome", "throttled"}})).at("code"), "429");
  EXPECT_NE(Render(agg).find(R"(outcome="timeout",code="",client="unknown"} 1)"), std::string::npos);
}

TEST(Aggregator, MergesOwnersThatResolveToTheSameLabels) {
  // Two processes of one container, and a second cgroup of the same pod
  // container (a restart): one series each, summed.
  Aggregator agg([](uint64_t cgroup_id, std::string_view) {
    return cgroup_id == 3 ? Pod("ns", "other", "other-pod", "app") : Pod("ns", "api", "api-7d9f", "app");
  });
  const CallSample ok = Sample(Call::kCredentials, Version::kV2, Outcome::kOk, 200, Client::kGoV2, 0.004);
  agg.RecordCall(1, "api-server", ok);
  agg.RecordCall(1, "api-server", ok);
  agg.RecordCall(1, "aws", Sample(Call::kCredentials, Version::kV2, Outcome::kOk, 200, Client::kAwsCli, 0.004));
  agg.RecordCall(2, "api-server", ok);
  agg.RecordCall(3, "api-server", ok);
  agg.RecordConnection(1, "api-server", ConnOutcome::kEstablished);
  agg.RecordConnection(2, "api-server", ConnOutcome::kEstablished);
  agg.RecordRetransmit(1, "aws");
  agg.RecordRetransmit(2, "api-server");
  EXPECT_EQ(agg.OwnerCount(), 4u);

  const auto families = Scrape(agg);
  const MetricFamily& requests = Family(families, "imds_requests_total");
  EXPECT_EQ(requests.metric.size(), 3u);
  EXPECT_EQ(One(requests, {{"pod", "api-7d9f"}, {"client", "aws-sdk-go-v2"}}).counter.value, 3);
  EXPECT_EQ(One(requests, {{"pod", "api-7d9f"}, {"client", "aws-cli"}}).counter.value, 1);
  EXPECT_EQ(One(requests, {{"pod", "other-pod"}}).counter.value, 1);
  const MetricFamily& durations = Family(families, "imds_request_duration_seconds");
  EXPECT_EQ(One(durations, {{"pod", "api-7d9f"}}).histogram.sample_count, 4u);
  EXPECT_DOUBLE_EQ(One(durations, {{"pod", "api-7d9f"}}).histogram.sample_sum, 0.016);
  EXPECT_EQ(One(Family(families, "imds_connections_total"), {{"pod", "api-7d9f"}}).counter.value, 2);
  EXPECT_EQ(One(Family(families, "imds_tcp_retransmits_total"), {{"pod", "api-7d9f"}}).counter.value, 2);
  EXPECT_EQ(One(Family(families, "imds_tcp_retransmits_total"), {{"pod", "other-pod"}}).counter.value, 0);
}

TEST(Aggregator, HistogramBucketsAreCumulativeWithInfSumAndCount) {
  Aggregator agg(PodPerCgroup);
  const std::vector<double> seconds = {
      0,       // first bucket
      0.0005,  // on a bound: le is inclusive
      0.0007,  // 0.001
      0.003,   // 0.005
      0.3,     // 0.5
      10,      // last finite bound
      10.5,    // +Inf only
      60,      // +Inf only
      -1,      // clock skew: counted as 0
      std::numeric_limits<double>::quiet_NaN(),  // counted as 0
  };
  for (double s : seconds)
    agg.RecordCall(1, "x", Sample(Call::kMetadata, Version::kV1, Outcome::kOk, 200, Client::kCurl, s));

  const auto families = Scrape(agg);
  const ClientMetric& h = One(Family(families, "imds_request_duration_seconds"), {{"call", "metadata"}});
  ASSERT_EQ(h.histogram.bucket.size(), kDurationBuckets.size() + 1);
  const std::vector<uint64_t> want = {4, 5, 5, 6, 6, 6, 6, 6, 6, 7, 7, 7, 7, 8, 10};
  for (size_t i = 0; i < want.size(); i++) {
    if (i < kDurationBuckets.size()) {
      EXPECT_EQ(h.histogram.bucket[i].upper_bound, kDurationBuckets[i]);
    } else {
      EXPECT_TRUE(std::isinf(h.histogram.bucket[i].upper_bound));
    }
    EXPECT_EQ(h.histogram.bucket[i].cumulative_count, want[i]) << "bucket " << i;
  }
  EXPECT_EQ(h.histogram.sample_count, 10u);
  EXPECT_DOUBLE_EQ(h.histogram.sample_sum, 0.0005 + 0.0007 + 0.003 + 0.3 + 10 + 10.5 + 60);
  const std::string text = Render(agg);
  EXPECT_NE(text.find(R"(le="+Inf"} 10)"), std::string::npos) << text;
  EXPECT_NE(text.find(R"(le="10"} 8)"), std::string::npos) << text;
}

TEST(Aggregator, SeparatesHistogramsByCallAndOutcome) {
  Aggregator agg(PodPerCgroup);
  agg.RecordCall(1, "x", Sample(Call::kToken, Version::kV2, Outcome::kOk, 200, Client::kRuby, 0.001));
  agg.RecordCall(1, "x", Sample(Call::kToken, Version::kV2, Outcome::kTimeout, 0, Client::kRuby, 1.0));
  agg.RecordCall(1, "x", Sample(Call::kCredentials, Version::kV1, Outcome::kOk, 200, Client::kRuby, 0.001));
  const auto families = Scrape(agg);
  const MetricFamily& durations = Family(families, "imds_request_duration_seconds");
  EXPECT_EQ(durations.metric.size(), 3u);
  EXPECT_EQ(One(durations, {{"call", "token"}, {"outcome", "timeout"}}).histogram.sample_count, 1u);
  EXPECT_DOUBLE_EQ(One(durations, {{"call", "token"}, {"outcome", "timeout"}}).histogram.sample_sum, 1.0);
  EXPECT_EQ(One(durations, {{"call", "token"}, {"outcome", "ok"}}).histogram.sample_count, 1u);
  EXPECT_EQ(One(durations, {{"call", "credentials"}, {"outcome", "ok"}}).histogram.sample_count, 1u);
}

TEST(Aggregator, LabelValuesAreEscapedWhenRendered) {
  Aggregator agg([](uint64_t, std::string_view) {
    return Pod("ns\"quoted\"", "back\\slash", "new\nline", "tab\tand \xc3\xa9");
  });
  agg.RecordCall(1, "x", Sample(Call::kMetadata, Version::kV1, Outcome::kOk, 200, Client::kCurl, 0.001));
  const auto families = Scrape(agg);
  EXPECT_EQ(LabelsOf(One(Family(families, "imds_requests_total"), {})).at("pod"), "new\nline");
  const std::string text = Render(agg);
  EXPECT_NE(text.find(R"(imds_requests_total{namespace="ns\"quoted\"",workload="back\\slash",pod="new\nline",)"),
            std::string::npos)
      << text;
  // every sample stays on one line: no raw newline inside a label value
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);)
    EXPECT_TRUE(line.rfind("imds_", 0) == 0 || line.rfind("# ", 0) == 0) << "broken line: " << line;
}

TEST(Aggregator, CallsTheResolverOncePerOwnerPerCollect) {
  std::atomic<int> calls{0};
  std::vector<std::pair<uint64_t, std::string>> seen;
  std::mutex seen_mu;
  Aggregator agg([&](uint64_t cgroup_id, std::string_view comm) {
    calls++;
    std::lock_guard<std::mutex> lock(seen_mu);
    seen.emplace_back(cgroup_id, std::string(comm));
    return Pod("ns", "w", "p", "c");
  });
  const CallSample s = Sample(Call::kMetadata, Version::kV1, Outcome::kOk, 200, Client::kCurl, 0.001);
  for (int i = 0; i < 10; i++) {
    agg.RecordCall(1, "curl", s);
    agg.RecordCall(1, "bash", s);
    agg.RecordCall(2, "curl", s);
  }
  Scrape(agg);
  EXPECT_EQ(calls.load(), 3);
  Scrape(agg);
  EXPECT_EQ(calls.load(), 6);
  std::set<std::pair<uint64_t, std::string>> distinct(seen.begin(), seen.end());
  EXPECT_EQ(distinct, (std::set<std::pair<uint64_t, std::string>>{{1, "bash"}, {1, "curl"}, {2, "curl"}}));
}

TEST(Aggregator, LabelsAtScrapeTimeSoLateNamesApply) {
  std::atomic<bool> known{false};
  Aggregator agg([&](uint64_t, std::string_view comm) {
    return known ? Pod("payments", "billing", "billing-5c4f", "worker") : Pod("", std::string(comm), "", "");
  });
  agg.RecordCall(9, "billing", Sample(Call::kCredentials, Version::kV2, Outcome::kOk, 200, Client::kJsV3, 0.001));
  EXPECT_EQ(One(Family(Scrape(agg), "imds_requests_total"), {{"workload", "billing"}, {"pod", ""}}).counter.value,
            1);
  known = true;  // the pod's names arrive from the Kubernetes API
  const auto families = Scrape(agg);
  EXPECT_EQ(One(Family(families, "imds_requests_total"), {{"namespace", "payments"}, {"pod", "billing-5c4f"}})
                .counter.value,
            1);
  EXPECT_EQ(Family(families, "imds_requests_total").metric.size(), 1u);
}

TEST(Aggregator, CommIsAFixedSixteenByteKey) {
  std::vector<std::string> comms;
  Aggregator agg([&](uint64_t, std::string_view comm) {
    comms.emplace_back(comm);
    return Pod("ns", "w", "p", "c");
  });
  const CallSample s = Sample(Call::kMetadata, Version::kV1, Outcome::kOk, 200, Client::kCurl, 0.001);
  agg.RecordCall(1, "a-very-long-process-name", s);
  agg.RecordCall(1, "a-very-long-proc", s);  // the same 16 bytes
  agg.RecordCall(1, std::string_view("curl\0\0\0\0\0\0\0\0\0\0\0\0", 16), s);  // as the kernel hands it over
  agg.RecordCall(1, "curl", s);
  EXPECT_EQ(agg.OwnerCount(), 2u);
  Scrape(agg);
  std::sort(comms.begin(), comms.end());
  EXPECT_EQ(comms, (std::vector<std::string>{"a-very-long-proc", "curl"}));
}

TEST(Aggregator, ResolverFailureStillExports) {
  Aggregator agg([](uint64_t cgroup_id, std::string_view) -> Workload {
    if (cgroup_id == 1) throw std::runtime_error("api down");
    return Workload{};
  });
  const CallSample s = Sample(Call::kMetadata, Version::kV1, Outcome::kOk, 200, Client::kCurl, 0.001);
  agg.RecordCall(1, "curl", s);
  agg.RecordCall(2, "wget", s);
  const auto families = Scrape(agg);
  // the process name stands in, so the series is never an all-empty label set
  EXPECT_EQ(One(Family(families, "imds_requests_total"), {{"workload", "curl"}}).counter.value, 1);
  EXPECT_EQ(One(Family(families, "imds_requests_total"), {{"workload", "wget"}}).counter.value, 1);
}

TEST(Aggregator, ExpiresOwnersGoneLongerThanTtl) {
  Aggregator agg(PodPerCgroup);
  const CallSample s = Sample(Call::kMetadata, Version::kV1, Outcome::kOk, 200, Client::kCurl, 0.001);
  agg.RecordCall(1, "a", s);
  agg.RecordCall(1, "b", s);
  agg.RecordCall(2, "a", s);
  agg.RecordCall(3, "a", s);
  std::set<uint64_t> gone = {1, 2};
  std::map<uint64_t, int> checks;
  auto alive = [&](uint64_t cgroup_id) {
    checks[cgroup_id]++;
    return gone.count(cgroup_id) == 0;
  };
  const auto t0 = Clock::now();
  const std::chrono::seconds ttl(60);

  EXPECT_EQ(agg.ExpireGone(alive, t0, ttl), 0u);  // gone from now on
  EXPECT_EQ(checks, (std::map<uint64_t, int>{{1, 1}, {2, 1}, {3, 1}}));  // once per cgroup, not per owner
  EXPECT_EQ(agg.ExpireGone(alive, t0 + std::chrono::seconds(30), ttl), 0u);  // gone < ttl: kept
  EXPECT_EQ(agg.OwnerCount(), 4u);
  gone.erase(2);  // seen alive again: its clock stops
  EXPECT_EQ(agg.ExpireGone(alive, t0 + std::chrono::seconds(45), ttl), 0u);
  gone.insert(2);  // ...and restarts from here
  EXPECT_EQ(agg.ExpireGone(alive, t0 + std::chrono::seconds(50), ttl), 0u);
  EXPECT_EQ(agg.ExpireGone(alive, t0 + std::chrono::seconds(60), ttl), 0u);  // exactly ttl: kept
  EXPECT_EQ(agg.ExpireGone(alive, t0 + std::chrono::seconds(61), ttl), 2u);  // cgroup 1, both comms
  EXPECT_EQ(agg.OwnerCount(), 2u);
  EXPECT_EQ(agg.ExpireGone(alive, t0 + std::chrono::seconds(111), ttl), 1u);  // cgroup 2: 61 s since 50
  EXPECT_EQ(agg.OwnerCount(), 1u);

  const auto families = Scrape(agg);
  EXPECT_EQ(Family(families, "imds_requests_total").metric.size(), 1u);
  EXPECT_EQ(One(Family(families, "imds_requests_total"), {}).counter.value, 1);
  EXPECT_EQ(LabelsOf(One(Family(families, "imds_requests_total"), {})).at("pod"), "pod-3");

  // a late record recreates the owner from zero
  agg.RecordCall(1, "a", s);
  EXPECT_EQ(agg.OwnerCount(), 2u);
}

TEST(Aggregator, ExportedCountersNeverGoDownWhenAnOwnerExpires) {
  // A container restarts: its new cgroup exports under the same labels as the
  // old one. Dropping the old cgroup must not lower the exported counters.
  Aggregator agg([](uint64_t, std::string_view) { return Pod("ns", "api", "api-1", "app"); });
  const CallSample s = Sample(Call::kCredentials, Version::kV2, Outcome::kOk, 200, Client::kGoV2, 0.004);
  for (int i = 0; i < 5; i++) agg.RecordCall(1, "api", s);
  agg.RecordConnection(1, "api", ConnOutcome::kEstablished);
  agg.RecordRetransmit(1, "api");
  Scrape(agg);  // exported under api-1
  for (int i = 0; i < 2; i++) agg.RecordCall(2, "api", s);
  auto families = Scrape(agg);
  EXPECT_EQ(One(Family(families, "imds_requests_total"), {}).counter.value, 7);

  std::set<uint64_t> gone = {1};
  auto alive = [&](uint64_t cgroup_id) { return gone.count(cgroup_id) == 0; };
  const auto t0 = Clock::now();
  const std::chrono::seconds ttl(10);
  agg.ExpireGone(alive, t0, ttl);
  EXPECT_EQ(agg.ExpireGone(alive, t0 + std::chrono::seconds(11), ttl), 1u);
  EXPECT_EQ(agg.OwnerCount(), 1u);
  agg.RecordCall(2, "api", s);
  families = Scrape(agg);
  EXPECT_EQ(One(Family(families, "imds_requests_total"), {}).counter.value, 8);
  EXPECT_EQ(One(Family(families, "imds_request_duration_seconds"), {}).histogram.sample_count, 8u);
  EXPECT_EQ(One(Family(families, "imds_connections_total"), {}).counter.value, 1);
  EXPECT_EQ(One(Family(families, "imds_tcp_retransmits_total"), {}).counter.value, 1);

  // the pod goes for good: its series disappears a ttl after its last owner
  gone.insert(2);
  agg.ExpireGone(alive, t0 + std::chrono::seconds(20), ttl);
  EXPECT_EQ(agg.ExpireGone(alive, t0 + std::chrono::seconds(31), ttl), 1u);
  EXPECT_EQ(agg.OwnerCount(), 0u);
  EXPECT_EQ(CounterSum(Family(Scrape(agg), "imds_requests_total")), 8);  // orphaned, within ttl
  agg.ExpireGone(alive, t0 + std::chrono::seconds(42), ttl);
  families = Scrape(agg);
  for (const auto& f : families) EXPECT_TRUE(f.metric.empty()) << f.name;
}

TEST(Aggregator, OwnerNeverExportedLeavesNothingBehind) {
  Aggregator agg(PodPerCgroup);
  agg.RecordCall(1, "a", Sample(Call::kMetadata, Version::kV1, Outcome::kOk, 200, Client::kCurl, 0.001));
  auto dead = [](uint64_t) { return false; };
  const auto t0 = Clock::now();
  agg.ExpireGone(dead, t0, std::chrono::seconds(1));
  EXPECT_EQ(agg.ExpireGone(dead, t0 + std::chrono::seconds(2), std::chrono::seconds(1)), 1u);
  for (const auto& f : Scrape(agg)) EXPECT_TRUE(f.metric.empty()) << f.name;
}

TEST(Aggregator, CapsOwnersAndCountsWhatItDrops) {
  Aggregator agg(PodPerCgroup);
  for (uint64_t id = 1; id <= Aggregator::kMaxOwners; id++) agg.RecordRetransmit(id, "x");
  EXPECT_EQ(agg.OwnerCount(), Aggregator::kMaxOwners);
  EXPECT_EQ(agg.DroppedRecords(), 0u);
  agg.RecordRetransmit(Aggregator::kMaxOwners + 1, "x");
  agg.RecordCall(Aggregator::kMaxOwners + 1, "x", CallSample{});
  agg.RecordConnection(Aggregator::kMaxOwners + 1, "x", ConnOutcome::kTimeout);
  EXPECT_EQ(agg.OwnerCount(), Aggregator::kMaxOwners);
  EXPECT_EQ(agg.DroppedRecords(), 3u);
  agg.RecordRetransmit(1, "x");  // existing owners still count
  EXPECT_EQ(agg.DroppedRecords(), 3u);
}

TEST(Aggregator, ManyDistinctSeriesPerOwner) {
  // every (call, version, outcome, client) with a few codes: the per-owner table grows
  Aggregator agg(PodPerCgroup);
  size_t distinct = 0;
  for (int call = 0; call <= static_cast<int>(Call::kOther); call++)
    for (int client = 0; client <= static_cast<int>(Client::kUnknown); client++)
      for (uint16_t code : {200, 404, 500}) {
        agg.RecordCall(1, "x",
                       Sample(static_cast<Call>(call), Version::kV2, OutcomeForStatus(code), code,
                              static_cast<Client>(client), 0.001));
        distinct++;
      }
  for (int call = 0; call <= static_cast<int>(Call::kOther); call++)
    agg.RecordCall(1, "x", Sample(static_cast<Call>(call), Version::kV2, Outcome::kOk, 200, Client::kCurl, 0.001));
  const auto families = Scrape(agg);
  const MetricFamily& requests = Family(families, "imds_requests_total");
  EXPECT_EQ(requests.metric.size(), distinct);
  EXPECT_EQ(CounterSum(requests), static_cast<double>(distinct + static_cast<int>(Call::kOther) + 1));
  EXPECT_EQ(One(requests, {{"call", "user_data"}, {"client", "curl"}, {"code", "200"}}).counter.value, 2);
}

TEST(Aggregator, RecordsWhileCollecting) {
  Aggregator agg([](uint64_t cgroup_id, std::string_view) {
    return Pod("ns", "w", "pod-" + std::to_string(cgroup_id % 4), "c");
  });
  constexpr int kRecords = 200000;
  std::atomic<bool> done{false};
  std::thread writer([&] {
    const CallSample s = Sample(Call::kCredentials, Version::kV2, Outcome::kOk, 200, Client::kBotocore, 0.002);
    for (int i = 0; i < kRecords; i++) {
      agg.RecordCall(static_cast<uint64_t>(i % 8), i % 3 ? "python3" : "aws", s);
      if (i % 100 == 0) agg.RecordRetransmit(static_cast<uint64_t>(i % 8), "python3");
    }
    done = true;
  });
  std::vector<std::thread> readers;
  std::atomic<int> collects{0};
  for (int r = 0; r < 2; r++) {
    readers.emplace_back([&] {
      double last = 0;
      while (!done) {
        const auto families = Scrape(agg);
        const double total = CounterSum(Family(families, "imds_requests_total"));
        EXPECT_GE(total, last);  // monotonic as seen by one scraper
        last = total;
        std::set<std::vector<ClientMetric::Label>> seen;
        for (const auto& m : Family(families, "imds_requests_total").metric)
          EXPECT_TRUE(seen.insert(m.label).second);
        collects++;
      }
    });
  }
  writer.join();
  for (auto& t : readers) t.join();
  const auto families = Scrape(agg);
  EXPECT_EQ(CounterSum(Family(families, "imds_requests_total")), kRecords);
  EXPECT_EQ(Family(families, "imds_requests_total").metric.size(), 4u);
  EXPECT_EQ(CounterSum(Family(families, "imds_tcp_retransmits_total")), kRecords / 100);
  EXPECT_GT(collects.load(), 0);
}

}  // namespace
}  // namespace imdswatch
