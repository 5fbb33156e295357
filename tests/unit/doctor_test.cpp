#include "imdswatch/doctor.h"

#include <gtest/gtest.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "imdswatch/diagnoser.h"

namespace imdswatch {
namespace {

using namespace std::chrono_literals;

Finding HopLimitFinding() {
  Finding f;
  f.who = Workload{"shop", "checkout", "checkout-7d9f-x2", "api"};
  f.kind = "hop_limit";
  f.client = "botocore";
  f.numbers = {{"token_timeouts", 3}, {"token_wait_seconds", 1.0000001}, {"v1_answered", 3}, {"window_seconds", 60}};
  f.evidence = "3 IMDSv2 token PUTs got no response.";
  f.cause = "The reply dies one hop short.";
  f.fix = "Set the instance's http-put-response-hop-limit to 2 (3 with some overlay CNIs).";
  return f;
}

Finding HostFinding() {
  Finding f;
  f.who = Workload{"", "cloud-init", "", ""};
  f.kind = "imdsv1";
  f.client = "curl";
  f.numbers = {{"v1_requests", 12}};
  f.evidence = "12 IMDSv1 requests, \"quoted\" \\ and üñí.";
  f.cause = "curl is still using IMDSv1.";
  f.fix = "PUT /latest/api/token first.";
  return f;
}

TEST(Doctor, JsonRoundTrip) {
  const std::vector<Finding> findings = {HopLimitFinding(), HostFinding()};
  const std::string json = FindingsJson(findings);
  std::string error = "stale";
  const auto parsed = ParseFindingsJson(json, &error);
  EXPECT_EQ(error, "");
  EXPECT_EQ(parsed, findings);
  // FormatFindings(json) is the same document.
  EXPECT_EQ(ParseFindingsJson(FormatFindings(findings, true), &error), findings);
  EXPECT_TRUE(nlohmann::json::parse(FormatFindings(findings, true)).is_array());
  EXPECT_EQ(ParseFindingsJson(FindingsJson({}), &error), std::vector<Finding>{});
  EXPECT_EQ(error, "");
}

TEST(Doctor, JsonFieldsAreNamedAsDocumented) {
  const auto doc = nlohmann::json::parse(FindingsJson({HopLimitFinding()}));
  ASSERT_EQ(doc.size(), 1u);
  const auto& f = doc[0];
  EXPECT_EQ(f.at("namespace"), "shop");
  EXPECT_EQ(f.at("workload"), "checkout");
  EXPECT_EQ(f.at("pod"), "checkout-7d9f-x2");
  EXPECT_EQ(f.at("container"), "api");
  EXPECT_EQ(f.at("kind"), "hop_limit");
  EXPECT_EQ(f.at("client"), "botocore");
  EXPECT_EQ(f.at("numbers").at("token_timeouts"), 3);
  EXPECT_EQ(f.size(), 10u);
}

TEST(Doctor, ParseIsTolerant) {
  std::string error;
  const auto parsed = ParseFindingsJson(R"({"agent": "x", "findings": [
      {"pod": "p", "namespace": "n", "kind": "slow", "extra": {"deep": [1, 2]}, "client": 7,
       "numbers": {"share": 0.35, "note": "text", "flag": true, "n": null}},
      {}
    ]})",
                                        &error);
  EXPECT_EQ(error, "");
  ASSERT_EQ(parsed.size(), 2u);
  EXPECT_EQ(parsed[0].who.pod, "p");
  EXPECT_EQ(parsed[0].who.namespace_name, "n");
  EXPECT_EQ(parsed[0].kind, "slow");
  EXPECT_EQ(parsed[0].client, "");  // not a string: left empty
  EXPECT_EQ(parsed[0].numbers, (std::map<std::string, double>{{"share", 0.35}}));
  EXPECT_EQ(parsed[1], Finding{});
}

TEST(Doctor, ParseRejectsMalformedInput) {
  for (const char* bad : {"", "not json", "[1, 2]", R"({"other": []})", R"("a string")", "[{\"pod\": \"p\"}",
                          R"({"findings": {"pod": "p"}})"}) {
    std::string error;
    EXPECT_TRUE(ParseFindingsJson(bad, &error).empty()) << bad;
    EXPECT_FALSE(error.empty()) << bad;
  }
  EXPECT_TRUE(ParseFindingsJson("nope", nullptr).empty());  // error is optional
}

TEST(Doctor, TextIsOneBlockPerFinding) {
  const std::string text = FormatFindings({HopLimitFinding(), HostFinding()}, false);
  const std::string want =
      "shop/checkout-7d9f-x2 (api) \u2014 hop_limit: IMDSv2 token replies are lost (hop limit too low)\n"
      "  Evidence: 3 IMDSv2 token PUTs got no response.\n"
      "  Cause: The reply dies one hop short.\n"
      "  Fix: Set the instance's http-put-response-hop-limit to 2 (3 with some overlay CNIs).\n"
      "\n"
      "cloud-init \u2014 imdsv1: IMDSv1 is still in use\n"
      "  Evidence: 12 IMDSv1 requests, \"quoted\" \\ and üñí.\n"
      "  Cause: curl is still using IMDSv1.\n"
      "  Fix: PUT /latest/api/token first.\n";
  EXPECT_EQ(text, want);
}

TEST(Doctor, NothingFound) {
  EXPECT_EQ(FormatFindings({}, false), "No metadata-service problems found.\n");
  EXPECT_EQ(nlohmann::json::parse(FormatFindings({}, true)), nlohmann::json::array());
}

TEST(Doctor, ExitCodes) {
  EXPECT_EQ(DoctorExitCode({}), 0);
  EXPECT_EQ(DoctorExitCode({HostFinding()}), 1);
  EXPECT_EQ(DoctorExitCode({HostFinding(), HopLimitFinding()}), 1);
}

// What the agent serves is what doctor prints.
TEST(Doctor, ReadsWhatTheDiagnoserServes) {
  auto steady = std::chrono::steady_clock::time_point(100h);
  const auto wall = ParseExpiration("2026-11-25T12:00:00Z").value();
  Diagnoser diag([](uint64_t, std::string_view) { return Workload{"shop", "checkout", "checkout-1", "api"}; },
                 DiagnosisThresholds{}, DiagnoserClock{[&] { return steady; }, [&] { return wall; }});
  CallRecord token;
  token.sample = {Call::kToken, Version::kV2, Client::kBotocore, Outcome::kTimeout, 0, 1.0, 0};
  CallRecord v1;
  v1.sample = {Call::kMetadata, Version::kV1, Client::kBotocore, Outcome::kOk, 200, 0.002, 0.001};
  diag.OnCall(1, "python3", token);
  diag.OnCall(1, "python3", v1);
  EXPECT_EQ(diag.Evaluate().size(), 2u);

  std::string error;
  const auto findings = ParseFindingsJson(diag.CurrentJson(), &error);
  ASSERT_EQ(error, "");
  EXPECT_EQ(findings, diag.Current());
  EXPECT_EQ(DoctorExitCode(findings), 1);
  const std::string text = FormatFindings(findings, false);
  EXPECT_EQ(text.rfind("shop/checkout-1 (api) \u2014 hop_limit: ", 0), 0u) << text;
  EXPECT_NE(text.find("  Fix: Set the instance's http-put-response-hop-limit to 2 (3 with some overlay CNIs)"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("shop/checkout-1 (api) \u2014 imdsv1: "), std::string::npos) << text;
}

}  // namespace
}  // namespace imdswatch
