// `imdswatch doctor`: asks a running agent for its current findings, or
// watches for --duration itself, then prints one block per finding.
// Exit: 0 nothing found, 1 findings, 2 could not find out.
#include <curl/curl.h>
#include <spdlog/spdlog.h>

#include <cstdio>

#include "imdswatch/agent.h"
#include "imdswatch/diagnoser.h"
#include "imdswatch/doctor.h"
#include "imdswatch/event_loop.h"
#include "imdswatch/pipeline.h"

namespace imdswatch {

namespace {

constexpr int kDoctorError = 2;

size_t AppendBody(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

// GET url; "" with *error on failure.
std::string Fetch(const std::string& url, std::string* error) {
  std::string body;
  CURL* curl = curl_easy_init();
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, AppendBody);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT, 10L);
  curl_easy_setopt(curl, CURLOPT_FAILONERROR, 1L);
  CURLcode rc = curl_easy_perform(curl);
  curl_easy_cleanup(curl);
  if (rc != CURLE_OK) *error = url + ": " + curl_easy_strerror(rc);
  return body;
}

class DiagnosingSink : public CallSink {
 public:
  explicit DiagnosingSink(Diagnoser* diagnoser) : diagnoser_(diagnoser) {}
  void OnCall(const CallRecord& call) override { diagnoser_->OnCall(call.cgroup_id, CommView(call.comm), call); }
  void OnConnection(uint64_t cgroup_id, const Comm& comm, ConnOutcome outcome) override {
    diagnoser_->OnConnection(cgroup_id, CommView(comm), outcome);
  }
  void OnRetransmit(uint64_t, const Comm&) override {}

 private:
  Diagnoser* diagnoser_;
};

// Watches locally for the configured duration.
bool WatchLocally(const Command& command, std::vector<Finding>* findings, std::string* error) {
  Pipeline* pipeline = nullptr;
  Diagnoser diagnoser([&pipeline](uint64_t id, std::string_view comm) { return pipeline->Resolve(id, comm); },
                      command.agent.diagnosis);
  DiagnosingSink sink(&diagnoser);
  auto owned = Pipeline::Start(command.agent, &sink, error);
  if (!owned) return false;
  pipeline = owned.get();
  spdlog::info("watching metadata calls for {}s", command.doctor_duration.count());
  auto deadline = std::chrono::steady_clock::now() + command.doctor_duration;
  EventLoop* loop_ptr = nullptr;
  EventLoop loop(
      pipeline->probes().ringbuf_fd(), [&](const void* data, size_t size) { pipeline->OnRecord(data, size); },
      [&] {
        if (std::chrono::steady_clock::now() >= deadline) loop_ptr->Stop();
      },
      std::chrono::milliseconds(500));
  loop_ptr = &loop;
  if (!loop.Run(error)) return false;
  diagnoser.Evaluate();
  *findings = diagnoser.Current();
  return true;
}

}  // namespace

int RunDoctor(const Command& command) {
  std::vector<Finding> findings;
  std::string error;
  if (!command.doctor_url.empty()) {
    std::string url = command.doctor_url;
    while (!url.empty() && url.back() == '/') url.pop_back();
    std::string body = Fetch(url + "/api/v1/diagnoses", &error);
    if (error.empty()) findings = ParseFindingsJson(body, &error);
  } else {
    WatchLocally(command, &findings, &error);
  }
  if (!error.empty()) {
    spdlog::error("doctor: {}", error);
    return kDoctorError;
  }
  std::string out = FormatFindings(findings, command.output == OutputFormat::kJson);
  if (findings.empty() && command.output != OutputFormat::kJson) out = "no IMDS problems found\n";
  std::fputs(out.c_str(), stdout);
  return DoctorExitCode(findings);
}

}  // namespace imdswatch
