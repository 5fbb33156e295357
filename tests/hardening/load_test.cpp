// Load: 50 pods (kubelet-style cgroups) making 1,000 metadata requests/s
// together for 12 s, on keep-alive connections, against the loopback
// stand-in, with the agent watching. Every request must be counted exactly:
// the agent's imds_requests_total, summed over the pods and per pod (and per
// call), equals what the load generator completed and what the stand-in
// itself counted, with nothing lost (imdswatch_events_lost_total) and a
// latency for each. Prints the rate achieved, the agent's CPU (% of one core)
// and resident memory, and p50/p99 from its histogram.
//
// The load generator is tests/fixtures/imds_load_client.cpp, one process in
// each pod's cgroup at 20 requests/s: token PUT, role list, credentials,
// metadata and dynamic GETs with the token, and IMDSv1 GETs.
#include <gtest/gtest.h>

#include <time.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <thread>

#include <nlohmann/json.hpp>

#include "hardening/hardening.h"

namespace imdswatch::testing {
namespace {

constexpr int kPods = 50;
constexpr int kRatePerPod = 20;  // requests/s; 1,000 requests/s together
constexpr int kSeconds = 12;
constexpr int kRequestsPerConnection = 100;  // then a new connection, as SDKs do now and then
constexpr double kMinShareOfRate = 0.9;

class LoadTest : public ::testing::Test {
 protected:
  void SetUp() override { HARDENING_REQUIRE_KERNEL(); }
};

int64_t MonotonicNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

// Prometheus' histogram_quantile over the buckets of every series of `name` added together.
double HistogramQuantile(const std::vector<Sample>& s, const std::string& name, double q) {
  std::map<double, double> cumulative;  // le -> count
  for (const auto& sample : s) {
    if (sample.name != name + "_bucket") continue;
    const std::string& le = sample.labels.at("le");
    cumulative[le == "+Inf" ? std::numeric_limits<double>::infinity() : std::stod(le)] += sample.value;
  }
  if (cumulative.empty() || cumulative.rbegin()->second == 0) return std::nan("");
  const double rank = q * cumulative.rbegin()->second;
  double lower = 0, below = 0;
  for (const auto& [le, count] : cumulative) {
    if (count >= rank) {
      if (std::isinf(le)) return lower;
      return count == below ? le : lower + (le - lower) * (rank - below) / (count - below);
    }
    lower = le;
    below = count;
  }
  return lower;
}

double Percentile(std::vector<int64_t> v, double q) {
  if (v.empty()) return std::nan("");
  std::sort(v.begin(), v.end());
  return static_cast<double>(v[std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())))]);
}

TEST_F(LoadTest, FiftyPodsAtAThousandRequestsPerSecondAreCountedExactly) {
  TempDir dir("load");
  // The stand-in rewrites its stats file every 100 ms instead of after every request: at 1,000
  // requests/s the rewrites alone would slow it below the rate (tests/fixtures/imds_standin.py).
  LoopbackImds imds(dir.path(), {"--stats-interval-ms", "100"});
  Agent agent({"--no-kube", "--endpoint", imds.Endpoint()}, dir.path() + "/agent.log");
  const pid_t pid = agent.process().pid();
  // The parent slices are held here, so the pods' cgroups never race to remove them.
  Cgroup qos("/kubepods.slice/kubepods-besteffort.slice");
  const std::string prefix = RandomHex(8);
  std::vector<PodCgroup> pods;
  pods.reserve(kPods);
  for (int i = 0; i < kPods; i++) pods.emplace_back(prefix);
  const long rss_before = RssKib(pid);

  // All clients start on one schedule, 1 ms apart: together one request every millisecond.
  const int64_t start_ns = MonotonicNs() + 1500000000LL;
  std::vector<std::unique_ptr<Process>> clients;
  for (int i = 0; i < kPods; i++) {
    const std::string out = dir.path() + "/client-" + std::to_string(i);
    clients.push_back(std::make_unique<Process>(
        std::vector<std::string>{IMDSWATCH_LOAD_CLIENT, "--host", "127.0.0.1", "--port", std::to_string(imds.port()),
                                 "--rate", std::to_string(kRatePerPod), "--duration", std::to_string(kSeconds),
                                 "--start-ns", std::to_string(start_ns), "--phase-ms",
                                 std::to_string(i * 1000 / (kRatePerPod * kPods)), "--requests-per-connection",
                                 std::to_string(kRequestsPerConnection), "--out", out + ".json"},
        SpawnOptions{.cgroup = pods[i].cgroup->full(), .stderr_file = out + ".err"}));
  }

  // Over the load: the agent's CPU from the first request to the last answer, its peak RSS, and one
  // scrape of /metrics halfway (as Prometheus would).
  while (MonotonicNs() < start_ns) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  const double cpu_start = CpuSeconds(pid);
  const auto wall_start = std::chrono::steady_clock::now();
  long rss_peak = 0;
  double scrape_ms = -1, scrape_at = 0, requests_seen_then = -1;
  size_t scrape_bytes = 0;
  while (MonotonicNs() < start_ns + kSeconds * 1000000000LL) {
    rss_peak = std::max(rss_peak, RssKib(pid));
    if (scrape_ms < 0 && MonotonicNs() > start_ns + kSeconds * 500000000LL) {
      std::string body;
      const auto t0 = std::chrono::steady_clock::now();
      EXPECT_EQ(HttpGet(agent.Url("/metrics"), &body), 200);
      scrape_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      scrape_at = static_cast<double>(MonotonicNs() - start_ns) / 1e9;
      scrape_bytes = body.size();
      // Does it keep up? (One line looked up, not the whole text parsed: that would take CPU from the load.)
      const std::string line = "\nimdswatch_events_total{type=\"request\"} ";
      if (size_t at = body.find(line); at != std::string::npos)
        requests_seen_then = std::strtod(body.c_str() + at + line.size(), nullptr);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  int clients_failed = 0;
  for (auto& client : clients)
    if (client->Wait(std::chrono::seconds(30)) != 0) clients_failed++;
  const double cpu_load = CpuSeconds(pid) - cpu_start;
  const double wall_load = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_start).count();
  rss_peak = std::max(rss_peak, RssKib(pid));
  ASSERT_TRUE(agent.process().Running()) << ReadFile(agent.log_file());

  // What the load generator did.
  struct Client {
    uint64_t completed = 0, failed = 0, unsent = 0, connections = 0;
    std::map<std::string, uint64_t> by_call, by_status;
  };
  std::vector<Client> done(kPods);
  Client total;
  std::vector<int64_t> latency_us;
  int64_t last_ns = 0;
  for (int i = 0; i < kPods; i++) {
    const std::string out = dir.path() + "/client-" + std::to_string(i);
    auto j = nlohmann::json::parse(ReadFile(out + ".json"), nullptr, false);
    ASSERT_TRUE(j.is_object()) << "client " << i << " left no result: " << ReadFile(out + ".err");
    Client& c = done[i];
    c.completed = j["completed"];
    c.failed = j["failed"];
    c.unsent = j["unsent"];
    c.connections = j["connections"];
    for (const auto& [k, v] : j["by_call"].items()) c.by_call[k] = v;
    for (const auto& [k, v] : j["by_status"].items()) c.by_status[k] = v;
    for (const auto& v : j["latency_us"]) latency_us.push_back(v);
    last_ns = std::max<int64_t>(last_ns, j["last_ns"]);
    total.completed += c.completed;
    total.failed += c.failed;
    total.unsent += c.unsent;
    total.connections += c.connections;
    for (const auto& [k, v] : c.by_call) total.by_call[k] += v;
    for (const auto& [k, v] : c.by_status) total.by_status[k] += v;
  }
  const double load_seconds = static_cast<double>(last_ns - start_ns) / 1e9;
  const double rate = static_cast<double>(total.completed) / load_seconds;

  // The agent drains; then its counters must stay put.
  auto counted = [&](const std::vector<Sample>& x) {
    double n = 0;
    for (const auto& pod : pods) n += SumOf(x, "imds_requests_total", {{"pod", pod.uid}});
    return n;
  };
  agent.ScrapeUntil([&](const std::vector<Sample>& x) { return counted(x) >= static_cast<double>(total.completed); },
                    std::chrono::seconds(15));
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  const auto s = agent.Scrape();
  const long rss_after = RssKib(pid);
  // The stand-in writes its count every 100 ms: wait for it to settle.
  uint64_t served = imds.Requests();
  for (int i = 0; i < 30 && served < total.completed; i++) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    served = imds.Requests();
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  served = imds.Requests();

  const double agent_total = counted(s);
  std::printf("load: %d pods x %d req/s for %d s: %llu requests completed in %.2f s = %.0f req/s "
              "(%.0f%% of %d), %llu failed, %llu not sent, %llu connections\n",
              kPods, kRatePerPod, kSeconds, static_cast<unsigned long long>(total.completed), load_seconds, rate,
              100 * rate / (kPods * kRatePerPod), kPods * kRatePerPod, static_cast<unsigned long long>(total.failed),
              static_cast<unsigned long long>(total.unsent), static_cast<unsigned long long>(total.connections));
  std::printf("  by call:");
  for (const auto& [k, v] : total.by_call) std::printf(" %s=%llu", k.c_str(), static_cast<unsigned long long>(v));
  std::printf("; by status:");
  for (const auto& [k, v] : total.by_status) std::printf(" %s=%llu", k.c_str(), static_cast<unsigned long long>(v));
  std::printf("\n  counted: load generator %llu, stand-in %llu, agent %.0f (all series %.0f, outcome ok %.0f); "
              "connections established %.0f\n",
              static_cast<unsigned long long>(total.completed), static_cast<unsigned long long>(served), agent_total,
              SumOf(s, "imds_requests_total"), SumOf(s, "imds_requests_total", {{"outcome", "ok"}}),
              SumOf(s, "imds_connections_total", {{"outcome", "established"}}));
  const double hist_count = SumOf(s, "imds_request_duration_seconds_count");
  std::printf("  latency: %.0f durations recorded; agent histogram p50 %.2f ms, p99 %.2f ms; "
              "client-side p50 %.2f ms, p99 %.2f ms\n",
              hist_count, 1000 * HistogramQuantile(s, "imds_request_duration_seconds", 0.5),
              1000 * HistogramQuantile(s, "imds_request_duration_seconds", 0.99), Percentile(latency_us, 0.5) / 1000,
              Percentile(latency_us, 0.99) / 1000);
  std::printf("  agent CPU %.1f%% of one core (%.2f s user+system over %.1f s; in all %.2f s, its own "
              "process_cpu_seconds_total %.2f s); RSS %ld KiB before, %ld KiB peak during, %ld KiB after%s\n",
              100 * cpu_load / wall_load, cpu_load, wall_load, CpuSeconds(pid), SumOf(s, "process_cpu_seconds_total"),
              rss_before, rss_peak, rss_after, SanitizedBuild() ? " (ASan build)" : "");
  std::printf("  a scrape of /metrics under load, %.1f s in: %.1f ms, %zu bytes, %.0f request events seen by then "
              "(the schedule: %.0f)\n",
              scrape_at, scrape_ms, scrape_bytes, requests_seen_then, scrape_at * kPods * kRatePerPod);
  std::printf("  events:");
  for (const auto& sample : s)
    if (sample.name == "imdswatch_events_total") std::printf(" %s=%.0f", sample.labels.at("type").c_str(), sample.value);
  std::printf("\n");
  std::string lost;
  for (const auto& sample : s)
    if (sample.name == "imdswatch_events_lost_total" && sample.value > 0)
      lost += " " + sample.labels.at("reason") + "=" + std::to_string(static_cast<uint64_t>(sample.value));
  std::printf("  events lost:%s\n", lost.empty() ? " none" : lost.c_str());
  std::fflush(stdout);

  // The figure is real: the load generator kept up with the schedule.
  EXPECT_EQ(clients_failed, 0) << "a client did not complete its schedule";
  EXPECT_EQ(total.failed, 0u);
  EXPECT_EQ(total.unsent, 0u);
  EXPECT_GE(rate, kMinShareOfRate * kPods * kRatePerPod) << "the load generator fell behind";
  EXPECT_EQ(total.by_status["200"], total.completed) << "answers other than 200";

  // Nothing lost, every request counted exactly, each under its own pod and call.
  EXPECT_TRUE(lost.empty()) << "the agent lost events:" << lost;
  EXPECT_EQ(SumOf(s, "imdswatch_http_parse_errors_total"), 0);
  EXPECT_EQ(served, total.completed) << "the stand-in and the load generator disagree";
  EXPECT_EQ(agent_total, static_cast<double>(total.completed));
  EXPECT_EQ(agent_total, static_cast<double>(served));
  EXPECT_EQ(SumOf(s, "imds_requests_total"), agent_total) << "requests counted outside the pods";
  EXPECT_EQ(SumOf(s, "imds_requests_total", {{"outcome", "ok"}, {"code", "200"}}), agent_total);
  EXPECT_EQ(SumOf(s, "imds_connections_total", {{"outcome", "established"}}),
            static_cast<double>(total.connections));
  int pods_off = 0;
  for (int i = 0; i < kPods; i++) {
    const std::string& uid = pods[i].uid;
    const double n = SumOf(s, "imds_requests_total", {{"pod", uid}});
    bool off = n != static_cast<double>(done[i].completed);
    EXPECT_EQ(n, static_cast<double>(done[i].completed)) << "pod " << i << " " << uid;
    for (const auto& [key, expected] : done[i].by_call) {
      const std::string call = key.substr(0, key.find('/')), version = key.substr(key.find('/') + 1);
      const double got = SumOf(s, "imds_requests_total", {{"pod", uid}, {"call", call}, {"version", version}});
      off |= got != static_cast<double>(expected);
      EXPECT_EQ(got, static_cast<double>(expected)) << "pod " << i << " " << uid << " " << key;
    }
    EXPECT_EQ(SumOf(s, "imds_request_duration_seconds_count", {{"pod", uid}}), static_cast<double>(done[i].completed))
        << "pod " << i << " " << uid;
    if (off) pods_off++;
  }
  std::printf("  pods whose own count matches their client's, per call: %d of %d\n", kPods - pods_off, kPods);

  // A latency for every request.
  EXPECT_EQ(hist_count, static_cast<double>(total.completed));
  EXPECT_GT(HistogramQuantile(s, "imds_request_duration_seconds", 0.5), 0);
}

}  // namespace
}  // namespace imdswatch::testing
