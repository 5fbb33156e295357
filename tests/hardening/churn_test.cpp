// Churn: thousands of short-lived pods, each a kubelet-style cgroup that
// makes one metadata call and goes away. The agent must count every call,
// keep its memory flat once the first pods have come and gone, and drop the
// series of gone cgroups after --series-ttl (while a live pod's stay).
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <thread>

#include "hardening/hardening.h"

namespace imdswatch::testing {
namespace {

constexpr int kPods = 10000;
constexpr int kCheckpoint = 1000;
constexpr int kWorkers = 4;

class ChurnTest : public ::testing::Test {
 protected:
  void SetUp() override { HARDENING_REQUIRE_KERNEL(); }
};

size_t SeriesWithPrefix(const std::vector<Sample>& s, const std::string& uid_prefix) {
  size_t n = 0;
  for (const auto& sample : s) {
    auto it = sample.labels.find("pod");
    if (sample.name == "imds_requests_total" && it != sample.labels.end() && it->second.rfind(uid_prefix, 0) == 0) n++;
  }
  return n;
}

double SumWithPrefix(const std::vector<Sample>& s, const std::string& uid_prefix) {
  double n = 0;
  for (const auto& sample : s) {
    auto it = sample.labels.find("pod");
    if (sample.name == "imds_requests_total" && it != sample.labels.end() && it->second.rfind(uid_prefix, 0) == 0)
      n += sample.value;
  }
  return n;
}

TEST_F(ChurnTest, ShortLivedPodsKeepMemoryFlatAndTheirSeriesExpire) {
  if (SanitizedBuild()) {
    // ASan keeps freed memory in a quarantine (256 MiB by default), which
    // would read as growth; a small one keeps the figure meaningful.
    std::string opts = std::getenv("ASAN_OPTIONS") ? std::getenv("ASAN_OPTIONS") : "";
    setenv("ASAN_OPTIONS", (opts + (opts.empty() ? "" : ":") + "quarantine_size_mb=8").c_str(), 1);
  }
  TempDir dir("churn");
  LoopbackImds imds(dir.path());
  Agent agent({"--no-kube", "--endpoint", imds.Endpoint(), "--series-ttl", "2s"},
              dir.path() + "/agent.log");
  const pid_t pid = agent.process().pid();
  // Parent slices stay, so workers never race to create or remove them; a
  // live pod's series must survive the expiry of the others.
  Cgroup qos("/kubepods.slice/kubepods-besteffort.slice");
  PodCgroup keeper;
  ASSERT_EQ(CurlFrom(*keeper.cgroup, imds.Url()), 200);
  auto requests_seen = [&] {
    return SumOf(agent.Scrape(), "imdswatch_events_total", {{"type", "request"}});
  };
  agent.ScrapeUntil([&](const std::vector<Sample>& s) {
    return SumOf(s, "imds_requests_total", {{"pod", keeper.uid}}) >= 1;
  });
  const double requests_before = requests_seen();
  const long rss_start = RssKib(pid);

  // Pods are made by tests/hardening/churn.sh, kWorkers shells in parallel.
  const std::string prefix = RandomHex(8);
  int next = 0;
  auto run = [&](int until) {
    std::vector<std::unique_ptr<Process>> shells;
    const int per = (until - next + kWorkers - 1) / kWorkers;
    for (int w = 0; w < kWorkers && next < until; w++) {
      const int count = std::min(per, until - next);
      shells.push_back(std::make_unique<Process>(
          std::vector<std::string>{SourceDir() + "/tests/hardening/churn.sh", CgroupRoot(), prefix,
                                   std::to_string(next), std::to_string(count), imds.Url()},
          SpawnOptions{.stderr_file = dir.path() + "/churn-" + std::to_string(next) + ".err"}));
      next += count;
    }
    int failed = 0;
    // A guard against a hang, not a speed target: 9,000 pods took 547 s on
    // a 2-core CI machine (16 pods/s), and a slower one must still pass.
    for (auto& shell : shells)
      if (shell->Wait(std::chrono::seconds(1200)) != 0) failed++;
    return failed;
  };
  auto started = std::chrono::steady_clock::now();
  ASSERT_EQ(run(kCheckpoint), 0) << "churn.sh failed";
  const long rss_checkpoint = RssKib(pid);
  const double s_checkpoint = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  ASSERT_EQ(run(kPods), 0) << "churn.sh failed";
  const double s_all = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  const long rss_all = RssKib(pid);
  ASSERT_TRUE(agent.process().Running()) << ReadFile(agent.log_file());

  // Every call seen: one request event per pod (the agent keeps up; nothing lost).
  double seen = 0;
  for (int i = 0; i < 50 && (seen = requests_seen() - requests_before) < kPods; i++)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  auto s = agent.Scrape();
  const double attributed = SumWithPrefix(s, prefix);  // less what already expired
  const double unattributed = SumOf(s, "imds_requests_total", {{"pod", ""}});
  std::printf("churn: %d pods, one call each, in %.1f s (%.0f pods/s); %.0f request events seen\n", kPods, s_all,
              kPods / s_all, seen);
  std::printf("  agent RSS: %ld KiB at start, %ld KiB after %d pods (%.1f s), %ld KiB after %d pods%s\n", rss_start,
              rss_checkpoint, kCheckpoint, s_checkpoint, rss_all, kPods,
              SanitizedBuild() ? " (ASan build, quarantine 8 MiB)" : "");
  size_t twice = 0;
  for (const auto& sample : s)
    if (sample.name == "imds_requests_total" && sample.value > 1 && sample.labels.at("pod").rfind(prefix, 0) == 0) twice++;
  std::printf("  stand-in served %llu; calls still exported: %.0f under their pod's uid (%zu series, %zu above 1), "
              "%.0f under no pod\n",
              static_cast<unsigned long long>(imds.Requests()), attributed, SeriesWithPrefix(s, prefix), twice,
              unattributed);
  std::printf("  events:");
  for (const auto& sample : s)
    if (sample.name == "imdswatch_events_total") std::printf(" %s=%.0f", sample.labels.at("type").c_str(), sample.value);
  std::printf("\n  lost or unmatched:");  // what a missing event's cause would show
  for (const auto& sample : s)
    if (sample.name == "imdswatch_events_lost_total" && sample.value > 0)
      std::printf(" %s=%.0f", sample.labels.at("reason").c_str(), sample.value);
  std::printf("\n");
  // Every call seen. (At least: on a machine shared with other tests, their
  // clients could reach this port too; in CI these are equal.)
  EXPECT_GE(seen, kPods);
  EXPECT_EQ(SumOf(s, "imdswatch_events_lost_total", {{"reason", "ringbuf_full"}}), 0);

  // Each pod called once: a count above 1 under a pod's uid would be another
  // pod's call (say, under a reused cgroup id) attributed to it.
  EXPECT_EQ(twice, 0u) << "calls of one pod attributed to another";

  // Flat: what the last 9,000 pods added stays under a bound, beside what
  // the pods of the last expiry interval legitimately hold until their series
  // expire (owner, labels, cgroup path, diagnosis ring: ~4 KiB each; the
  // faster the machine, the more of them).
  const size_t held = SeriesWithPrefix(s, prefix);
  const long bound_kib = (SanitizedBuild() ? 64 * 1024 : 16 * 1024) + static_cast<long>(held) * 4;
  EXPECT_LT(rss_all - rss_checkpoint, bound_kib) << "RSS grew " << (rss_all - rss_checkpoint) << " KiB over "
                                                 << (kPods - kCheckpoint) << " pods, " << held << " series held";

  // Series of gone cgroups expire (--series-ttl 2s). The agent checks every
  // 30 s: one check finds the cgroup gone, a later one (ttl on) drops the
  // owner and keeps its counts under their labels, a third prunes those: up
  // to about 90 s. (Calls not attributed to their pod share one series per
  // process name with any other such caller, so only the pods' are judged.)
  started = std::chrono::steady_clock::now();
  auto others = [&](const std::vector<Sample>& x) { return SeriesWithPrefix(x, prefix); };
  s = agent.ScrapeUntil([&](const std::vector<Sample>& x) { return !x.empty() && others(x) == 0; },
                        std::chrono::seconds(100));
  const double s_expired = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  const long rss_expired = RssKib(pid);
  std::printf("  series expired %.1f s after the last pod left (%zu left); RSS then %ld KiB\n", s_expired, others(s),
              rss_expired);
  EXPECT_EQ(others(s), 0u) << "series of gone cgroups still exported";
  EXPECT_EQ(SumOf(s, "imds_requests_total", {{"pod", keeper.uid}}), 1) << "a live pod's series expired";
}

// A pod that makes its call and is gone before the next scrape (a CronJob,
// an init container) is still that pod's call, not an anonymous process's.
TEST_F(ChurnTest, PodGoneBeforeTheScrapeIsStillAttributed) {
  TempDir dir("shortlived");
  LoopbackImds imds(dir.path());
  Agent agent({"--no-kube", "--endpoint", imds.Endpoint()}, dir.path() + "/agent.log");
  Cgroup qos("/kubepods.slice/kubepods-besteffort.slice");
  const std::string prefix = RandomHex(8);
  constexpr int kShortLived = 20;
  // Each cgroup goes 0.2 s after its call: well before the next scrape or
  // tick (5 s), yet not a race with the agent reading the event (a kubelet
  // takes longer than that to tear a pod down).
  Process shell({SourceDir() + "/tests/hardening/churn.sh", CgroupRoot(), prefix, "0", std::to_string(kShortLived),
                 imds.Url(), "0.2"},
                {.stderr_file = dir.path() + "/churn.err"});
  ASSERT_EQ(shell.Wait(std::chrono::seconds(60)), 0) << ReadFile(dir.path() + "/churn.err");
  auto s = agent.ScrapeUntil([&](const std::vector<Sample>& x) {
    return SumOf(x, "imds_requests_total") >= kShortLived;
  });
  std::printf("%d pods gone right after their call: %.0f calls under their own pod, %.0f under no pod "
              "(workload = process name)\n",
              kShortLived, SumWithPrefix(s, prefix), SumOf(s, "imds_requests_total", {{"pod", ""}}));
  EXPECT_EQ(SumOf(s, "imds_requests_total"), kShortLived);
  // Known limit: the path is learnt from /proc/PID/cgroup when the agent handles the connect event; a
  // caller that exits (and whose cgroup goes) before that, on a loaded machine, keeps only its process
  // name. Seen here with no linger: 20/20 idle, 18/20 while CI builds beside it. Most must keep their pod.
  EXPECT_GE(SumWithPrefix(s, prefix), kShortLived * 8 / 10) << "calls of pods already gone lost their pod";
  EXPECT_EQ(SeriesWithPrefix(s, prefix), static_cast<size_t>(SumWithPrefix(s, prefix)));
}

}  // namespace
}  // namespace imdswatch::testing
