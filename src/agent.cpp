#include "imdswatch/agent.h"

#include <spdlog/spdlog.h>

#include <cstdio>
#include <memory>

#include "imdswatch/aggregator.h"
#include "imdswatch/diagnoser.h"
#include "imdswatch/event_loop.h"
#include "imdswatch/http_server.h"
#include "imdswatch/pipeline.h"
#include "imdswatch/process_stats.h"
#include "imdswatch/self_health.h"
#include "imdswatch/trace_printer.h"
#include "imdswatch/web_security.h"

namespace imdswatch {

namespace {

constexpr auto kTick = std::chrono::seconds(5);
constexpr uint64_t kConnectionIdleNs = 600ULL * 1000000000ULL;

uint64_t MonotonicNowNs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ULL + ts.tv_nsec;
}

// Feeds every finished call to the metrics and to the diagnoses.
class AggregatingSink : public CallSink {
 public:
  AggregatingSink(Aggregator* aggregator, Diagnoser* diagnoser) : aggregator_(aggregator), diagnoser_(diagnoser) {}
  void set_pods(const PodStore* pods) { pods_ = pods; }
  void OnForwardingDrop(const std::string& pod_ip) override {
    // only the Kubernetes API knows which pod holds an address
    std::optional<PodInfo> pod = pods_ ? pods_->LookupByIp(pod_ip) : std::nullopt;
    if (!pod) {
      spdlog::debug("metadata reply to {} died in forwarding; no pod holds that address", pod_ip);
      return;
    }
    diagnoser_->OnForwardingDrop(pod->namespace_name, pod->name);
  }
  void OnCall(const CallRecord& call) override {
    aggregator_->RecordCall(call.cgroup_id, CommView(call.comm), call.sample);
    diagnoser_->OnCall(call.cgroup_id, CommView(call.comm), call);
  }
  void OnConnection(uint64_t cgroup_id, const Comm& comm, ConnOutcome outcome) override {
    aggregator_->RecordConnection(cgroup_id, CommView(comm), outcome);
    diagnoser_->OnConnection(cgroup_id, CommView(comm), outcome);
  }
  void OnRetransmit(uint64_t cgroup_id, const Comm& comm) override {
    aggregator_->RecordRetransmit(cgroup_id, CommView(comm));
  }

 private:
  Aggregator* aggregator_;
  Diagnoser* diagnoser_;
  const PodStore* pods_ = nullptr;
};

// A finding goes to the log once, when it starts.
void LogFinding(const Finding& f) {
  std::string who = f.who.pod.empty() ? "host/" + f.who.workload
                                      : f.who.namespace_name + "/" + f.who.pod + " (" + f.who.container + ")";
  spdlog::warn("diagnosis {} for {}: {} Cause: {} Fix: {}", f.kind, who, f.evidence, f.cause, f.fix);
}

std::vector<LabelledValue> One(double value) { return {{{}, value}}; }

// The agent's own health metrics, read from their owners at scrape time.
void RegisterSelfHealth(SelfHealth* health, Pipeline* p, Aggregator* aggregator, Diagnoser* diagnoser) {
  using K = SelfHealth::Kind;
  health->Add("imdswatch_build_info", "imdswatch build; value is 1", K::kGauge, [] {
    return std::vector<LabelledValue>{{{{"version", IMDSWATCH_VERSION}}, 1}};
  });
  health->Add("imdswatch_events_lost_total", "Events lost before aggregation, by reason", K::kCounter,
              [p, aggregator, diagnoser] {
    static const char* kKernel[IMDS_DROP__COUNT] = {"ringbuf_full", "socket_table_full", "scratch", "load_bytes",
                                                      "tail_call"};
    std::vector<LabelledValue> out;
    auto drops = p->probes().DropCounts();
    for (int i = 0; i < IMDS_DROP__COUNT; i++)
      out.push_back({{{"reason", kKernel[i]}}, static_cast<double>(drops[i])});
    for (DecodeError e : {DecodeError::kTooShort, DecodeError::kUnknownType, DecodeError::kBadLength})
      out.push_back({{{"reason", "decode_" + std::string(ToString(e))}}, static_cast<double>(p->decode_errors(e))});
    const TrackerStats& t = p->tracker().stats();
    out.push_back({{{"reason", "orphan_event"}}, static_cast<double>(t.orphan_events)});
    out.push_back({{{"reason", "unmatched_response"}}, static_cast<double>(t.unmatched_responses)});
    out.push_back({{{"reason", "duplicate_close"}}, static_cast<double>(t.duplicate_closes)});
    out.push_back({{{"reason", "connection_evicted"}}, static_cast<double>(t.evicted_connections)});
    out.push_back({{{"reason", "series_owners_full"}}, static_cast<double>(aggregator->DroppedRecords())});
    out.push_back({{{"reason", "diagnosis_owners_full"}}, static_cast<double>(diagnoser->DroppedRecords())});
    out.push_back({{{"reason", "malformed_expiration"}}, static_cast<double>(diagnoser->MalformedExpirations())});
    return out;
  });
  health->Add("imdswatch_probe_mode",
              "How each part of the kernel side runs on this kernel, 1 per part; modes other than cmpxchg, "
              "tp_btf and followed are older kernels' or missing privileges' fallbacks",
              K::kGauge, [p] {
                std::vector<LabelledValue> out;
                for (const ProbeMode& m : p->probes().modes()) out.push_back({{{"part", m.part}, {"mode", m.mode}}, 1});
                return out;
              });
  health->Add("imdswatch_events_total", "Events received from the kernel, by type", K::kCounter, [p] {
    static const char* kTypes[] = {"",           "connect",     "",        "request", "response", "close",
                                   "retransmit", "parse_error", "ttl_drop"};
    std::vector<LabelledValue> out;
    for (uint8_t t = IMDS_EV_CONNECT; t <= IMDS_EV_TTL_DROP; t++)
      if (t != IMDS_EV_ESTABLISHED_UNUSED) out.push_back({{{"type", kTypes[t]}}, static_cast<double>(p->events(t))});
    return out;
  });
  health->Add("imdswatch_http_parse_errors_total", "Metadata HTTP streams the kernel could not parse",
              K::kCounter, [p] {
                static const char* kReasons[IMDS_PERR__COUNT] = {
                    "none",         "bad_request_line", "bad_status_line",     "header_too_long",
                    "bad_length",   "sequence_gap",     "unexpected_response", "chunked"};
                std::vector<LabelledValue> out;
                const TrackerStats& t = p->tracker().stats();
                for (int r = 1; r < IMDS_PERR__COUNT; r++)
                  for (int d = 0; d < 2; d++)
                    out.push_back({{{"reason", kReasons[r]}, {"direction", d ? "response" : "request"}},
                                   static_cast<double>(t.parse_errors[r][d])});
                return out;
              });
  health->Add("imdswatch_map_entries", "Entries in the agent's bounded tables", K::kGauge, [p, aggregator, diagnoser] {
    return std::vector<LabelledValue>{
        {{{"map", "connections"}}, static_cast<double>(p->tracker().stats().open_connections)},
        {{{"map", "series_owners"}}, static_cast<double>(aggregator->OwnerCount())},
        {{{"map", "diagnosis_owners"}}, static_cast<double>(diagnoser->OwnerCount())},
    };
  });
  health->Add("imdswatch_map_capacity", "Capacity of the agent's bounded tables", K::kGauge, [p] {
    return std::vector<LabelledValue>{
        {{{"map", "connections"}}, static_cast<double>(p->tracker().max_connections())},
        {{{"map", "series_owners"}}, static_cast<double>(Aggregator::kMaxOwners)},
        {{{"map", "diagnosis_owners"}}, static_cast<double>(Diagnoser::kMaxOwners)},
    };
  });
  health->Add("imdswatch_attribution_failures_total", "Calls whose caller could not be fully named, by reason",
              K::kCounter, [p] {
                std::vector<LabelledValue> out;
                for (const auto& [reason, count] : p->attributor().FailureCounts())
                  out.push_back({{{"reason", reason}}, static_cast<double>(count)});
                return out;
              });
  health->Add("process_cpu_seconds_total", "CPU time of the agent (user and system), seconds", K::kCounter,
              [] { return One(ReadProcessStats().cpu_seconds); });
  health->Add("process_resident_memory_bytes", "Resident memory of the agent, bytes", K::kGauge,
              [] { return One(ReadProcessStats().resident_bytes); });
  health->Add("process_open_fds", "Open file descriptors of the agent", K::kGauge,
              [] { return One(ReadProcessStats().open_fds); });
  health->Add("process_start_time_seconds", "Start time of the agent since the epoch, seconds", K::kGauge,
              [] { return One(ReadProcessStats().start_time_seconds); });
  if (KubePodWatcher* kube = p->kube()) {
    health->Add("imdswatch_kube_api_up", "1 while the Kubernetes API watch is connected", K::kGauge,
                [kube] { return One(kube->Up() ? 1 : 0); });
    health->Add("imdswatch_kube_api_last_sync_timestamp_seconds", "Last successful pod list or watch event",
                K::kGauge, [kube] { return One(static_cast<double>(kube->LastSyncUnixSeconds())); });
    health->Add("imdswatch_kube_api_errors_total", "Kubernetes API errors, by reason", K::kCounter, [kube] {
      std::vector<LabelledValue> out;
      for (const auto& [reason, count] : kube->ErrorCounts())
        out.push_back({{{"reason", reason}}, static_cast<double>(count)});
      return out;
    });
  }
}

}  // namespace

int RunAgent(const AgentConfig& config) {
  // The endpoint comes up first: a port in use fails fast, before any program is loaded.
  std::atomic<Pipeline*> pipeline{nullptr};
  std::atomic<uint64_t> last_tick_ns{MonotonicNowNs()};
  auto aggregator = std::make_shared<Aggregator>(
      [&pipeline](uint64_t cgroup_id, std::string_view comm) { return pipeline.load()->Resolve(cgroup_id, comm); });
  auto diagnoser = std::make_shared<Diagnoser>(
      [&pipeline](uint64_t cgroup_id, std::string_view comm) { return pipeline.load()->Resolve(cgroup_id, comm); },
      config.diagnosis);
  auto self_health = std::make_shared<SelfHealth>();
  HttpRoutes routes;
  routes.collectables = {aggregator, diagnoser, self_health};
  routes.json = {{"/api/v1/diagnoses", [diagnoser] { return diagnoser->CurrentJson(); }}};
  routes.healthz = [&]() -> HealthStatus {
    Pipeline* p = pipeline.load();
    if (!p) return {false, "loading BPF programs"};
    uint64_t age = MonotonicNowNs() - last_tick_ns.load();
    if (age > 4 * std::chrono::nanoseconds(kTick).count()) return {false, "event loop stalled"};
    return {true, "ok: " + std::to_string(p->probes().attached().size()) + " programs attached"};
  };
  routes.readyz = [&]() -> HealthStatus {
    Pipeline* p = pipeline.load();
    if (!p) return {false, "loading BPF programs"};
    if (KubePodWatcher* kube = p->kube(); kube && !kube->Synced())
      return {false, "waiting for the first pod list from the Kubernetes API"};
    return {true, "ready"};
  };
  std::string error;
  std::shared_ptr<WebSecurity> security;
  if (config.web) {
    security = WebSecurity::Create(*config.web, &error);
    if (!security) {
      spdlog::error("--web.config.file: {}: {}", config.web->path, error);
      return 1;
    }
  }
  auto server = HttpServer::Start(config.listen_address, std::move(routes), &error, security);
  if (!server) {
    spdlog::error("{}", error);
    return 1;
  }
  AggregatingSink sink(aggregator.get(), diagnoser.get());
  auto owned = Pipeline::Start(config, &sink, &error);
  if (!owned) {
    spdlog::error("{}", error);
    return 1;
  }
  RegisterSelfHealth(self_health.get(), owned.get(), aggregator.get(), diagnoser.get());
  sink.set_pods(owned->pods());
  pipeline = owned.get();
  spdlog::info("serving /metrics, /healthz and /readyz on {} (port {}{})", config.listen_address, server->port(),
               !security ? "" : security->tls() ? ", TLS" : ", plain HTTP with --web.config.file");

  int ticks = 0;
  EventLoop loop(
      owned->probes().ringbuf_fd(), [&](const void* data, size_t size) { owned->OnRecord(data, size); },
      [&] {
        last_tick_ns = MonotonicNowNs();
        owned->tracker().EvictIdle(MonotonicNowNs(), kConnectionIdleNs);
        for (const Diagnosis& finding : diagnoser->Evaluate()) LogFinding(Explain(finding));
        if (++ticks % 6 == 0) {
          diagnoser->ExpireGone([&](uint64_t id) { return owned->CgroupAlive(id); }, std::chrono::steady_clock::now(),
                                config.series_ttl);
          size_t dropped = aggregator->ExpireGone([&](uint64_t id) { return owned->CgroupAlive(id); },
                                                  std::chrono::steady_clock::now(), config.series_ttl);
          if (dropped) spdlog::debug("expired {} series owners", dropped);
        }
      },
      kTick);
  bool clean = loop.Run(&error);
  if (!clean) spdlog::error("{}", error);
  // Detach first: that is what must happen within a second of SIGTERM.
  owned->probes().Detach();
  spdlog::info("programs detached; shutting down");
  server.reset();
  pipeline = nullptr;
  owned.reset();
  return clean ? 0 : 1;
}

namespace {

class TraceSink : public CallSink {
 public:
  TraceSink(Pipeline** pipeline, OutputFormat format) : pipeline_(pipeline), format_(format) {}
  void OnCall(const CallRecord& call) override {
    Workload who = (*pipeline_)->Resolve(call.cgroup_id, CommView(call.comm));
    std::string line = FormatTraceLine(call, who, call.start_ns + offset_ns_, format_);
    std::fprintf(stdout, "%s\n", line.c_str());
    std::fflush(stdout);
  }
  void OnConnection(uint64_t, const Comm&, ConnOutcome) override {}
  void OnRetransmit(uint64_t, const Comm&) override {}

 private:
  Pipeline** pipeline_;
  OutputFormat format_;
  int64_t offset_ns_ = MonotonicToRealtimeOffsetNs();
};

}  // namespace

int RunTrace(const AgentConfig& config, OutputFormat output) {
  Pipeline* pipeline = nullptr;
  TraceSink sink(&pipeline, output);
  std::string error;
  // a line per request as it happens: every record wakes the loop
  auto owned = Pipeline::Start(config, &sink, &error, Delivery::kPerRecord);
  if (!owned) {
    spdlog::error("{}", error);
    return 1;
  }
  pipeline = owned.get();
  EventLoop loop(
      pipeline->probes().ringbuf_fd(), [&](const void* data, size_t size) { pipeline->OnRecord(data, size); },
      [&] { pipeline->tracker().EvictIdle(MonotonicNowNs(), kConnectionIdleNs); }, kTick,
      std::chrono::milliseconds(0));
  bool clean = loop.Run(&error);
  if (!clean) spdlog::error("{}", error);
  return clean ? 0 : 1;
}

}  // namespace imdswatch
