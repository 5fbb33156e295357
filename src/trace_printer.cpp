#include "imdswatch/trace_printer.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <time.h>

namespace imdswatch {

int64_t MonotonicToRealtimeOffsetNs() {
  timespec mono{}, real{};
  clock_gettime(CLOCK_MONOTONIC, &mono);
  clock_gettime(CLOCK_REALTIME, &real);
  return (static_cast<int64_t>(real.tv_sec) - mono.tv_sec) * 1000000000LL + (real.tv_nsec - mono.tv_nsec);
}

namespace {

std::string Iso8601(uint64_t wall_ns) {
  time_t secs = static_cast<time_t>(wall_ns / 1000000000ULL);
  tm utc{};
  gmtime_r(&secs, &utc);
  char buf[32];
  strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &utc);
  return fmt::format("{}.{:03d}Z", buf, static_cast<int>((wall_ns / 1000000ULL) % 1000));
}

std::string OrDash(const std::string& s) { return s.empty() ? "-" : s; }

}  // namespace

std::string FormatTraceLine(const CallRecord& call, const Workload& who, uint64_t wall_start_ns,
                            OutputFormat format) {
  const CallSample& s = call.sample;
  if (format == OutputFormat::kJson) {
    nlohmann::json j = {
        {"time", Iso8601(wall_start_ns)},
        {"namespace", who.namespace_name},
        {"workload", who.workload},
        {"pod", who.pod},
        {"container", who.container},
        {"pid", call.tgid},
        {"process", std::string(CommView(call.comm))},
        {"method", call.method},
        {"path", call.path},
        {"call", std::string(ToString(s.call))},
        {"version", std::string(ToString(s.version))},
        {"client", std::string(ToString(s.client))},
        {"status", s.status},
        {"duration_seconds", s.duration_seconds},
        {"outcome", std::string(ToString(s.outcome))},
    };
    return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  }
  std::string where = who.pod.empty() ? "host/" + OrDash(who.workload)
                                      : who.namespace_name + "/" + who.pod + "/" + OrDash(who.container);
  return fmt::format("{} {:<48} {:>7} {:<15} {:<16} {:<2} {:>3} {:>9.3f}ms {}", Iso8601(wall_start_ns), where,
                     call.tgid, CommView(call.comm), ToString(s.call), ToString(s.version),
                     s.status ? std::to_string(s.status) : "-", s.duration_seconds * 1000, ToString(s.outcome));
}

}  // namespace imdswatch
