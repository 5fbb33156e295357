// The agent's userspace path, measured on the repo's own library
// (build-bench/src/libimdswatch_lib.a): what runs per ring-buffer record in
// the agent (src/pipeline.cpp Pipeline::OnRecord -> CallTracker -> the
// AggregatingSink of src/agent.cpp: Aggregator + Diagnoser), fed with
// synthesized records laid out exactly as the kernel writes them.
//
//   bench_userspace [google benchmark flags]   events/s (BM_* below)
//   bench_userspace rss N [no-diagnoser]       one JSON line: a process holding N containers
//       with traffic (the real CgroupResolver over a fake kubepods tree of N container
//       cgroups, a PodStore of N pods, Attributor, Aggregator, Diagnoser), its RSS and the
//       /metrics render time (imdswatch::RenderMetrics, as the HTTP server calls it).
#include <benchmark/benchmark.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "imdswatch/aggregator.h"
#include "imdswatch/attributor.h"
#include "imdswatch/call_tracker.h"
#include "imdswatch/cgroup_resolver.h"
#include "imdswatch/diagnoser.h"
#include "imdswatch/event_decoder.h"
#include "imdswatch/http_server.h"
#include "imdswatch/pod_store.h"

namespace {

using namespace imdswatch;

// The agent's AggregatingSink (src/agent.cpp), minus the pod-IP lookup of
// forwarding drops (no such events here).
class AgentSink : public CallSink {
 public:
  AgentSink(Aggregator* aggregator, Diagnoser* diagnoser) : aggregator_(aggregator), diagnoser_(diagnoser) {}
  void OnCall(const CallRecord& call) override {
    aggregator_->RecordCall(call.cgroup_id, CommView(call.comm), call.sample);
    if (diagnoser_) diagnoser_->OnCall(call.cgroup_id, CommView(call.comm), call);
  }
  void OnConnection(uint64_t cgroup_id, const Comm& comm, ConnOutcome outcome) override {
    aggregator_->RecordConnection(cgroup_id, CommView(comm), outcome);
    if (diagnoser_) diagnoser_->OnConnection(cgroup_id, CommView(comm), outcome);
  }
  void OnRetransmit(uint64_t cgroup_id, const Comm& comm) override {
    aggregator_->RecordRetransmit(cgroup_id, CommView(comm));
  }

 private:
  Aggregator* aggregator_;
  Diagnoser* diagnoser_;
};

class NullSink : public CallSink {
 public:
  void OnCall(const CallRecord& call) override { benchmark::DoNotOptimize(call.sample.status); }
  void OnConnection(uint64_t, const Comm&, ConnOutcome) override {}
  void OnRetransmit(uint64_t, const Comm&) override {}
};

// Pipeline::OnRecord, verbatim but for its owner.
struct Feeder {
  CallTracker* tracker;
  std::atomic<uint64_t> events[16] = {};
  uint64_t decode_errors = 0;
  void OnRecord(const void* data, size_t size) {
    Event event;
    if (DecodeEvent(data, size, &event) != DecodeError::kNone) {
      decode_errors++;
      return;
    }
    events[HeaderOf(event).type & 15]++;
    tracker->Handle(event);
  }
};

using Record = std::vector<uint8_t>;

template <typename T>
Record Bytes(const T& value) {
  Record r(sizeof(T));
  std::memcpy(r.data(), &value, sizeof(T));
  return r;
}

void Copy(char* dst, size_t cap, const std::string& s) { std::memcpy(dst, s.data(), std::min(cap, s.size())); }

imds_event_hdr Hdr(uint8_t type, uint64_t sock, uint64_t cgroup, uint64_t ts) {
  imds_event_hdr h{};
  h.type = type;
  h.family = 2;
  h.dport = 80;
  h.tgid = 4242;
  h.ts_ns = ts;
  h.sock_id = sock;
  h.cgroup_id = cgroup;
  return h;
}

// One botocore credential fetch on one connection from a cgroup the agent has
// placed, as the kernel reports it: (request, response) x 3 (token PUT, role
// list, role), close. 7 records, 3 calls (a connect record comes only from a
// cgroup not placed yet, and a handshake has no record).
void AppendFetch(std::vector<Record>* out, uint64_t sock, uint64_t cgroup, uint64_t* ts, bool with_v1) {
  const std::string comm = "python3";
  const std::string ua = "Botocore/1.29.27 Python/3.11.2 Linux/6.18";
  struct Call {
    uint8_t method;
    const char* path;
    uint8_t flags;
    bool expiry;
  };
  std::vector<Call> calls = {
      {IMDS_METHOD_PUT, "/latest/api/token", IMDS_REQ_HAS_TOKEN_TTL | IMDS_REQ_HAS_UA, false},
      {IMDS_METHOD_GET, "/latest/meta-data/iam/security-credentials/", IMDS_REQ_HAS_TOKEN | IMDS_REQ_HAS_UA, false},
      {IMDS_METHOD_GET, "/latest/meta-data/iam/security-credentials/imdswatch-test-role",
       IMDS_REQ_HAS_TOKEN | IMDS_REQ_HAS_UA | IMDS_REQ_CREDENTIALS, true},
  };
  if (with_v1) calls.push_back({IMDS_METHOD_GET, "/latest/meta-data/instance-id", IMDS_REQ_HAS_UA, false});
  uint32_t seq = 0;
  for (const Call& call : calls) {
    imds_request_event r{};
    r.hdr = Hdr(IMDS_EV_REQUEST, sock, cgroup, (*ts)++);
    r.start_ns = r.hdr.ts_ns;
    r.seq = seq;
    r.method = call.method;
    r.flags = call.flags;
    r.path_len = static_cast<uint8_t>(std::strlen(call.path));
    r.ua_len = static_cast<uint8_t>(ua.size());
    Copy(r.comm, sizeof(r.comm), comm);
    Copy(r.path, sizeof(r.path), call.path);
    Copy(r.ua, sizeof(r.ua), ua);
    out->push_back(Bytes(r));
    imds_response_event s{};
    *ts += 400000;  // 0.4 ms later
    s.hdr = Hdr(IMDS_EV_RESPONSE, sock, cgroup, (*ts)++);
    s.first_byte_ns = s.hdr.ts_ns - 1000;
    s.end_ns = s.hdr.ts_ns;
    s.seq = seq++;
    s.status = 200;
    if (call.expiry) {
      s.flags = IMDS_RESP_HAS_EXPIRY;
      const std::string exp = "2026-11-26T04:00:00Z";
      s.expiry_len = static_cast<uint8_t>(exp.size());
      Copy(s.expiry, sizeof(s.expiry), exp);
    }
    out->push_back(Bytes(s));
  }
  imds_close_event cl{};
  cl.hdr = Hdr(IMDS_EV_CLOSE, sock, cgroup, (*ts)++);
  cl.requests = seq;
  cl.responses = seq;
  cl.flags = IMDS_CLOSE_ESTABLISHED;
  cl.old_state = 1;  // TCP_ESTABLISHED
  Copy(cl.comm, sizeof(cl.comm), comm);
  out->push_back(Bytes(cl));
}

// `connections` fetches spread round-robin over `owners` cgroups.
std::vector<Record> Traffic(int connections, int owners) {
  std::vector<Record> out;
  uint64_t ts = 1000000000;
  for (int i = 0; i < connections; i++) AppendFetch(&out, 1000 + i, 5000 + i % owners, &ts, false);
  return out;
}

Workload FakeResolve(uint64_t cgroup_id, std::string_view comm) {
  Workload w;
  w.namespace_name = "team-" + std::to_string(cgroup_id % 50);
  w.workload = "app-" + std::to_string(cgroup_id);
  w.pod = w.workload + "-7d9f8c6b5-x2x4z";
  w.container = std::string(comm);
  return w;
}

// recent_closes: 0 as the pipeline builds its tracker where the kernel's claim
// swaps (5.12+: one close record per connection); kRecentCloses where a close
// and an eviction may both send one (the double-close guard).
void RunEvents(benchmark::State& state, CallSink* sink, size_t recent_closes = 0) {
  CallTracker tracker(sink, CallTracker::kMaxConnections, recent_closes);
  Feeder feeder{&tracker};
  const auto records = Traffic(4096, static_cast<int>(state.range(0)));
  for (auto _ : state)
    for (const Record& r : records) feeder.OnRecord(r.data(), r.size());
  // a call is a request record (and its response)
  const auto calls = std::count_if(records.begin(), records.end(),
                                   [](const Record& r) { return !r.empty() && r[0] == IMDS_EV_REQUEST; });
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * records.size()));
  state.counters["calls/s"] =
      benchmark::Counter(static_cast<double>(state.iterations() * calls), benchmark::Counter::kIsRate);
}

// decode only
void BM_Decode(benchmark::State& state) {
  const auto records = Traffic(4096, 1000);
  Event event;
  for (auto _ : state)
    for (const Record& r : records) benchmark::DoNotOptimize(DecodeEvent(r.data(), r.size(), &event));
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * records.size()));
}
BENCHMARK(BM_Decode);

// decode -> CallTracker (calls dropped)
void BM_DecodeTrack(benchmark::State& state) {
  NullSink sink;
  RunEvents(state, &sink);
}
BENCHMARK(BM_DecodeTrack)->Arg(1000);

// decode -> CallTracker -> Aggregator::RecordCall/RecordConnection
void BM_DecodeTrackAggregate(benchmark::State& state) {
  Aggregator aggregator(FakeResolve);
  AgentSink sink(&aggregator, nullptr);
  RunEvents(state, &sink);
}
BENCHMARK(BM_DecodeTrackAggregate)->Arg(1000);

// decode -> CallTracker -> Aggregator + Diagnoser: everything the agent does per record
void BM_AgentPath(benchmark::State& state) {
  Aggregator aggregator(FakeResolve);
  Diagnoser diagnoser(FakeResolve);
  AgentSink sink(&aggregator, &diagnoser);
  RunEvents(state, &sink);
}
BENCHMARK(BM_AgentPath)->Arg(1000)->Arg(10000);

// the same on kernels before 5.12: every close record is remembered (CallTracker::SecondClose)
void BM_AgentPathCloseGuard(benchmark::State& state) {
  Aggregator aggregator(FakeResolve);
  Diagnoser diagnoser(FakeResolve);
  AgentSink sink(&aggregator, &diagnoser);
  RunEvents(state, &sink, CallTracker::kRecentCloses);
}
BENCHMARK(BM_AgentPathCloseGuard)->Arg(1000);

// ---- RSS and /metrics at N containers ----

long StatusKib(const char* field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(field, 0) == 0) return std::atol(line.c_str() + std::strlen(field) + 1);
  return -1;
}

std::string Hex(uint64_t v, int width) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%0*llx", width, static_cast<unsigned long long>(v));
  return buf;
}

int Rss(int containers, bool with_diagnoser) {
  namespace fs = std::filesystem;
  const long rss_start = StatusKib("VmRSS:");
  char tmpl[] = "/tmp/imdswatch-bench-cg.XXXXXX";
  if (!mkdtemp(tmpl)) return 1;
  const std::string root = tmpl;
  const std::string qos = root + "/kubepods.slice/kubepods-burstable.slice";
  fs::create_directories(qos);

  PodStore pods;
  std::vector<uint64_t> cgroup_ids;
  for (int i = 0; i < containers; i++) {
    const std::string uid = "5e0c1a2b-0000-4000-8000-" + Hex(i, 12);
    std::string uid_ = uid;
    std::replace(uid_.begin(), uid_.end(), '-', '_');
    const std::string cid = Hex(0xc0ffee0000000000ull + i, 16) + std::string(48, 'a');
    const std::string dir = qos + "/kubepods-burstable-pod" + uid_ + ".slice/cri-containerd-" + cid + ".scope";
    fs::create_directories(dir);
    struct stat st {};
    stat(dir.c_str(), &st);
    cgroup_ids.push_back(st.st_ino);
    PodInfo pod;
    pod.uid = uid;
    pod.namespace_name = "team-" + std::to_string(i % 50);
    pod.workload = "service-" + std::to_string(i);
    pod.workload_kind = "Deployment";
    pod.name = pod.workload + "-7d9f8c6b5-" + Hex(i, 5);
    pod.containers[cid] = "app";
    pod.ips = {"10.244." + std::to_string(i / 250) + "." + std::to_string(i % 250 + 2)};
    pods.Apply(std::move(pod));
  }
  const long rss_fixture = StatusKib("VmRSS:");

  // As Pipeline::Resolve: the attributor behind a mutex.
  CgroupResolver cgroups(root, 65536);
  Attributor attributor(&cgroups, &pods);
  std::mutex mu;
  auto resolve = [&](uint64_t id, std::string_view comm) {
    std::lock_guard<std::mutex> lock(mu);
    return attributor.Resolve(id, comm);
  };
  auto aggregator = std::make_shared<Aggregator>(resolve);
  auto diagnoser = std::make_shared<Diagnoser>(resolve);
  AgentSink sink(aggregator.get(), with_diagnoser ? diagnoser.get() : nullptr);
  CallTracker tracker(&sink);
  Feeder feeder{&tracker};
  // Every container: two botocore fetches (the second adds an IMDSv1 call), so
  // each has token, list, credentials and metadata series, a fetch interval,
  // credentials' remaining lifetime and an imdsv1 finding.
  // (records are made and fed one fetch at a time, so the benchmark's own buffers do not count)
  uint64_t ts = 1000000000, sock = 1;
  std::vector<Record> records;
  for (int round = 0; round < 2; round++)
    for (int i = 0; i < containers; i++) {
      records.clear();
      AppendFetch(&records, sock++, cgroup_ids[i], &ts, round == 1);
      for (const Record& r : records) feeder.OnRecord(r.data(), r.size());
    }
  records.clear();
  records.shrink_to_fit();
  const long rss_fed = StatusKib("VmRSS:");
  const auto e0 = std::chrono::steady_clock::now();
  const size_t findings = diagnoser->Evaluate().size();
  const double evaluate_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - e0).count();

  // Scrapes as the HTTP server serves them: streamed to a sink in pieces of
  // MetricsWriter::kFlushBytes (here the sink only counts). The first one
  // also resolves every owner's labels once (attribution caches).
  const MetricsSources sources = {aggregator, diagnoser};
  size_t bytes = 0, lines = 0;
  auto scrape = [&] {
    bytes = lines = 0;
    const auto t0 = std::chrono::steady_clock::now();
    RenderMetrics(sources, [&](std::string_view piece) {
      bytes += piece.size();
      lines += static_cast<size_t>(std::count(piece.begin(), piece.end(), '\n'));
      return true;
    });
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  };
  const double cold_ms = scrape();
  const long rss_scraped = StatusKib("VmRSS:");
  std::vector<double> render_ms;
  const int renders = containers >= 10000 ? 3 : 7;
  for (int i = 0; i < renders; i++) render_ms.push_back(scrape());
  const long hwm_streamed = StatusKib("VmHWM:");  // the peak as the agent scrapes: streamed
  // The same text as one string (tests, `imdswatch doctor`'s local watch): for comparison only.
  const auto s0 = std::chrono::steady_clock::now();
  const size_t string_bytes = RenderMetrics(sources).size();
  const double string_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - s0).count();
  std::vector<double> warm(render_ms);
  std::sort(warm.begin(), warm.end());
  const long rss = StatusKib("VmRSS:"), hwm = StatusKib("VmHWM:");
  std::printf(
      "{\"containers\":%d,\"owners\":%zu,\"diagnoser_owners\":%zu,\"diagnoser_dropped\":%llu,"
      "\"aggregator_dropped\":%llu,\"findings\":%zu,\"rss_start_kib\":%ld,\"rss_fixture_kib\":%ld,"
      "\"rss_fed_kib\":%ld,\"rss_kib\":%ld,\"hwm_kib\":%ld,\"render_cold_ms\":%.2f,\"render_ms\":%.2f,\"render_bytes\":%zu,"
      "\"render_lines\":%zu,\"render_string_ms\":%.2f,\"render_string_bytes\":%zu,"
      "\"rss_scraped_kib\":%ld,\"hwm_streamed_kib\":%ld,\"evaluate_ms\":%.2f,\"decode_errors\":%llu}\n",
      containers, aggregator->OwnerCount(), diagnoser->OwnerCount(),
      static_cast<unsigned long long>(diagnoser->DroppedRecords()),
      static_cast<unsigned long long>(aggregator->DroppedRecords()), findings, rss_start, rss_fixture, rss_fed, rss, hwm, cold_ms,
      warm[warm.size() / 2], bytes, lines, string_ms, string_bytes, rss_scraped, hwm_streamed, evaluate_ms, static_cast<unsigned long long>(feeder.decode_errors));
  fs::remove_all(root);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // rss N [no-diagnoser]: the second form leaves the Diagnoser empty, to split the state's memory
  if ((argc == 3 || argc == 4) && std::string(argv[1]) == "rss")
    return Rss(std::atoi(argv[2]), argc == 3 || std::string(argv[3]) != "no-diagnoser");
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
