// Secrets never linger in the agent's BPF maps. The parsers load a
// metadata connection's bytes into a per-CPU scratch buffer, window by
// window: request heads (with the IMDSv2 token header) and the last bytes of
// every credentials answer (where the session Token ends). The agent never
// exports them, but anyone with CAP_BPF or CAP_SYS_ADMIN on the node can
// dump a map (`bpftool map dump`), so nothing secret may stay there once a
// program has run. The test makes IMDSv2 credential fetches, then dumps
// every map the agent holds and looks for any 16 bytes of the token,
// AccessKeyId, SecretAccessKey or session Token.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>

#include <nlohmann/json.hpp>

#include "hardening/hardening.h"

namespace imdswatch::testing {
namespace {

class SecretsTest : public ::testing::Test {
 protected:
  void SetUp() override { HARDENING_REQUIRE_KERNEL(); }
};

// Map id -> name of every BPF map the process holds.
std::map<uint64_t, std::string> MapsOf(pid_t pid) {
  std::map<uint64_t, std::string> maps;
  const std::string dir = "/proc/" + std::to_string(pid);
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir + "/fd", ec)) {
    std::error_code link_ec;
    if (std::filesystem::read_symlink(entry.path(), link_ec).string() != "anon_inode:bpf-map") continue;
    std::ifstream in(dir + "/fdinfo/" + entry.path().filename().string());
    std::string key, value;
    while (in >> key >> value)
      if (key == "map_id:") maps[std::stoull(value)] = "";
  }
  for (auto& [id, name] : maps) {
    std::string out;
    RunCommand({"bpftool", "-j", "map", "show", "id", std::to_string(id)}, {}, std::chrono::seconds(10), &out);
    auto j = nlohmann::json::parse(out, nullptr, false);
    if (j.is_object() && j.contains("name")) name = j["name"].get<std::string>();
  }
  return maps;
}

// Every byte array in a `bpftool -j map dump`: BTF-formatted integer arrays
// and raw "0x.." hex strings alike, each followed by a separator.
void CollectBytes(const nlohmann::json& j, std::string* out) {
  if (j.is_array()) {
    bool bytes = !j.empty();
    for (const auto& x : j) {
      if (x.is_number_integer() && x.get<int64_t>() >= 0 && x.get<int64_t>() <= 255) continue;
      if (x.is_string() && x.get<std::string>().rfind("0x", 0) == 0 && x.get<std::string>().size() == 4) continue;
      bytes = false;
      break;
    }
    if (bytes) {
      for (const auto& x : j)
        out->push_back(static_cast<char>(x.is_number_integer() ? x.get<int>()
                                                              : std::stoi(x.get<std::string>().substr(2), nullptr, 16)));
      out->push_back('\0');
      return;
    }
    for (const auto& x : j) CollectBytes(x, out);
  } else if (j.is_object()) {
    for (const auto& [k, v] : j.items()) CollectBytes(v, out);
  }
}

TEST_F(SecretsTest, NoSecretLingersInTheAgentsMaps) {
  TempDir dir("secrets");
  LoopbackImds imds(dir.path(), {"--canary", "MAPCANARY"});
  Agent agent({"--no-kube", "--endpoint", imds.Endpoint()}, dir.path() + "/agent.log");
  PodCgroup pod;
  std::map<std::string, std::string> secrets;  // value -> what
  for (int i = 0; i < 4; i++) {  // several fetches: the programs run on either CPU
    std::string token, creds;
    ASSERT_EQ(RunCommand({"curl", "-sS", "-X", "PUT", "-H", "X-aws-ec2-metadata-token-ttl-seconds: 60",
                          imds.Url("/latest/api/token")},
                         {.cgroup = pod.cgroup->full()}, std::chrono::seconds(10), &token),
              0);
    ASSERT_EQ(RunCommand({"curl", "-sS", "-H", "X-aws-ec2-metadata-token: " + token,
                          imds.Url("/latest/meta-data/iam/security-credentials/imdswatch-test-role")},
                         {.cgroup = pod.cgroup->full()}, std::chrono::seconds(10), &creds),
              0);
    auto j = nlohmann::json::parse(creds, nullptr, false);
    ASSERT_TRUE(j.is_object()) << creds;
    secrets[token] = "IMDSv2 token";
    for (const char* key : {"AccessKeyId", "SecretAccessKey", "Token"}) secrets[j[key].get<std::string>()] = key;
  }
  agent.ScrapeUntil([&](const std::vector<Sample>& s) {
    return SumOf(s, "imds_requests_total", {{"pod", pod.uid}}) >= 8;
  });

  const auto maps = MapsOf(agent.process().pid());
  ASSERT_FALSE(maps.empty());
  size_t dumped = 0, leaks = 0;
  for (const auto& [id, name] : maps) {
    std::string out;
    if (RunCommand({"bpftool", "-j", "map", "dump", "id", std::to_string(id)}, {}, std::chrono::seconds(10), &out) !=
        0)
      continue;  // ring buffers and program arrays cannot be dumped
    auto j = nlohmann::json::parse(out, nullptr, false);
    std::string bytes;
    CollectBytes(j, &bytes);
    dumped += bytes.size();
    for (const auto& [value, what] : secrets) {
      for (size_t at = 0; at + 16 <= value.size(); at++) {
        if (bytes.find(value.substr(at, 16)) == std::string::npos) continue;
        const size_t pos = bytes.find(value.substr(at, 16));
        size_t end = pos;
        while (end < bytes.size() && bytes[end] != '\0' && end - pos < 120) end++;
        std::printf("map %s (id %llu) holds %s bytes %zu.. of %zu: %s\n", name.c_str(),
                    static_cast<unsigned long long>(id), what.c_str(), at, value.size(),
                    bytes.substr(pos, end - pos).c_str());
        leaks++;
        break;
      }
    }
  }
  std::printf("dumped %zu bytes from %zu maps of the agent; %zu secret fragments found\n", dumped, maps.size(), leaks);
  EXPECT_EQ(leaks, 0u) << "secret bytes stay in BPF map memory after the programs ran";
}

}  // namespace
}  // namespace imdswatch::testing
