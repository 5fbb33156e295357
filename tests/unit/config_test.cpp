// Command line: good values parse, bad ones name their flag.
#include "imdswatch/config.h"

#include <gtest/gtest.h>

#include <regex>
#include <set>
#include <vector>

namespace imdswatch {
namespace {

struct Parsed {
  bool ok;
  bool exit_now;
  std::string error;
  Command command;
};

Parsed Parse(std::vector<std::string> args) {
  args.insert(args.begin(), "imdswatch");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  Parsed p;
  p.ok = ParseCommandLine(static_cast<int>(argv.size()), argv.data(), &p.command, &p.error, &p.exit_now);
  return p;
}

TEST(Config, DefaultsWatchBothEc2Endpoints) {
  auto p = Parse({"--no-kube"});
  ASSERT_TRUE(p.ok) << p.error;
  ASSERT_EQ(p.command.agent.endpoints.size(), 2u);
  EXPECT_EQ(p.command.agent.endpoints[0].ToString(), "169.254.169.254:80");
  EXPECT_EQ(p.command.agent.endpoints[1].ToString(), "[fd00:ec2::254]:80");
  EXPECT_EQ(p.command.agent.listen_address, ":10169");
  EXPECT_EQ(p.command.agent.series_ttl.count(), 300);
  EXPECT_FALSE(p.command.agent.kube.enabled);
}

TEST(Config, ExtraEndpointsAndDurations) {
  auto p = Parse({"--no-kube", "--endpoint", "169.254.170.2:80", "--endpoint", "[fd00::23]:8080", "--series-ttl",
                  "90s"});
  ASSERT_TRUE(p.ok) << p.error;
  ASSERT_EQ(p.command.agent.endpoints.size(), 4u);
  EXPECT_EQ(p.command.agent.endpoints[3].port, 8080);
  EXPECT_EQ(p.command.agent.series_ttl.count(), 90);
}

TEST(Config, ForwardingDropsHookIsChosenByTheKernelUnlessRawTpIsAskedFor) {
  auto p = Parse({"--no-kube"});
  ASSERT_TRUE(p.ok) << p.error;
  EXPECT_TRUE(p.command.agent.watch_forwarding);
  EXPECT_FALSE(p.command.agent.forwarding_raw_tp);
  p = Parse({"--no-kube", "--forwarding-drops.raw-tp"});
  ASSERT_TRUE(p.ok) << p.error;
  EXPECT_TRUE(p.command.agent.watch_forwarding);
  EXPECT_TRUE(p.command.agent.forwarding_raw_tp);
}

TEST(Config, ConnectionSlotsAreClaimedByTheKernelsBestUnlessPlainStoreIsAskedFor) {
  auto p = Parse({"--no-kube"});
  ASSERT_TRUE(p.ok) << p.error;
  EXPECT_FALSE(p.command.agent.plain_store_claim);
  p = Parse({"--no-kube", "--connections.plain-store"});
  ASSERT_TRUE(p.ok) << p.error;
  EXPECT_TRUE(p.command.agent.plain_store_claim);
}

TEST(Config, TraceSubcommand) {
  auto p = Parse({"trace", "--output", "json", "--no-kube"});
  ASSERT_TRUE(p.ok) << p.error;
  EXPECT_EQ(p.command.mode, Mode::kTrace);
  EXPECT_EQ(p.command.output, OutputFormat::kJson);
}

// Every flag of every command, with a bad value, and the flag its error must
// name. EveryFlagIsCovered keeps this list complete as flags are added.
struct BadValue {
  std::vector<std::string> args;
  std::string flag;
};

const std::vector<BadValue>& BadValues() {
  static const std::vector<BadValue> cases = {
      {{"--endpoint", "nonsense"}, "--endpoint"},
      {{"--endpoint", "1.2.3.4:99999"}, "--endpoint"},
      {{"--endpoint", "[fd00::1:80"}, "--endpoint"},
      {{"--endpoint", "1.1.1.1:80", "--endpoint", "1.1.1.2:80", "--endpoint", "1.1.1.3:80", "--endpoint", "1.1.1.4:80",
        "--endpoint", "1.1.1.5:80", "--endpoint", "1.1.1.6:80", "--endpoint", "1.1.1.7:80"},
       "--endpoint"},
      {{"--cgroup-root", "/no/such/dir"}, "--cgroup-root"},
      {{"--kube-api-server", "kubernetes.default:443"}, "--kube-api-server"},
      {{"--kube-token-file", "/no/such/token"}, "--kube-token-file"},
      {{"--kube-ca-file", "/no/such/ca.crt"}, "--kube-ca-file"},
      {{"--node-name", ""}, "--node-name"},
      {{"--no-kube=maybe"}, "--no-kube"},
      {{"--ringbuf-size", "12"}, "--ringbuf-size"},
      {{"--ringbuf-size", "lots"}, "--ringbuf-size"},
      {{"--log-level", "loud"}, "--log-level"},
      {{"--log-format", "xml"}, "--log-format"},
      {{"--web.listen-address", "10169"}, "--web.listen-address"},
      {{"--web.config.file", "/no/such/web.yml"}, "--web.config.file"},
      {{"--series-ttl", "soon"}, "--series-ttl"},
      {{"--series-ttl", "0s"}, "--series-ttl"},
      {{"--diagnosis.window", "0s"}, "--diagnosis.window"},
      {{"--diagnosis.window", "a while"}, "--diagnosis.window"},
      {{"--diagnosis.hop-limit-token-timeouts", "0"}, "--diagnosis.hop-limit-token-timeouts"},
      {{"--diagnosis.refresh-storm-fetches", "-3"}, "--diagnosis.refresh-storm-fetches"},
      {{"--diagnosis.refresh-storm-interval-share", "1.5"}, "--diagnosis.refresh-storm-interval-share"},
      {{"--diagnosis.throttled-failures", "many"}, "--diagnosis.throttled-failures"},
      {{"--diagnosis.imdsv1-requests", "0"}, "--diagnosis.imdsv1-requests"},
      {{"--diagnosis.slow-share", "-0.1"}, "--diagnosis.slow-share"},
      {{"--no-forwarding-drops=perhaps"}, "--no-forwarding-drops"},
      {{"--forwarding-drops.raw-tp=often"}, "--forwarding-drops.raw-tp"},
      {{"--connections.plain-store=yes-please"}, "--connections.plain-store"},
      {{"--no-such-flag"}, "--no-such-flag"},
      {{"trace", "--output", "yaml"}, "--output"},
      {{"trace", "--log-level", "loud"}, "--log-level"},
      {{"doctor", "--url", "localhost:10169"}, "--url"},
      {{"doctor", "--duration", "0s"}, "--duration"},
      {{"doctor", "--duration", "forever"}, "--duration"},
      {{"doctor", "--output", "yaml"}, "--output"},
      {{"doctor", "--diagnosis.slow-share", "2"}, "--diagnosis.slow-share"},
  };
  return cases;
}

TEST(Config, BadValuesNameTheirFlag) {
  for (const auto& [args, flag] : BadValues()) {
    std::vector<std::string> argv = args;
    argv.push_back("--no-kube");  // so that a missing node name is not the error
    if (flag == "--no-kube" || flag == "--node-name" || flag.rfind("--kube", 0) == 0) argv.pop_back();
    auto p = Parse(argv);
    EXPECT_FALSE(p.ok) << flag << " accepted " << args.back();
    EXPECT_NE(p.error.find(flag), std::string::npos) << "error for " << args.back() << " does not name " << flag
                                                     << ": " << p.error;
  }
}

// The flags a command's --help lists.
std::set<std::string> FlagsOf(const std::vector<std::string>& command) {
  std::vector<std::string> args = command;
  args.push_back("--help");
  auto p = Parse(args);
  EXPECT_TRUE(p.exit_now);
  std::set<std::string> flags;
  const std::regex flag(R"((^|[\s,])(--[a-z][a-z0-9.-]*))");
  for (std::sregex_iterator it(p.error.begin(), p.error.end(), flag), end; it != end; ++it) flags.insert((*it)[2]);
  flags.erase("--help");
  flags.erase("--version");
  return flags;
}

TEST(Config, EveryFlagIsCovered) {
  for (const std::vector<std::string>& command : {std::vector<std::string>{}, {"trace"}, {"doctor"}}) {
    const std::set<std::string> flags = FlagsOf(command);
    EXPECT_GT(flags.size(), 8u) << "could not read the flags from --help";
    for (const std::string& flag : flags) {
      bool covered = false;
      for (const auto& bad : BadValues()) covered = covered || bad.flag == flag;
      EXPECT_TRUE(covered) << flag << " has no bad-value case in BadValues()";
    }
  }
}

TEST(Config, KubeNeedsANodeName) {
  unsetenv("NODE_NAME");
  auto p = Parse({});
  EXPECT_FALSE(p.ok);
  EXPECT_NE(p.error.find("--node-name"), std::string::npos);
  setenv("NODE_NAME", "node-7", 1);
  p = Parse({});
  EXPECT_TRUE(p.ok) << p.error;
  EXPECT_EQ(p.command.agent.kube.node_name, "node-7");
  unsetenv("NODE_NAME");
}

TEST(Config, Durations) {
  std::chrono::seconds d;
  EXPECT_TRUE(ParseDuration("5m", &d));
  EXPECT_EQ(d.count(), 300);
  EXPECT_TRUE(ParseDuration("2h", &d));
  EXPECT_EQ(d.count(), 7200);
  EXPECT_TRUE(ParseDuration("1500ms", &d));
  EXPECT_EQ(d.count(), 2);
  EXPECT_FALSE(ParseDuration("-1s", &d));
  EXPECT_FALSE(ParseDuration("5 parsecs", &d));
}

}  // namespace
}  // namespace imdswatch
