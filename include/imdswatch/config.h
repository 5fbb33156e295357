// Everything the command line decides, validated.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "imdswatch/diagnoser.h"
#include "imdswatch/endpoint.h"
#include "imdswatch/web_config.h"

namespace imdswatch {

struct KubeOptions {
  bool enabled = true;
  std::string api_server;  // "" = in-cluster
  std::string token_file;
  std::string ca_file;
  std::string node_name;  // "" = $NODE_NAME
};

struct AgentConfig {
  std::vector<Endpoint> endpoints;
  std::string cgroup_root;  // "" = detect
  std::string listen_address = ":10169";
  std::optional<WebConfig> web;  // --web.config.file, parsed and checked
  std::string log_level = "info";
  std::string log_format = "text";
  KubeOptions kube;
  std::chrono::seconds series_ttl{300};
  uint32_t ringbuf_bytes = 1u << 20;
  DiagnosisThresholds diagnosis;
  bool watch_forwarding = true;
  bool forwarding_raw_tp = false;  // --forwarding-drops.raw-tp
  bool plain_store_claim = false;  // --connections.plain-store
};

enum class OutputFormat { kText, kJson };

enum class Mode { kAgent, kTrace, kDoctor };

struct Command {
  Mode mode = Mode::kAgent;
  AgentConfig agent;
  OutputFormat output = OutputFormat::kText;
  // doctor: a running agent's base URL, or watch locally for doctor_duration
  std::string doctor_url;
  std::chrono::seconds doctor_duration{60};
};

// Parses argv; on bad input returns false with a one-line message naming the
// flag in *error, or with *exit_now set for --help/--version (message in *error).
bool ParseCommandLine(int argc, char** argv, Command* command, std::string* error, bool* exit_now);

// "90s", "5m", "2h", "1500ms" (rounded up to seconds), or a bare number of seconds.
bool ParseDuration(const std::string& text, std::chrono::seconds* out);

}  // namespace imdswatch
