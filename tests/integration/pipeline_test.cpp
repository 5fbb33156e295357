// Through the real kernel: pods in network namespaces and kubelet cgroups,
// a routing node, a metadata stand-in, a Kubernetes API stand-in, real
// clients (curl, Debian's botocore and Ruby SDK) and the agent under test,
// asserted through its /metrics.
#include <gtest/gtest.h>

#include <filesystem>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <thread>
#include <utility>

#include "imdswatch.h"
#include "integration/harness.h"

namespace imdswatch::testing {
namespace {

constexpr char kNode[] = "node-a";
constexpr char kCanary[] = "CANARY0ff1ce5ecret";

// The agent's records of one type so far (imdswatch_events_total).
double EventsOf(const std::vector<Sample>& samples, const char* type) {
  return SumOf(samples, "imdswatch_events_total", {{"type", type}});
}

// A pod known to the API stand-in, with one container's cgroup.
struct Pod {
  std::string name, ns, uid, container_id, container, workload, ip;
  std::unique_ptr<Cgroup> cgroup;
  std::string netns;
  std::map<std::string, std::string> Labels() const {
    return {{"namespace", ns}, {"pod", name}, {"container", container}, {"workload", workload}};
  }
};

class PipelineTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::string why = KernelTestsUnavailable();
    if (!why.empty()) {
      skip_reason_ = new std::string(why);
      return;
    }
    prefix_ = new std::string(UniquePrefix());
    work_ = new std::string("/tmp/imdswatch-it-" + *prefix_);
    mkdir(work_->c_str(), 0755);
    mkdir((*work_ + "/pods").c_str(), 0755);
    topology_ = new Topology(*prefix_, 2);
    host_imds_port_ = FreePort();
    kube_port_ = FreePort();
    kube_ = new Process({"/usr/bin/python3", SourceDir() + "/tests/fixtures/kube_api_standin.py", "--pods-dir",
                         *work_ + "/pods", "--listen", "127.0.0.1:" + std::to_string(kube_port_), "--ready-file",
                         *work_ + "/kube.ready"},
                        {.stderr_file = *work_ + "/kube.log"});
    WaitForFile(*work_ + "/kube.ready", std::chrono::seconds(10));
    agent_ = new Agent({"--kube-api-server", "http://127.0.0.1:" + std::to_string(kube_port_), "--node-name", kNode,
                        "--endpoint", "127.0.0.1:" + std::to_string(host_imds_port_), "--diagnosis.window", "20s"},
                       *work_ + "/agent.log");
  }

  static void TearDownTestSuite() {
    delete agent_;
    delete imds_;
    delete host_imds_;
    delete kube_;
    delete topology_;
    agent_ = nullptr;
    imds_ = host_imds_ = kube_ = nullptr;
    topology_ = nullptr;
  }

  void SetUp() override {
    if (skip_reason_) {
      if (std::getenv("CI") && std::string(std::getenv("CI")) == "true")
        FAIL() << "kernel test cannot run in CI: " << *skip_reason_;
      GTEST_SKIP() << *skip_reason_;
    }
  }

  // (Re)starts the metadata stand-in on 169.254.169.254:80 and [fd00:ec2::254]:80 in the imds netns.
  void StartImds(std::vector<std::string> flags = {}) {
    delete imds_;
    imds_ = nullptr;
    std::string ready = *work_ + "/imds.ready";
    unlink(ready.c_str());
    std::vector<std::string> argv = {"/usr/bin/python3",
                                     SourceDir() + "/tests/fixtures/imds_standin.py",
                                     "--listen",
                                     "169.254.169.254:80",
                                     "--listen",
                                     "[fd00:ec2::254]:80",
                                     "--listen",
                                     "10.77.250.2:8080",
                                     "--canary",
                                     kCanary,
                                     "--stats-file",
                                     *work_ + "/imds.stats",
                                     "--ready-file",
                                     ready};
    argv.insert(argv.end(), flags.begin(), flags.end());
    imds_ = new Process(argv, {.netns = topology_->NetnsPath("imds"), .stderr_file = *work_ + "/imds.log"});
    ASSERT_TRUE(WaitForFile(ready, std::chrono::seconds(10)));
  }

  // The loopback stand-in that host-network callers reach (no forwarding hop).
  void StartHostImds() {
    if (host_imds_) return;
    std::string ready = *work_ + "/host-imds.ready";
    host_imds_ = new Process({"/usr/bin/python3", SourceDir() + "/tests/fixtures/imds_standin.py", "--listen",
                              "127.0.0.1:" + std::to_string(host_imds_port_), "--canary", kCanary, "--ready-file",
                              ready},
                             {.stderr_file = *work_ + "/host-imds.log"});
    ASSERT_TRUE(WaitForFile(ready, std::chrono::seconds(10)));
  }

  std::string HostImdsUrl() const { return "http://127.0.0.1:" + std::to_string(host_imds_port_); }

  // Waits until the agent reports `kind` for the pod.
  std::vector<Sample> WaitForDiagnosis(const Pod& pod, const std::string& kind) {
    return agent_->ScrapeUntil(
        [&](const std::vector<Sample>& x) {
          return SumOf(x, "imds_diagnosis", With(pod.Labels(), {{"kind", kind}})) >= 1;
        },
        std::chrono::seconds(20));
  }

  // `imdswatch doctor --url` against the running agent.
  int Doctor(std::string* out, bool json = false) {
    std::vector<std::string> argv = {BinaryDir() + "/imdswatch", "doctor", "--url", agent_->Url("")};
    if (json) argv.insert(argv.end(), {"--output", "json"});
    return RunCommand(argv, {}, std::chrono::seconds(20), out);
  }

  void StopImds() {
    delete imds_;
    imds_ = nullptr;
  }

  // A pod on this node: API object (unless hidden) and its container's cgroup.
  Pod MakePod(const std::string& workload, int pod_index, bool publish = true) {
    Pod pod;
    pod.workload = workload;
    pod.ns = "team-" + *prefix_;
    pod.name = workload + "-5d8f7c9b4-" + RandomHex(5);
    pod.uid = RandomUid();
    pod.container_id = RandomHex(64);
    pod.container = "app";
    pod.netns = topology_->NetnsPath("p" + std::to_string(pod_index));
    pod.ip = "10.77." + std::to_string(pod_index) + ".2";
    pod.cgroup = std::make_unique<Cgroup>(KubeletCgroupPath(pod.uid, pod.container_id));
    if (publish) Publish(pod);
    return pod;
  }

  void Publish(const Pod& pod) {
    std::string out;
    int rc = RunCommand({"/usr/bin/python3", SourceDir() + "/tests/fixtures/make_pod.py", "--name", pod.name,
                         "--namespace", pod.ns, "--uid", pod.uid, "--node", kNode, "--container",
                         pod.container + "=containerd://" + pod.container_id, "--owner-kind", "ReplicaSet",
                         "--owner-name", pod.workload + "-5d8f7c9b4", "--label", "pod-template-hash=5d8f7c9b4",
                         "--pod-ip", pod.ip,
                         "--out", *work_ + "/pods/" + pod.uid + ".json"},
                        {}, std::chrono::seconds(10), &out);
    ASSERT_EQ(rc, 0) << out;
  }

  // Waits until the agent's pod cache knows the pod (its API event arrived).
  void WaitUntilKnown(const Pod& pod) {
    std::this_thread::sleep_for(std::chrono::milliseconds(600));  // stand-in rescans every 100 ms
    (void)pod;
  }

  int RunIn(const Pod& pod, std::vector<std::string> argv, std::string* output = nullptr) {
    return RunCommand(std::move(argv), {.netns = pod.netns, .cgroup = pod.cgroup->full()}, std::chrono::seconds(30),
                      output);
  }

  static std::vector<std::string> Curl(std::vector<std::string> args) {
    std::vector<std::string> argv = {"curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}\n"};
    argv.insert(argv.end(), args.begin(), args.end());
    return argv;
  }

  static std::map<std::string, std::string> With(std::map<std::string, std::string> base,
                                                 const std::map<std::string, std::string>& more) {
    for (const auto& [k, v] : more) base[k] = v;
    return base;
  }

  // Scrapes until imds_requests_total for the pod reaches `total`.
  std::vector<Sample> ScrapeRequests(const Pod& pod, double total) {
    return agent_->ScrapeUntil(
        [&](const std::vector<Sample>& s) { return SumOf(s, "imds_requests_total", pod.Labels()) >= total; });
  }

  static inline std::string* skip_reason_ = nullptr;
  static inline std::string* prefix_ = nullptr;
  static inline std::string* work_ = nullptr;
  static inline Topology* topology_ = nullptr;
  static inline Process* kube_ = nullptr;
  static inline Process* imds_ = nullptr;
  static inline Process* host_imds_ = nullptr;
  static inline Agent* agent_ = nullptr;
  static inline int host_imds_port_ = 0;
  static inline int kube_port_ = 0;
};

TEST_F(PipelineTest, CurlImdsV2CallsAreCountedForThePod) {
  StartImds();
  Pod pod = MakePod("web", 1);
  WaitUntilKnown(pod);
  std::string token_out;
  ASSERT_EQ(RunIn(pod, {"curl", "-sS", "-X", "PUT", "-H", "X-aws-ec2-metadata-token-ttl-seconds: 21600",
                        "http://169.254.169.254/latest/api/token"},
                  &token_out),
            0);
  std::string token = token_out.substr(0, token_out.find('\n'));
  ASSERT_NE(token.find(kCanary), std::string::npos);
  std::string out;
  ASSERT_EQ(RunIn(pod,
                  Curl({"-H", "X-aws-ec2-metadata-token: " + token,
                        "http://169.254.169.254/latest/meta-data/iam/security-credentials/"}),
                  &out),
            0);
  ASSERT_EQ(RunIn(pod,
                  Curl({"-H", "X-aws-ec2-metadata-token: " + token,
                        "http://169.254.169.254/latest/meta-data/iam/security-credentials/imdswatch-test-role"}),
                  &out),
            0);
  auto s = ScrapeRequests(pod, 3);
  const auto base = With(pod.Labels(), {{"version", "v2"}, {"outcome", "ok"}, {"code", "200"}, {"client", "curl"}});
  EXPECT_EQ(SumOf(s, "imds_requests_total", With(base, {{"call", "token"}})), 1);
  EXPECT_EQ(SumOf(s, "imds_requests_total", With(base, {{"call", "credentials_list"}})), 1);
  EXPECT_EQ(SumOf(s, "imds_requests_total", With(base, {{"call", "credentials"}})), 1);
  EXPECT_EQ(SumOf(s, "imds_requests_total", pod.Labels()), 3);
  EXPECT_EQ(SumOf(s, "imds_request_duration_seconds_count", With(pod.Labels(), {{"call", "token"}})), 1);
  EXPECT_EQ(SumOf(s, "imds_connections_total", With(pod.Labels(), {{"outcome", "established"}})), 3);
  // every request was timed: the sum is positive and below the test's own duration
  double sum = SumOf(s, "imds_request_duration_seconds_sum", pod.Labels());
  EXPECT_GT(sum, 0);
  EXPECT_LT(sum, 5);
}

TEST_F(PipelineTest, ImdsV1CallsOfEachKind) {
  StartImds();
  Pod pod = MakePod("batch", 1);
  WaitUntilKnown(pod);
  for (const char* path : {"/latest/meta-data/instance-id", "/latest/dynamic/instance-identity/document",
                           "/latest/user-data", "/latest/nothing-here"})
    ASSERT_EQ(RunIn(pod, Curl({std::string("http://169.254.169.254") + path})), 0);
  auto s = ScrapeRequests(pod, 4);
  const auto v1 = With(pod.Labels(), {{"version", "v1"}, {"client", "curl"}});
  EXPECT_EQ(SumOf(s, "imds_requests_total", With(v1, {{"call", "metadata"}, {"code", "200"}})), 1);
  EXPECT_EQ(SumOf(s, "imds_requests_total", With(v1, {{"call", "dynamic"}, {"code", "200"}})), 1);
  EXPECT_EQ(SumOf(s, "imds_requests_total", With(v1, {{"call", "user_data"}, {"code", "200"}})), 1);
  EXPECT_EQ(SumOf(s, "imds_requests_total", With(v1, {{"call", "other"}, {"code", "404"}, {"outcome", "error"}})),
            1);
}

// A response head longer than the fast path's one look (512 bytes) is parsed
// in windows, chained from the ingress first step; Content-Length comes after
// the padding, so a window that lost its place would miss the response's end.
TEST_F(PipelineTest, ResponseHeadLongerThanOneLookIsParsedInWindows) {
  StartImds({"--pad-header", "700"});
  Pod pod = MakePod("longhead", 1);
  WaitUntilKnown(pod);
  auto before = agent_->Scrape();
  ASSERT_EQ(RunIn(pod, Curl({"http://169.254.169.254/latest/meta-data/instance-id",
                             "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
                             "http://169.254.169.254/latest/meta-data/iam/security-credentials/imdswatch-test-role"})),
            0);
  auto s = ScrapeRequests(pod, 3);
  const auto ok = With(pod.Labels(), {{"version", "v1"}, {"outcome", "ok"}, {"code", "200"}});
  EXPECT_EQ(SumOf(s, "imds_requests_total", With(ok, {{"call", "metadata"}})), 1);
  EXPECT_EQ(SumOf(s, "imds_requests_total", With(ok, {{"call", "credentials_list"}})), 1);
  EXPECT_EQ(SumOf(s, "imds_requests_total", With(ok, {{"call", "credentials"}})), 1);
  EXPECT_EQ(SumOf(s, "imds_requests_total", pod.Labels()), 3);
  // the agent is shared by the tests: no error of any kind was added by this one
  EXPECT_EQ(SumOf(s, "imdswatch_http_parse_errors_total"), SumOf(before, "imdswatch_http_parse_errors_total"));
  EXPECT_EQ(SumOf(s, "imdswatch_events_lost_total"), SumOf(before, "imdswatch_events_lost_total"));
}

TEST_F(PipelineTest, BotocoreInstanceProfileProviderOnOneConnection) {
  StartImds();
  Pod pod = MakePod("boto", 2);
  WaitUntilKnown(pod);
  std::string out;
  ASSERT_EQ(RunIn(pod, {"/usr/bin/python3", SourceDir() + "/tests/fixtures/clients/botocore_creds.py"}, &out), 0)
      << out;
  auto s = ScrapeRequests(pod, 3);
  const auto base = With(pod.Labels(), {{"version", "v2"}, {"outcome", "ok"}, {"client", "botocore"}});
  EXPECT_EQ(SumOf(s, "imds_requests_total", With(base, {{"call", "token"}})), 1);
  EXPECT_EQ(SumOf(s, "imds_requests_total", With(base, {{"call", "credentials_list"}})), 1);
  EXPECT_EQ(SumOf(s, "imds_requests_total", With(base, {{"call", "credentials"}})), 1);
  EXPECT_EQ(SumOf(s, "imds_connections_total", With(pod.Labels(), {{"outcome", "established"}})), 1);
}

TEST_F(PipelineTest, RubySdkInstanceProfileCredentials) {
  StartImds();
  Pod pod = MakePod("rails", 2);
  WaitUntilKnown(pod);
  std::string out;
  ASSERT_EQ(RunIn(pod, {"ruby", SourceDir() + "/tests/fixtures/clients/ruby_creds.rb"}, &out), 0) << out;
  auto s = ScrapeRequests(pod, 3);
  const auto base = With(pod.Labels(), {{"version", "v2"}, {"outcome", "ok"}, {"client", "aws-sdk-ruby"}});
  EXPECT_EQ(SumOf(s, "imds_requests_total", With(base, {{"call", "token"}})), 1);
  EXPECT_EQ(SumOf(s, "imds_requests_total", With(base, {{"call", "credentials_list"}})), 1);
  EXPECT_EQ(SumOf(s, "imds_requests_total", With(base, {{"call", "credentials"}})), 1);
}

TEST_F(PipelineTest, UnansweredRequestIsOneTimeout) {
  StartImds({"--noreply-paths", "/latest/api/token"});
  Pod pod = MakePod("stuck", 1);
  WaitUntilKnown(pod);
  RunIn(pod, {"curl", "-sS", "--max-time", "1", "-X", "PUT", "-H", "X-aws-ec2-metadata-token-ttl-seconds: 60",
              "http://169.254.169.254/latest/api/token"});
  auto s = ScrapeRequests(pod, 1);
  EXPECT_EQ(SumOf(s, "imds_requests_total", pod.Labels()), 1);
  EXPECT_EQ(SumOf(s, "imds_requests_total",
                  With(pod.Labels(), {{"call", "token"}, {"outcome", "timeout"}, {"code", ""}, {"version", "v2"}})),
            1);
  // the time lost is the client's 1 s wait
  double lost = SumOf(s, "imds_request_duration_seconds_sum", With(pod.Labels(), {{"outcome", "timeout"}}));
  EXPECT_GT(lost, 0.9);
  EXPECT_LT(lost, 2.0);
}

TEST_F(PipelineTest, HopLimitOneMakesBotocoreFallBackToV1) {
  StartImds({"--token-reply-ttl", "1"});
  Pod pod = MakePod("hoplimit", 2);
  WaitUntilKnown(pod);
  std::string out;
  ASSERT_EQ(RunIn(pod, {"/usr/bin/python3", SourceDir() + "/tests/fixtures/clients/botocore_creds.py"}, &out), 0)
      << out;
  auto s = ScrapeRequests(pod, 3);
  EXPECT_EQ(SumOf(s, "imds_requests_total",
                  With(pod.Labels(), {{"call", "token"}, {"outcome", "timeout"}, {"version", "v2"}})),
            1);
  EXPECT_EQ(SumOf(s, "imds_requests_total",
                  With(pod.Labels(), {{"call", "credentials"}, {"outcome", "ok"}, {"version", "v1"}})),
            1);
  // the SDK's 1 s wait for the lost token reply
  EXPECT_GT(SumOf(s, "imds_request_duration_seconds_sum", With(pod.Labels(), {{"call", "token"}})), 0.9);
}

TEST_F(PipelineTest, UnansweredSynsAreAConnectTimeoutWithRetransmits) {
  StartImds();
  Pod pod = MakePod("blackholed", 1);
  WaitUntilKnown(pod);
  // the metadata host cannot answer pod 1: its SYN-ACKs go nowhere
  std::string imds_ns = topology_->prefix() + "-imds";
  ASSERT_EQ(RunCommand({"ip", "-n", imds_ns, "route", "add", "blackhole", "10.77.1.2/32"}), 0);
  RunIn(pod, Curl({"--connect-timeout", "2", "http://169.254.169.254/latest/meta-data/"}));
  RunCommand({"ip", "-n", imds_ns, "route", "del", "blackhole", "10.77.1.2/32"});
  auto s = agent_->ScrapeUntil([&](const std::vector<Sample>& x) {
    return SumOf(x, "imds_connections_total", pod.Labels()) >= 1;
  });
  EXPECT_EQ(SumOf(s, "imds_connections_total", With(pod.Labels(), {{"outcome", "timeout"}})), 1);
  EXPECT_EQ(SumOf(s, "imds_connections_total", With(pod.Labels(), {{"outcome", "established"}})), 0);
  EXPECT_GE(SumOf(s, "imds_tcp_retransmits_total", pod.Labels()), 1);
  EXPECT_EQ(SumOf(s, "imds_requests_total", pod.Labels()), 0);
}

TEST_F(PipelineTest, ResetBeforeTheAnswerIsAReset) {
  StartImds({"--reset-paths", "/latest/meta-data/instance-id"});
  Pod pod = MakePod("resetme", 1);
  WaitUntilKnown(pod);
  RunIn(pod, Curl({"--max-time", "3", "http://169.254.169.254/latest/meta-data/instance-id"}));
  auto s = ScrapeRequests(pod, 1);
  EXPECT_EQ(SumOf(s, "imds_requests_total", With(pod.Labels(), {{"call", "metadata"}, {"outcome", "reset"}})), 1);
  EXPECT_EQ(SumOf(s, "imds_connections_total", With(pod.Labels(), {{"outcome", "reset"}})), 1);
}

TEST_F(PipelineTest, ThrottledAnswersAreThrottled) {
  StartImds({"--throttle-above", "2"});
  Pod pod = MakePod("noisy", 1);
  WaitUntilKnown(pod);
  // one connection, five requests: the stand-in answers two and throttles three
  std::vector<std::string> argv = {"curl", "-sS", "-o", "/dev/null", "-o", "/dev/null", "-o", "/dev/null",
                                   "-o",   "/dev/null", "-o", "/dev/null"};
  for (int i = 0; i < 5; i++) argv.push_back("http://169.254.169.254/latest/meta-data/instance-id");
  RunIn(pod, argv);
  auto s = ScrapeRequests(pod, 5);
  EXPECT_EQ(SumOf(s, "imds_requests_total", With(pod.Labels(), {{"outcome", "ok"}})), 2);
  EXPECT_EQ(SumOf(s, "imds_requests_total", With(pod.Labels(), {{"outcome", "throttled"}, {"code", "429"}})), 3);
  EXPECT_EQ(SumOf(s, "imds_connections_total", With(pod.Labels(), {{"outcome", "established"}})), 1);
}

TEST_F(PipelineTest, RefusedConnectionIsCounted) {
  StopImds();
  Pod pod = MakePod("refused", 1);
  WaitUntilKnown(pod);
  RunIn(pod, Curl({"--max-time", "2", "http://169.254.169.254/latest/meta-data/"}));
  auto s = agent_->ScrapeUntil([&](const std::vector<Sample>& x) {
    return SumOf(x, "imds_connections_total", pod.Labels()) >= 1;
  });
  EXPECT_EQ(SumOf(s, "imds_connections_total", With(pod.Labels(), {{"outcome", "refused"}})), 1);
  EXPECT_EQ(SumOf(s, "imds_requests_total", pod.Labels()), 0);
}

// The v6 endpoint; and a dual-stack socket (AF_INET6, the peer
// ::ffff:169.254.169.254), which sends IPv4 but shows its peer as v6: the
// packet filter's first test must pass both.
TEST_F(PipelineTest, Ipv6EndpointAndDualStackSocketsAreWatched) {
  StartImds();
  const std::pair<const char*, const char*> calls[] = {
      {"six", "http://[fd00:ec2::254]/latest/meta-data/instance-id"},
      {"dualstack", "http://[::ffff:169.254.169.254]/latest/meta-data/instance-id"}};
  for (const auto& [name, url] : calls) {
    Pod pod = MakePod(name, 1);
    WaitUntilKnown(pod);
    ASSERT_EQ(RunIn(pod, Curl({"-g", url})), 0) << url;
    auto s = ScrapeRequests(pod, 1);
    EXPECT_EQ(SumOf(s, "imds_requests_total", With(pod.Labels(), {{"call", "metadata"}, {"code", "200"}})), 1)
        << url;
  }
}

TEST_F(PipelineTest, OtherTrafficCreatesNoSeries) {
  StartImds();
  Pod pod = MakePod("quiet", 1);
  WaitUntilKnown(pod);
  auto before = agent_->Scrape();
  double events_before = SumOf(before, "imdswatch_events_total");
  // same server, same process, an unwatched port: invisible to imdswatch
  ASSERT_EQ(RunIn(pod, Curl({"http://10.77.250.2:8080/latest/meta-data/instance-id"})), 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  auto after = agent_->Scrape();
  EXPECT_EQ(CountOf(after, "imds_requests_total", {{"pod", pod.name}}), 0u);
  EXPECT_EQ(CountOf(after, "imds_connections_total", {{"pod", pod.name}}), 0u);
  EXPECT_EQ(SumOf(after, "imdswatch_events_total"), events_before);
}

TEST_F(PipelineTest, HostProcessIsNamedBySystemdUnit) {
  StartHostImds();
  std::string unit = "imdswatch-e2e-" + *prefix_ + ".service";
  Cgroup cg("/system.slice/" + unit);
  ASSERT_EQ(RunCommand(Curl({"http://127.0.0.1:" + std::to_string(host_imds_port_) + "/latest/meta-data/instance-id"}),
                       {.cgroup = cg.full()}),
            0);
  const std::map<std::string, std::string> host = {
      {"namespace", ""}, {"pod", ""}, {"container", ""}, {"workload", unit}};
  auto s = agent_->ScrapeUntil(
      [&](const std::vector<Sample>& x) { return SumOf(x, "imds_requests_total", host) >= 1; });
  EXPECT_EQ(SumOf(s, "imds_requests_total", With(host, {{"call", "metadata"}, {"client", "curl"}})), 1);
}

TEST_F(PipelineTest, PodThatAppearsLaterGetsItsNames) {
  StartImds();
  Pod pod = MakePod("late", 1, /*publish=*/false);
  const std::map<std::string, std::string> pod_unknown = {{"reason", "pod_unknown"}};
  const double unknown_before = SumOf(agent_->Scrape(), "imdswatch_attribution_failures_total", pod_unknown);
  ASSERT_EQ(RunIn(pod, Curl({"http://169.254.169.254/latest/meta-data/instance-id"})), 0);
  // before the API knows the pod: named by its UID, and counted as a failure of attribution
  auto s = agent_->ScrapeUntil(
      [&](const std::vector<Sample>& x) { return SumOf(x, "imds_requests_total", {{"pod", pod.uid}}) >= 1; });
  EXPECT_EQ(SumOf(s, "imds_requests_total", {{"pod", pod.uid}, {"namespace", ""}}), 1);
  EXPECT_GE(SumOf(s, "imdswatch_attribution_failures_total", pod_unknown), unknown_before + 1);
  Publish(pod);
  s = ScrapeRequests(pod, 1);
  EXPECT_EQ(SumOf(s, "imds_requests_total", pod.Labels()), 1);
  EXPECT_EQ(CountOf(s, "imds_requests_total", {{"pod", pod.uid}}), 0u);
}

TEST_F(PipelineTest, SecretsNeverReachMetricsOrLogs) {
  StartImds();
  Pod pod = MakePod("canary", 2);
  WaitUntilKnown(pod);
  std::string out;
  ASSERT_EQ(RunIn(pod, {"/usr/bin/python3", SourceDir() + "/tests/fixtures/clients/botocore_creds.py"}, &out), 0);
  ScrapeRequests(pod, 3);
  std::string metrics;
  ASSERT_EQ(HttpGet(agent_->Url("/metrics"), &metrics), 200);
  EXPECT_EQ(metrics.find(kCanary), std::string::npos);
  EXPECT_EQ(ReadFile(agent_->log_file()).find(kCanary), std::string::npos);
  EXPECT_EQ(ReadFile(agent_->log_file() + ".out").find(kCanary), std::string::npos);
  for (const char* path : {"/api/v1/diagnoses", "/readyz", "/healthz"}) {
    std::string body;
    HttpGet(agent_->Url(path), &body);
    EXPECT_EQ(body.find(kCanary), std::string::npos) << path;
  }
  std::string doctor;
  Doctor(&doctor, /*json=*/true);
  EXPECT_EQ(doctor.find(kCanary), std::string::npos);
  // every regular file the agent holds open (its logs, anything it might write)
  int files = 0;
  const std::string fds = "/proc/" + std::to_string(agent_->process().pid()) + "/fd";
  for (const auto& fd : std::filesystem::directory_iterator(fds)) {
    std::error_code ec;
    const std::filesystem::path target = std::filesystem::read_symlink(fd.path(), ec);
    if (ec || !std::filesystem::is_regular_file(target, ec)) continue;
    files++;
    EXPECT_EQ(ReadFile(target.string()).find(kCanary), std::string::npos) << target;
  }
  EXPECT_GE(files, 1) << "the agent's log file was not among its open files";
  // the canary really was on the wire: the stand-in served it
  std::string served;
  ASSERT_EQ(RunIn(pod, {"curl", "-sS", "http://169.254.169.254/latest/meta-data/iam/security-credentials/"
                                       "imdswatch-test-role"},
                  &served),
            0);
  EXPECT_NE(served.find(kCanary), std::string::npos);
}

// ---- diagnoses (issue 4): named for the pod that has the problem, not for a healthy one ----

TEST_F(PipelineTest, DiagnosesHopLimitOnlyBehindTheExtraHop) {
  StartImds({"--token-reply-ttl", "1"});
  StartHostImds();
  Pod sick = MakePod("hopper", 2);
  Pod healthy = MakePod("hostnet", 1);
  healthy.netns = "";  // a hostNetwork pod: no forwarding hop, no TTL problem
  WaitUntilKnown(sick);
  std::string out;
  ASSERT_EQ(RunIn(healthy, {"/usr/bin/python3", SourceDir() + "/tests/fixtures/clients/botocore_creds.py",
                            "--endpoint", HostImdsUrl()},
                  &out),
            0)
      << out;
  ASSERT_EQ(RunIn(sick, {"/usr/bin/python3", SourceDir() + "/tests/fixtures/clients/botocore_creds.py"}, &out), 0)
      << out;
  auto s = WaitForDiagnosis(sick, "hop_limit");
  EXPECT_EQ(SumOf(s, "imds_diagnosis", With(sick.Labels(), {{"kind", "hop_limit"}})), 1);
  EXPECT_EQ(SumOf(s, "imds_diagnosis", healthy.Labels()), 0);
  std::string doctor;
  EXPECT_EQ(Doctor(&doctor), 1) << doctor;
  EXPECT_NE(doctor.find(sick.ns + "/" + sick.name), std::string::npos) << doctor;
  EXPECT_NE(doctor.find("hop-limit"), std::string::npos) << doctor;
  EXPECT_EQ(doctor.find(kCanary), std::string::npos);
  EXPECT_NE(ReadFile(agent_->log_file()).find("diagnosis hop_limit for " + sick.ns + "/" + sick.name),
            std::string::npos);
}

TEST_F(PipelineTest, HopLimitIsProvenByTheNodeDroppingTheReply) {
  StartImds({"--token-reply-ttl", "1"});
  Pod sick = MakePod("v2only", 1);
  WaitUntilKnown(sick);
  // a client that never falls back to IMDSv1: only the node's drop can prove the cause
  RunIn(sick, {"curl", "-sS", "--max-time", "1", "-X", "PUT", "-H", "X-aws-ec2-metadata-token-ttl-seconds: 60",
               "http://169.254.169.254/latest/api/token"});
  auto s = WaitForDiagnosis(sick, "hop_limit");
  EXPECT_EQ(SumOf(s, "imds_diagnosis", With(sick.Labels(), {{"kind", "hop_limit"}})), 1);
  EXPECT_GE(EventsOf(s, "ttl_drop"), 1);
  std::string doctor;
  EXPECT_EQ(Doctor(&doctor, /*json=*/true), 1);
  EXPECT_NE(doctor.find("ttl_exceeded_drops"), std::string::npos) << doctor;
  EXPECT_NE(doctor.find("proven"), std::string::npos) << doctor;
}

// The hook of kernels before 5.17 (raw_tp: no drop reason, every drop's
// headers read), forced on this one, sees the same drop.
TEST_F(PipelineTest, TheRawTracepointOfOlderKernelsSeesTheDropToo) {
  StartImds({"--token-reply-ttl", "1"});
  Agent raw({"--no-kube", "--forwarding-drops.raw-tp"}, *work_ + "/agent-raw-tp.log");
  EXPECT_NE(ReadFile(raw.log_file()).find("attached raw_tp/kfree_skb:imds_kfree_raw"), std::string::npos)
      << ReadFile(raw.log_file());
  Pod sick = MakePod("rawtp", 1);
  WaitUntilKnown(sick);
  RunIn(sick, {"curl", "-sS", "--max-time", "1", "-X", "PUT", "-H", "X-aws-ec2-metadata-token-ttl-seconds: 60",
               "http://169.254.169.254/latest/api/token"});
  auto s = raw.ScrapeUntil([&](const std::vector<Sample>& s) { return EventsOf(s, "ttl_drop") >= 1; });
  EXPECT_GE(EventsOf(s, "ttl_drop"), 1);
  // root here reads /proc/kallsyms's addresses: the filter has the forwarding code
  EXPECT_EQ(SumOf(s, "imdswatch_probe_mode", {{"part", "forwarding_drops"}, {"mode", "raw_tp_forwarding_code"}}), 1);
}

// A client that half-closes after its request (shutdown(SHUT_WR)) still
// reads its response: sockops sees only the sending side shut, keeps the
// exchange open while a response is owed, and ends it at the server's FIN.
// The call is an ok one, not a timeout, and nothing is an orphan.
TEST_F(PipelineTest, AResponseAfterTheClientsHalfCloseCountsAsItsCall) {
  StartImds();
  Pod pod = MakePod("halfclose", 1);
  WaitUntilKnown(pod);
  const auto ok = With(pod.Labels(), {{"outcome", "ok"}, {"code", "200"}});
  const auto timeout = With(pod.Labels(), {{"outcome", "timeout"}});
  const std::map<std::string, std::string> orphan = {{"reason", "orphan_event"}};
  const auto start = agent_->Scrape();
  const double orphans_before = SumOf(start, "imdswatch_events_lost_total", orphan),
               closes_before = EventsOf(start, "close");
  const std::string client =
      "import socket, time\n"
      "s = socket.create_connection(('169.254.169.254', 80), timeout=5)\n"
      "s.sendall(b'GET /latest/meta-data/instance-id HTTP/1.1\\r\\nHost: 169.254.169.254\\r\\n\\r\\n')\n"
      "s.shutdown(socket.SHUT_WR)\n"
      "time.sleep(0.2)\n"  // the FIN's ACK (FIN_WAIT2) before the answer: the exchange must still be open
      "data = b''\n"
      "while True:\n"
      "    chunk = s.recv(4096)\n"
      "    if not chunk:\n"
      "        break\n"
      "    data += chunk\n"
      "print(data.split(b' ')[1].decode())\n";
  std::string out;
  ASSERT_EQ(RunIn(pod, {"/usr/bin/python3", "-c", client}, &out), 0) << out;
  EXPECT_NE(out.find("200"), std::string::npos) << out;
  auto s = agent_->ScrapeUntil([&](const std::vector<Sample>& x) {
    return SumOf(x, "imds_requests_total", ok) + SumOf(x, "imds_requests_total", timeout) >= 1 &&
           EventsOf(x, "close") >= closes_before + 1;
  });
  // the exchange ended after the response (the server's FIN), with one close record
  EXPECT_EQ(EventsOf(s, "close"), closes_before + 1);
  EXPECT_EQ(SumOf(s, "imds_requests_total", ok), 1);
  EXPECT_EQ(SumOf(s, "imds_requests_total", timeout), 0);
  EXPECT_EQ(SumOf(s, "imds_connections_total", With(pod.Labels(), {{"outcome", "established"}})), 1);
  EXPECT_EQ(SumOf(s, "imdswatch_events_lost_total", orphan), orphans_before);
  EXPECT_EQ(SumOf(s, "imdswatch_probe_mode", {{"part", "half_close"}, {"mode", "followed"}}), 1);
}

// Kernels before 5.12 have no BPF_CMPXCHG: the connect work that claims a
// connection's slot with a plain store, forced on this one, still follows
// each call from its connect to its close.
TEST_F(PipelineTest, ThePlainStoreClaimOfOlderKernelsFollowsEachCallToo) {
  StartImds();
  Agent plain({"--no-kube", "--connections.plain-store"}, *work_ + "/agent-plain-store.log");
  EXPECT_NE(ReadFile(plain.log_file()).find("claimed with a plain store"), std::string::npos)
      << ReadFile(plain.log_file());
  Pod pod = MakePod("plainstore", 1);
  WaitUntilKnown(pod);
  ASSERT_EQ(RunIn(pod, Curl({"http://169.254.169.254/latest/meta-data/instance-id"})), 0);
  ASSERT_EQ(RunIn(pod, Curl({"http://169.254.169.254/latest/meta-data/instance-id"})), 0);
  auto s = plain.ScrapeUntil([&](const std::vector<Sample>& s) { return EventsOf(s, "close") >= 2; });
  EXPECT_EQ(SumOf(s, "imdswatch_probe_mode", {{"part", "connection_claim"}, {"mode", "plain_store"}}), 1);
  for (const char* type : {"request", "response", "close"}) EXPECT_EQ(EventsOf(s, type), 2) << type;
  EXPECT_EQ(SumOf(s, "imds_connections_total", {{"outcome", "established"}}), 2);
}

// A connect sends a record only while its caller's cgroup is not placed yet
// (the record wakes the agent to read /proc/PID/cgroup); after that a
// connection's first record is its request, which carries the attribution,
// and says that the handshake completed.
TEST_F(PipelineTest, OnlyTheFirstConnectOfACgroupSendsARecord) {
  StartImds();
  Pod pod = MakePod("placed", 1);
  WaitUntilKnown(pod);
  const auto before = agent_->Scrape();
  // one process, three connections, alive while the agent places its cgroup
  const std::string client =
      "import time, urllib.request\n"
      "for _ in range(3):\n"
      "    urllib.request.urlopen('http://169.254.169.254/latest/meta-data/instance-id', timeout=5).read()\n"
      "    time.sleep(0.5)\n";
  ASSERT_EQ(RunIn(pod, {"/usr/bin/python3", "-c", client}), 0);
  auto s = agent_->ScrapeUntil([&](const std::vector<Sample>& x) {
    return EventsOf(x, "close") >= EventsOf(before, "close") + 3 && SumOf(x, "imds_requests_total", pod.Labels()) >= 3;
  });
  EXPECT_EQ(EventsOf(s, "connect"), EventsOf(before, "connect") + 1);
  EXPECT_EQ(EventsOf(s, "request"), EventsOf(before, "request") + 3);
  EXPECT_EQ(SumOf(s, "imds_requests_total", With(pod.Labels(), {{"outcome", "ok"}, {"call", "metadata"}})), 3)
      << "every call attributed to the pod";
  EXPECT_EQ(SumOf(s, "imds_connections_total", With(pod.Labels(), {{"outcome", "established"}})), 3);
  EXPECT_EQ(SumOf(s, "imdswatch_events_lost_total", {{"reason", "decode_unknown_type"}}), 0);
}

TEST_F(PipelineTest, DiagnosesRefreshStormAndServesTheLifetime) {
  StartImds();
  Pod storm = MakePod("stormy", 1);
  Pod calm = MakePod("calm", 2);
  WaitUntilKnown(storm);
  std::string out;
  ASSERT_EQ(RunIn(calm, {"/usr/bin/python3", SourceDir() + "/tests/fixtures/clients/botocore_creds.py"}, &out), 0);
  ASSERT_EQ(RunIn(storm, {"/usr/bin/python3", SourceDir() + "/tests/fixtures/clients/botocore_creds.py", "--count",
                          "8"},
                  &out),
            0)
      << out;
  auto s = WaitForDiagnosis(storm, "refresh_storm");
  EXPECT_EQ(SumOf(s, "imds_diagnosis", With(storm.Labels(), {{"kind", "refresh_storm"}})), 1);
  EXPECT_EQ(SumOf(s, "imds_diagnosis", calm.Labels()), 0);
  // the stand-in serves 6 h credentials: that much is left, per role
  double left = SumOf(s, "imds_credentials_remaining_seconds", With(storm.Labels(), {{"role", "imdswatch-test-role"}}));
  EXPECT_GT(left, 21000);
  EXPECT_LE(left, 21600);
  EXPECT_EQ(SumOf(s, "imds_credential_fetch_interval_seconds_count", storm.Labels()), 7);
  std::string doctor;
  EXPECT_EQ(Doctor(&doctor, /*json=*/true), 1);
  EXPECT_NE(doctor.find("refresh_storm"), std::string::npos) << doctor;
  EXPECT_EQ(doctor.find(kCanary), std::string::npos);
}

TEST_F(PipelineTest, DiagnosesThrottlingForTheNoisyPod) {
  StartImds({"--throttle-above", "2"});
  Pod noisy = MakePod("noisy-batch", 1);
  Pod polite = MakePod("polite", 2);
  WaitUntilKnown(noisy);
  ASSERT_EQ(RunIn(polite, Curl({"http://169.254.169.254/latest/meta-data/instance-id"})), 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(1200));  // the stand-in's 1 s window moves on
  std::vector<std::string> argv = {"curl", "-sS"};
  for (int i = 0; i < 6; i++)
    argv.insert(argv.end(), {"-o", "/dev/null", "http://169.254.169.254/latest/meta-data/instance-id"});
  RunIn(noisy, argv);
  auto s = WaitForDiagnosis(noisy, "throttled");
  EXPECT_EQ(SumOf(s, "imds_diagnosis", With(noisy.Labels(), {{"kind", "throttled"}})), 1);
  EXPECT_EQ(SumOf(s, "imds_diagnosis", With(polite.Labels(), {{"kind", "throttled"}})), 0);
}

TEST_F(PipelineTest, DiagnosesImdsV1ForTheClientStillUsingIt) {
  StartImds();
  Pod legacy = MakePod("legacy", 1);
  Pod modern = MakePod("modern", 2);
  WaitUntilKnown(legacy);
  std::string token;
  ASSERT_EQ(RunIn(modern, {"curl", "-sS", "-X", "PUT", "-H", "X-aws-ec2-metadata-token-ttl-seconds: 60",
                           "http://169.254.169.254/latest/api/token"},
                  &token),
            0);
  token = token.substr(0, token.find('\n'));
  ASSERT_EQ(RunIn(modern, Curl({"-H", "X-aws-ec2-metadata-token: " + token,
                                "http://169.254.169.254/latest/meta-data/instance-id"})),
            0);
  ASSERT_EQ(RunIn(legacy, Curl({"http://169.254.169.254/latest/meta-data/instance-id"})), 0);
  auto s = WaitForDiagnosis(legacy, "imdsv1");
  EXPECT_EQ(SumOf(s, "imds_diagnosis", With(legacy.Labels(), {{"kind", "imdsv1"}})), 1);
  EXPECT_EQ(SumOf(s, "imds_diagnosis", modern.Labels()), 0);
  std::string doctor;
  Doctor(&doctor);
  EXPECT_NE(doctor.find("curl"), std::string::npos) << doctor;
}

TEST_F(PipelineTest, DiagnosesTimeLostForTheSlowPod) {
  StartImds({"--slow-ms", "700"});
  Pod slow = MakePod("slowpoke", 1);
  Pod brief = MakePod("brief", 2);
  WaitUntilKnown(slow);
  // 4 × 0.7 s in a 20 s window is 14 % of the time; one call is 3.5 %
  ASSERT_EQ(RunIn(brief, Curl({"http://169.254.169.254/latest/meta-data/instance-id"})), 0);
  for (int i = 0; i < 4; i++)
    ASSERT_EQ(RunIn(slow, Curl({"http://169.254.169.254/latest/meta-data/instance-id"})), 0);
  auto s = WaitForDiagnosis(slow, "slow");
  EXPECT_EQ(SumOf(s, "imds_diagnosis", With(slow.Labels(), {{"kind", "slow"}})), 1);
  EXPECT_EQ(SumOf(s, "imds_diagnosis", With(brief.Labels(), {{"kind", "slow"}})), 0);
}

TEST_F(PipelineTest, MalformedRequestIsAParseErrorNotACall) {
  StartImds();
  Pod pod = MakePod("garbage", 1);
  WaitUntilKnown(pod);
  auto before = agent_->Scrape();
  double errors_before = SumOf(before, "imdswatch_http_parse_errors_total",
                               {{"reason", "bad_request_line"}, {"direction", "request"}});
  RunIn(pod, {"bash", "-c",
              "exec 3<>/dev/tcp/169.254.169.254/80; printf 'get / HTTP/1.1\r\n\r\n' >&3; timeout 1 cat <&3"});
  // no request record: the close (after `timeout 1`) says the handshake completed
  auto s = agent_->ScrapeUntil([&](const std::vector<Sample>& x) {
    return SumOf(x, "imdswatch_http_parse_errors_total", {{"reason", "bad_request_line"}}) > errors_before &&
           SumOf(x, "imds_connections_total", With(pod.Labels(), {{"outcome", "established"}})) >= 1;
  });
  EXPECT_EQ(SumOf(s, "imdswatch_http_parse_errors_total", {{"reason", "bad_request_line"}, {"direction", "request"}}),
            errors_before + 1);
  EXPECT_EQ(SumOf(s, "imds_requests_total", pod.Labels()), 0);
  EXPECT_EQ(SumOf(s, "imds_connections_total", With(pod.Labels(), {{"outcome", "established"}})), 1);
}

TEST_F(PipelineTest, SelfHealthIsExported) {
  // the previous test's close event may still wait for the agent's drain timer (250 ms)
  auto s = agent_->ScrapeUntil(
      [](const std::vector<Sample>& x) { return SumOf(x, "imdswatch_map_entries", {{"map", "connections"}}) == 0; });
  // each reason is exported from the start (PodThatAppearsLaterGetsItsNames counts one)
  EXPECT_EQ(CountOf(s, "imdswatch_attribution_failures_total", {{"reason", "pod_unknown"}}), 1u);
  EXPECT_EQ(SumOf(s, "imdswatch_map_entries", {{"map", "connections"}}), 0);
  EXPECT_EQ(SumOf(s, "imdswatch_build_info"), 1);
  EXPECT_EQ(SumOf(s, "imdswatch_kube_api_up"), 1);
  EXPECT_GT(SumOf(s, "imdswatch_kube_api_last_sync_timestamp_seconds"), 1.7e9);
  // nothing lost (a response after a client's half-close is not an orphan any more)
  EXPECT_EQ(SumOf(s, "imdswatch_events_lost_total"), 0);
  EXPECT_EQ(CountOf(s, "imdswatch_events_lost_total", {{"reason", "ringbuf_full"}}), 1u);
  EXPECT_EQ(CountOf(s, "imdswatch_map_capacity", {{"map", "connections"}}), 1u);
  // this kernel (6.x) takes the newest mode of each part
  EXPECT_EQ(SumOf(s, "imdswatch_probe_mode", {{"part", "connection_claim"}, {"mode", "cmpxchg"}}), 1);
  EXPECT_EQ(SumOf(s, "imdswatch_probe_mode", {{"part", "forwarding_drops"}, {"mode", "tp_btf"}}), 1);
  EXPECT_EQ(SumOf(s, "imdswatch_probe_mode", {{"part", "half_close"}, {"mode", "followed"}}), 1);
  EXPECT_EQ(CountOf(s, "imdswatch_probe_mode"), 3u);
  std::string body;
  EXPECT_EQ(HttpGet(agent_->Url("/healthz"), &body), 200);
  EXPECT_NE(body.find("6 programs attached"), std::string::npos) << body;
}

// Every page the hooks write (the connection table, the ring, ...) was
// written at load, so no metadata call pays a page's first write.
TEST_F(PipelineTest, MapsAreWrittenAheadOfTheHooks) {
  const std::string log = ReadFile(agent_->log_file());
  EXPECT_EQ(log.find("not written ahead"), std::string::npos) << log;
  const std::string marker = "wrote ";
  const size_t at = log.find(marker);
  ASSERT_NE(at, std::string::npos) << log;
  const size_t kib = std::stoul(log.substr(at + marker.size()));
  // the ring (1 MiB by default) and the connection table at the least (a
  // slot holds two parsers' state: over 256 bytes)
  const size_t table_kib = IMDS_SOCK_SETS * IMDS_SOCK_WAYS * 256 / 1024;
  EXPECT_GE(kib, 1024 + table_kib) << log.substr(at, 120);
  EXPECT_NE(log.find("KiB of map memory ahead of the hooks", at), std::string::npos);
}

}  // namespace
}  // namespace imdswatch::testing
