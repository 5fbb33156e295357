// What the kernel side hands over: ring-buffer records, decoded by
// DecodeEvent (include/imdswatch/event_decoder.h) and joined into calls by
// CallTracker (include/imdswatch/call_tracker.h). The BPF programs are
// trusted code, but a record must never be trusted past its size: a layout
// mismatch between an old agent and new programs, or a bug, must not become
// an out-of-bounds read.
//
// Input: records, each [flags][length (2 bytes)][bytes]; flags bit 0 asks
// for an idle eviction after the record.
// Invariants:
//  - DecodeEvent reads only within the record (ASan), accepts a record only
//    when it is at least the event's size, with lengths within their arrays,
//    and never accepts it one byte shorter;
//  - every finished call has a path <= IMDS_PATH_MAX, an expiry <=
//    IMDS_EXPIRY_MAX, a role <= kMaxRoleLength printable bytes, a known
//    method, and durations that are finite and not negative;
//  - the tracker never holds more connections than its limit.
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "fuzz_common.h"
#include "imdswatch/call_tracker.h"
#include "imdswatch/classify.h"
#include "imdswatch/event_decoder.h"

using namespace imdswatch;
using imdswatch::fuzz::Input;
using imdswatch::fuzz::Printable;

namespace {

class CheckingSink : public CallSink {
 public:
  void OnCall(const CallRecord& c) override {
    FUZZ_CHECK(c.path.size() <= IMDS_PATH_MAX, "path of %zu bytes", c.path.size());
    FUZZ_CHECK(c.expiry.size() <= IMDS_EXPIRY_MAX, "expiry of %zu bytes", c.expiry.size());
    FUZZ_CHECK(c.role.size() <= kMaxRoleLength, "role of %zu bytes", c.role.size());
    for (char ch : c.role) FUZZ_CHECK(ch >= 0x21 && ch <= 0x7e, "role byte 0x%02x", static_cast<uint8_t>(ch));
    FUZZ_CHECK(c.method == "GET" || c.method == "PUT" || c.method == "HEAD" || c.method == "POST" ||
                   c.method == "OTHER",
               "method %s", Printable(c.method).c_str());
    FUZZ_CHECK(std::isfinite(c.sample.duration_seconds) && c.sample.duration_seconds >= 0, "duration %f",
               c.sample.duration_seconds);
    FUZZ_CHECK(std::isfinite(c.sample.ttfb_seconds) && c.sample.ttfb_seconds >= 0, "ttfb %f",
               c.sample.ttfb_seconds);
    FUZZ_CHECK(!ToString(c.sample.call).empty() && !ToString(c.sample.client).empty() &&
                   !ToString(c.sample.outcome).empty(),
               "empty label");
    calls++;
  }
  void OnConnection(uint64_t, const Comm&, ConnOutcome outcome) override {
    FUZZ_CHECK(!ToString(outcome).empty(), "empty connection label");
  }
  void OnRetransmit(uint64_t, const Comm&) override {}
  void OnForwardingDrop(const std::string& ip) override { FUZZ_CHECK(ip.size() < 64, "ip text %zu", ip.size()); }
  size_t calls = 0;
};

size_t SizeOf(const Event& e) {
  return std::visit([](const auto& v) { return sizeof(v); }, e);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Input in(data, size);
  CheckingSink sink;
  CallTracker tracker(&sink, 4);
  while (in.left() > 0) {
    const uint8_t flags = in.Byte();
    const size_t length = in.U16() % 512;
    // an exact-size heap copy, so ASan sees any read past the record
    const std::string bytes = in.Take(length);
    std::vector<uint8_t> record(bytes.begin(), bytes.end());
    Event event;
    const DecodeError err = DecodeEvent(record.data(), record.size(), &event);
    FUZZ_CHECK(!ToString(err).empty(), "empty decode error label");
    if (err == DecodeError::kNone) {
      const size_t need = SizeOf(event);
      FUZZ_CHECK(record.size() >= need, "accepted %zu bytes for a %zu-byte event", record.size(), need);
      FUZZ_CHECK(HeaderOf(event).type == record[0], "type %u decoded as %u", record[0], HeaderOf(event).type);
      if (const auto* req = std::get_if<imds_request_event>(&event))
        FUZZ_CHECK(req->path_len <= IMDS_PATH_MAX && req->ua_len <= IMDS_UA_MAX, "lengths %u/%u", req->path_len,
                   req->ua_len);
      if (const auto* resp = std::get_if<imds_response_event>(&event))
        FUZZ_CHECK(resp->expiry_len <= IMDS_EXPIRY_MAX, "expiry_len %u", resp->expiry_len);
      std::vector<uint8_t> shorter(record.begin(), record.begin() + (need - 1));
      Event unused;
      FUZZ_CHECK(DecodeEvent(shorter.data(), shorter.size(), &unused) != DecodeError::kNone,
                 "accepted a record one byte short of its event");
      tracker.Handle(event);
      if (flags & 1) tracker.EvictIdle(HeaderOf(event).ts_ns, flags);
    }
    FUZZ_CHECK(tracker.stats().open_connections.load() <= tracker.max_connections(), "%llu connections open",
               static_cast<unsigned long long>(tracker.stats().open_connections.load()));
  }
  return 0;
}
