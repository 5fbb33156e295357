// The kernel's request parser (bpf/http_parse.h, the very code the BPF
// programs run, driven by tests/unit/http_parse_harness the way
// imdswatch.bpf.c drives it) on any client byte stream.
//
// Input: [canary choice][cut seed x3][client stream]. A header line carrying
// a canary secret is inserted after a line break the input picks.
// Invariants:
//  - method is 0-7 bytes of A-Z; path <= IMDS_PATH_MAX bytes with no space
//    or line break, and exactly IMDS_PATH_MAX when flagged cut; User-Agent
//    <= IMDS_UA_MAX bytes with no line break, flagged present when kept;
//    requests are numbered 0, 1, 2, ...
//  - the canary (a header value other than User-Agent) never appears in any
//    method, path or User-Agent handed on, unless the input spells it itself
//    (a User-Agent drops the CRs in its value, so "Zq7CAN\rARY..." counts);
//  - splitting the stream anywhere changes nothing: byte-at-a-time is the
//    reference, and the whole stream and a 3-way split must give the same
//    requests and errors whenever they were not cut short by the 2 KiB
//    per-segment window limit.
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "fuzz_common.h"
#include "unit/http_parse_harness.h"

using imdswatch::fuzz::Contains;
using imdswatch::fuzz::Input;
using imdswatch::fuzz::Printable;
using imdswatch::testing::ParseHarness;

namespace {

constexpr char kCanary[] = "Zq7CANARYsecret9";
constexpr const char* kSecretHeaders[] = {"X-aws-ec2-metadata-token", "x-aws-ec2-metadata-token-ttl-seconds",
                                          "Authorization", "Cookie"};

struct Run {
  std::vector<imdswatch::testing::ParsedRequest> requests;
  std::vector<uint8_t> errors;
  uint32_t stopped_short = 0;
};

Run Parse(const std::vector<std::string>& segments) {
  ParseHarness h;
  for (const auto& s : segments) {
    h.Send(s, 1);
    FUZZ_CHECK(h.req.method_len <= 7, "method_len %u", h.req.method_len);
    FUZZ_CHECK(h.req.phase <= IMDS_PH_ERROR, "phase %u", h.req.phase);
  }
  return {std::move(h.requests), std::move(h.errors), h.stopped_short};
}

bool Same(const Run& a, const Run& b) {
  if (a.requests.size() != b.requests.size() || a.errors != b.errors) return false;
  for (size_t i = 0; i < a.requests.size(); i++) {
    const auto &x = a.requests[i], &y = b.requests[i];
    if (x.method != y.method || x.path != y.path || x.ua != y.ua || x.flags != y.flags || x.seq != y.seq)
      return false;
  }
  return true;
}

void CheckRequests(const Run& run, bool canary_in_input) {
  for (size_t i = 0; i < run.requests.size(); i++) {
    const auto& r = run.requests[i];
    FUZZ_CHECK(r.seq == i, "seq %u at %zu", r.seq, i);
    FUZZ_CHECK(r.method.size() <= 7, "method %s", Printable(r.method).c_str());
    for (char c : r.method) FUZZ_CHECK(c >= 'A' && c <= 'Z', "method %s", Printable(r.method).c_str());
    FUZZ_CHECK(r.path.size() <= IMDS_PATH_MAX, "path_len %zu", r.path.size());
    FUZZ_CHECK(r.path.find_first_of(" \r\n") == std::string::npos, "path %s", Printable(r.path).c_str());
    FUZZ_CHECK(!(r.flags & IMDS_REQ_PATH_CUT) || r.path.size() == IMDS_PATH_MAX, "cut path of %zu", r.path.size());
    FUZZ_CHECK(r.ua.size() <= IMDS_UA_MAX, "ua_len %zu", r.ua.size());
    FUZZ_CHECK(r.ua.find_first_of("\r\n") == std::string::npos, "ua %s", Printable(r.ua).c_str());
    FUZZ_CHECK(r.ua.empty() || (r.flags & IMDS_REQ_HAS_UA), "ua kept without its flag");
    if (!canary_in_input) {
      FUZZ_CHECK(!Contains(r.method, kCanary) && !Contains(r.path, kCanary) && !Contains(r.ua, kCanary),
                 "the secret header's value leaked: path %s ua %s", Printable(r.path).c_str(),
                 Printable(r.ua).c_str());
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Input in(data, size);
  const uint8_t canary_choice = in.Byte();
  const uint16_t cuts_seed[3] = {in.U16(), in.U16(), in.U16()};
  std::string stream = in.Rest();
  std::string without_cr = stream;
  std::erase(without_cr, '\r');
  const bool canary_in_input = Contains(without_cr, kCanary);

  // The secret header goes after the k-th line break (a header line, or
  // whatever the input has there).
  std::vector<size_t> breaks;
  for (size_t i = 0; i < stream.size(); i++)
    if (stream[i] == '\n') breaks.push_back(i + 1);
  if (!breaks.empty()) {
    size_t at = breaks[(canary_choice >> 2) % breaks.size()];
    stream.insert(at, std::string(kSecretHeaders[canary_choice & 3]) + ": " + kCanary + "\r\n");
  }

  std::vector<std::string> bytes;
  bytes.reserve(stream.size());
  for (char c : stream) bytes.emplace_back(1, c);
  const Run reference = Parse(bytes);
  FUZZ_CHECK(reference.stopped_short == 0, "a one-byte segment cannot outgrow the windows");
  CheckRequests(reference, canary_in_input);

  const Run whole = Parse({stream});
  if (whole.stopped_short == 0) FUZZ_CHECK(Same(whole, reference), "whole stream parses unlike byte-at-a-time");

  if (!stream.empty()) {
    std::vector<size_t> cuts;
    for (uint16_t seed : cuts_seed) cuts.push_back(seed % stream.size());
    std::sort(cuts.begin(), cuts.end());
    const Run split = Parse(imdswatch::testing::SplitAt(stream, cuts));
    if (split.stopped_short == 0)
      FUZZ_CHECK(Same(split, reference), "split at %zu/%zu/%zu parses unlike byte-at-a-time", cuts[0], cuts[1],
                 cuts[2]);
  }
  return 0;
}
