// Command line: good values parse, bad ones name their flag.
#include "imdswatch/config.h"

#include <gtest/gtest.h>

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

TEST(Config, TraceSubcommand) {
  auto p = Parse({"trace", "--output", "json", "--no-kube"});
  ASSERT_TRUE(p.ok) << p.error;
  EXPECT_EQ(p.command.mode, Mode::kTrace);
  EXPECT_EQ(p.command.output, OutputFormat::kJson);
}

TEST(Config, BadValuesNameTheirFlag) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--no-kube", "--endpoint", "nonsense"}, "--endpoint"},
      {{"--no-kube", "--endpoint", "1.2.3.4:99999"}, "--endpoint"},
      {{"--no-kube", "--endpoint", "[fd00::1:80"}, "--endpoint"},
      {{"--no-kube", "--series-ttl", "soon"}, "--series-ttl"},
      {{"--no-kube", "--series-ttl", "0s"}, "--series-ttl"},
      {{"--no-kube", "--log-level", "loud"}, "--log-level"},
      {{"--no-kube", "--log-format", "xml"}, "--log-format"},
      {{"--no-kube", "--web.listen-address", "10169"}, "--web.listen-address"},
      {{"--no-kube", "--ringbuf-size", "12"}, "--ringbuf-size"},
      {{"--no-kube", "--no-such-flag"}, "--no-such-flag"},
      {{"trace", "--no-kube", "--output", "yaml"}, "--output"},
  };
  for (const auto& [args, flag] : cases) {
    auto p = Parse(args);
    EXPECT_FALSE(p.ok) << args.back();
    EXPECT_NE(p.error.find(flag), std::string::npos) << p.error;
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
