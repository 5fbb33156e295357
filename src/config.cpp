#include "imdswatch/config.h"

#include <CLI/CLI.hpp>

#include <cstdlib>

#include "imdswatch/web_security.h"

namespace imdswatch {

bool ParseDuration(const std::string& text, std::chrono::seconds* out) {
  size_t pos = 0;
  double value = 0;
  try {
    value = std::stod(text, &pos);
  } catch (...) {
    return false;
  }
  if (value < 0) return false;
  std::string unit = text.substr(pos);
  double seconds;
  if (unit.empty() || unit == "s") seconds = value;
  else if (unit == "ms") seconds = value / 1000;
  else if (unit == "m") seconds = value * 60;
  else if (unit == "h") seconds = value * 3600;
  else return false;
  *out = std::chrono::seconds(static_cast<int64_t>(seconds + 0.999));
  return true;
}

namespace {

// Validators whose message CLI11 prefixes with the flag's name.
CLI::Validator HttpUrl() {
  return CLI::Validator(
      [](const std::string& url) -> std::string {
        if (url.rfind("https://", 0) == 0 || url.rfind("http://", 0) == 0) return "";
        return "'" + url + "' is not an http:// or https:// URL";
      },
      "URL");
}

CLI::Validator NotEmpty() {
  return CLI::Validator([](const std::string& v) -> std::string { return v.empty() ? "must not be empty" : ""; },
                        "TEXT");
}

// Flags shared by the agent and trace: where to look and how to name it.
void AddProbeFlags(CLI::App* app, AgentConfig* cfg, std::vector<std::string>* endpoints, bool* no_kube) {
  app->add_option("--endpoint", *endpoints,
                  "Extra metadata endpoint ADDR:PORT or [V6ADDR]:PORT to watch (repeatable); "
                  "169.254.169.254:80 and [fd00:ec2::254]:80 are always watched");
  app->add_option("--cgroup-root", cfg->cgroup_root, "cgroup v2 mount (default: found in /proc/self/mountinfo)")
      ->check(CLI::ExistingDirectory);
  app->add_option("--kube-api-server", cfg->kube.api_server,
                  "Kubernetes API URL (default: in-cluster; http:// allowed when given here)")
      ->check(HttpUrl());
  app->add_option("--kube-token-file", cfg->kube.token_file, "bearer token file for the Kubernetes API")
      ->check(CLI::ExistingFile);
  app->add_option("--kube-ca-file", cfg->kube.ca_file, "CA bundle for the Kubernetes API")->check(CLI::ExistingFile);
  app->add_option("--node-name", cfg->kube.node_name, "this node's name (default: $NODE_NAME)")->check(NotEmpty());
  app->add_flag("--no-kube", *no_kube, "run without the Kubernetes API (pods named by UID)");
  app->add_option("--ringbuf-size", cfg->ringbuf_bytes, "kernel-to-agent ring buffer size in bytes")
      ->check(CLI::Range(4096u, 1u << 30));
  app->add_option("--log-level", cfg->log_level, "trace|debug|info|warn|error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}));
  app->add_option("--log-format", cfg->log_format, "text|json")->check(CLI::IsMember({"text", "json"}));
}

}  // namespace

bool ParseCommandLine(int argc, char** argv, Command* command, std::string* error, bool* exit_now) {
  *exit_now = false;
  CLI::App app{"imdswatch: per-pod visibility of instance-metadata (IMDS) calls, from eBPF"};
  app.set_version_flag("--version", std::string("imdswatch ") + IMDSWATCH_VERSION);
  AgentConfig& cfg = command->agent;
  std::vector<std::string> endpoints;
  std::string series_ttl = "5m";
  std::string output = "text";
  bool no_kube = false;

  AddProbeFlags(&app, &cfg, &endpoints, &no_kube);
  app.add_option("--web.listen-address", cfg.listen_address, "address for /metrics, /healthz, /readyz");
  std::string web_config_file;
  app.add_option("--web.config.file", web_config_file,
                 "TLS and authentication of the endpoint (Prometheus exporter-toolkit web config format)");
  app.add_option("--series-ttl", series_ttl, "drop series of containers gone for this long (e.g. 5m)");

  DiagnosisThresholds& d = cfg.diagnosis;
  std::string window = std::to_string(d.window.count()) + "s";
  auto add_diagnosis_flags = [&](CLI::App* a) {
    a->add_option("--diagnosis.window", window, "diagnoses judge the last window and clear when it is quiet");
    a->add_option("--diagnosis.hop-limit-token-timeouts", d.hop_limit_min_token_timeouts,
                  "token PUTs timed out with no answer (with answered IMDSv1 calls) that name a hop-limit problem")
        ->check(CLI::PositiveNumber);
    a->add_option("--diagnosis.refresh-storm-fetches", d.refresh_storm_min_fetches,
                  "credential fetches in the window that can be a refresh storm")
        ->check(CLI::PositiveNumber);
    a->add_option("--diagnosis.refresh-storm-interval-share", d.refresh_storm_max_interval_share,
                  "a storm: fetch interval below this share of the lifetime left")
        ->check(CLI::Range(0.0, 1.0));
    a->add_option("--diagnosis.throttled-failures", d.throttled_min_failures,
                  "throttled, timed-out, reset or refused calls in the window that name throttling")
        ->check(CLI::PositiveNumber);
    a->add_option("--diagnosis.imdsv1-requests", d.imdsv1_min_requests, "IMDSv1 requests in the window to report")
        ->check(CLI::PositiveNumber);
    a->add_option("--diagnosis.slow-share", d.slow_min_share,
                  "share of wall time spent in metadata calls that is too much")
        ->check(CLI::Range(0.0, 1.0));
  };
  add_diagnosis_flags(&app);
  bool no_forwarding = false;
  app.add_flag("--no-forwarding-drops", no_forwarding,
               "do not watch this node's forwarding path for metadata replies whose TTL ran out (kfree_skb)");
  app.add_flag("--forwarding-drops.raw-tp", cfg.forwarding_raw_tp,
               "watch it with raw_tp/kfree_skb, the hook of kernels before 5.17, where tp_btf would do: it "
               "reads every dropped packet's headers instead of only the forwarding paths' drops");
  app.add_flag("--connections.plain-store", cfg.plain_store_claim,
               "claim and close a connection's kernel slot with plain stores, as on kernels before 5.12, where "
               "BPF_CMPXCHG would do: two connects on two CPUs at once may then, rarely, take one slot, or a close "
               "beside an eviction give it back");

  CLI::App* trace = app.add_subcommand("trace", "print one line per metadata request as it happens");
  AddProbeFlags(trace, &cfg, &endpoints, &no_kube);
  trace->add_option("--output", output, "text|json")->check(CLI::IsMember({"text", "json"}));

  std::string duration = "60s";
  CLI::App* doctor = app.add_subcommand(
      "doctor", "name each pod's IMDS problems with the fix; exit 1 when there are any");
  doctor->add_option("--url", command->doctor_url, "ask a running agent, e.g. http://127.0.0.1:10169")
      ->check(HttpUrl());
  doctor->add_option("--duration", duration, "without --url: watch this long first (e.g. 60s)");
  doctor->add_option("--output", output, "text|json")->check(CLI::IsMember({"text", "json"}));
  AddProbeFlags(doctor, &cfg, &endpoints, &no_kube);
  add_diagnosis_flags(doctor);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    *error = app.help();
    *exit_now = true;
    return true;
  } catch (const CLI::CallForVersion&) {
    *error = std::string("imdswatch ") + IMDSWATCH_VERSION;
    *exit_now = true;
    return true;
  } catch (const CLI::ParseError& e) {
    *error = e.what();
    return false;
  }
  if (trace->parsed()) command->mode = Mode::kTrace;
  if (doctor->parsed()) command->mode = Mode::kDoctor;
  if (!ParseDuration(window, &d.window) || d.window.count() < 1) {
    *error = "--diagnosis.window: '" + window + "' is not a duration of at least 1s";
    return false;
  }
  if (!ParseDuration(duration, &command->doctor_duration) || command->doctor_duration.count() == 0) {
    *error = "--duration: '" + duration + "' is not a positive duration (e.g. 60s)";
    return false;
  }
  cfg.kube.enabled = !no_kube;
  cfg.watch_forwarding = !no_forwarding;
  command->output = output == "json" ? OutputFormat::kJson : OutputFormat::kText;

  if (!ParseDuration(series_ttl, &cfg.series_ttl) || cfg.series_ttl.count() == 0) {
    *error = "--series-ttl: '" + series_ttl + "' is not a positive duration (e.g. 300s, 5m)";
    return false;
  }
  cfg.endpoints = DefaultEndpoints();
  for (const std::string& text : endpoints) {
    std::string why;
    auto ep = ParseEndpoint(text, &why);
    if (!ep) {
      *error = "--endpoint: '" + text + "': " + why;
      return false;
    }
    cfg.endpoints.push_back(*ep);
  }
  if (cfg.endpoints.size() > 8) {
    *error = "--endpoint: at most 6 extra endpoints can be watched";
    return false;
  }
  if (cfg.listen_address.find(':') == std::string::npos) {
    *error = "--web.listen-address: '" + cfg.listen_address + "' must be HOST:PORT or :PORT";
    return false;
  }
  if (!web_config_file.empty()) {
    std::string why;
    cfg.web = LoadWebConfig(web_config_file, &why);
    // Loading the certificate, key and token now finds a file that is readable but wrong before anything starts.
    if (!cfg.web || !WebSecurity::Create(*cfg.web, &why)) {
      *error = "--web.config.file: " + web_config_file + ": " + why;
      return false;
    }
  }
  if (cfg.kube.enabled && cfg.kube.node_name.empty()) {
    if (const char* node = std::getenv("NODE_NAME")) cfg.kube.node_name = node;
  }
  const bool needs_node = !(command->mode == Mode::kDoctor && !command->doctor_url.empty());
  if (needs_node && cfg.kube.enabled && cfg.kube.node_name.empty()) {
    *error = "--node-name: not given and $NODE_NAME is not set (or use --no-kube)";
    return false;
  }
  return true;
}

}  // namespace imdswatch
