// Overflow: far more events than a tiny ring buffer (--ringbuf-size 4096,
// about ten calls' worth) holds, from one pod making thousands of metadata
// calls over many parallel connections. Losses must be counted in
// imdswatch_events_lost_total{reason="ringbuf_full"}, never silent; and the
// agent must stay up and exact afterwards: a later single call is counted
// exactly once, with the right outcome.
#include <gtest/gtest.h>

#include <cstdio>
#include <thread>

#include "hardening/hardening.h"

namespace imdswatch::testing {
namespace {

class OverflowTest : public ::testing::Test {
 protected:
  void SetUp() override { HARDENING_REQUIRE_KERNEL(); }
};

double Lost(const std::vector<Sample>& s, const std::string& reason) {
  return SumOf(s, "imdswatch_events_lost_total", {{"reason", reason}});
}

TEST_F(OverflowTest, TinyRingBufferCountsItsLossesAndStaysExact) {
  TempDir dir("overflow");
  LoopbackImds imds(dir.path());
  Agent agent({"--no-kube", "--endpoint", imds.Endpoint(), "--ringbuf-size", "4096"},
              dir.path() + "/agent.log");
  PodCgroup storm;
  const std::map<std::string, std::string> of_storm = {{"pod", storm.uid}};

  // Rounds of 3,000 calls over 64 parallel connections until the ring buffer overflowed.
  constexpr int kCallsPerRound = 3000;
  int rounds = 0;
  std::vector<Sample> s;
  auto started = std::chrono::steady_clock::now();
  while (rounds < 4) {
    rounds++;
    Process curl({"curl", "-s", "-Z", "--parallel-max", "64", "--max-time", "30",
                  imds.Url("/latest/meta-data/instance-id?n=[1-" + std::to_string(kCallsPerRound) + "]")},
                 {.cgroup = storm.cgroup->full(), .stdout_file = "/dev/null", .stderr_file = dir.path() + "/curl.err"});
    ASSERT_EQ(curl.Wait(std::chrono::seconds(90)), 0) << ReadFile(dir.path() + "/curl.err");
    s = agent.Scrape();
    if (Lost(s, "ringbuf_full") > 0) break;
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  ASSERT_TRUE(agent.process().Running()) << ReadFile(agent.log_file());

  // Let the agent drain; the counters settle.
  double last = -1;
  for (int i = 0; i < 50; i++) {
    s = agent.Scrape();
    double now = SumOf(s, "imds_requests_total", of_storm);
    if (now == last) break;
    last = now;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  const uint64_t served = imds.Requests();
  std::printf("overflow: %d round(s) of %d calls in %.1f s (%.0f calls/s), stand-in served %llu\n", rounds,
              kCallsPerRound, seconds, served / seconds, static_cast<unsigned long long>(served));
  std::printf("  agent counted %.0f calls for the pod (ok %.0f, timeout %.0f, reset %.0f, error %.0f)\n",
              SumOf(s, "imds_requests_total", of_storm),
              SumOf(s, "imds_requests_total", {{"pod", storm.uid}, {"outcome", "ok"}}),
              SumOf(s, "imds_requests_total", {{"pod", storm.uid}, {"outcome", "timeout"}}),
              SumOf(s, "imds_requests_total", {{"pod", storm.uid}, {"outcome", "reset"}}),
              SumOf(s, "imds_requests_total", {{"pod", storm.uid}, {"outcome", "error"}}));
  std::printf("  events lost by reason:");
  for (const auto& sample : s)
    if (sample.name == "imdswatch_events_lost_total" && sample.value > 0)
      std::printf(" %s=%.0f", sample.labels.at("reason").c_str(), sample.value);
  std::printf("\n  events received by type:");
  for (const auto& sample : s)
    if (sample.name == "imdswatch_events_total") std::printf(" %s=%.0f", sample.labels.at("type").c_str(), sample.value);
  std::printf("\n");

  EXPECT_GT(Lost(s, "ringbuf_full"), 0) << "no overflow in " << rounds << " rounds: the test proved nothing";
  EXPECT_LE(SumOf(s, "imds_requests_total", of_storm), served) << "more calls counted than were made";
  EXPECT_GT(SumOf(s, "imds_requests_total", of_storm), 0);

  // Up and exact afterwards.
  std::string body;
  EXPECT_EQ(HttpGet(agent.Url("/healthz"), &body), 200) << body;
  PodCgroup later;
  ASSERT_EQ(CurlFrom(*later.cgroup, imds.Url("/latest/meta-data/iam/security-credentials/")), 200);
  const std::map<std::string, std::string> of_later = {{"pod", later.uid}};
  s = agent.ScrapeUntil([&](const std::vector<Sample>& x) { return SumOf(x, "imds_requests_total", of_later) >= 1; });
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  s = agent.Scrape();
  std::printf("  a later single call: counted %.0f\n", SumOf(s, "imds_requests_total", of_later));
  EXPECT_EQ(SumOf(s, "imds_requests_total", of_later), 1);
  EXPECT_EQ(SumOf(s, "imds_requests_total",
                  {{"pod", later.uid}, {"call", "credentials_list"}, {"outcome", "ok"}, {"code", "200"}}),
            1);
  EXPECT_EQ(SumOf(s, "imds_connections_total", {{"pod", later.uid}, {"outcome", "established"}}), 1);
}

}  // namespace
}  // namespace imdswatch::testing
