// The kernel's response parser (bpf/http_parse.h via the unit tests'
// harness) on any server byte stream, after up to 8 requests of which the
// input picks those that asked for credentials (only their answers are
// scanned for "Expiration").
//
// Input: [mode][credentials mask][cut seed x3][...]
//   mode bit 0 clear: raw server stream; a header line carrying a canary is
//     inserted after a line break the input picks.
//   mode bit 0 set: a credentials answer laid out like IMDS's (the input
//     picks key order, spacing, secret lengths and the Expiration text; the
//     secrets all carry the canary), optionally after "100 Continue", then
//     the rest of the input as further stream bytes.
// Invariants:
//  - responses are numbered 0, 1, ...; a status is 3 digits and never 1xx;
//    an expiry is at most IMDS_EXPIRY_MAX bytes without a quote, and only on
//    the answer to a credentials request;
//  - the canary (header values, AccessKeyId, SecretAccessKey, Token) never
//    appears in an expiry;
//  - for the IMDS-shaped answer, the expiry is exactly what the model says:
//    the first quoted value after the first `iration"` inside the body's
//    last IMDS_EXPIRY_SCAN bytes, if it is at most IMDS_EXPIRY_MAX bytes;
//  - splitting the server stream anywhere changes nothing (byte-at-a-time
//    is the reference, as in fuzz_http_request).
#include <algorithm>
#include <cstdint>
#include <optional>
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
constexpr int kRequests = 8;
const std::string kCredentialsRequest =
    "GET /latest/meta-data/iam/security-credentials/imdswatch-test-role HTTP/1.1\r\nHost: 169.254.169.254\r\n"
    "x-aws-ec2-metadata-token: Zq7CANARYsecret9\r\n\r\n";
const std::string kOtherRequest = "GET /latest/meta-data/instance-id HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n";

struct Run {
  std::vector<imdswatch::testing::ParsedResponse> responses;
  std::vector<uint8_t> errors;
  uint32_t stopped_short = 0;
};

// The parser state after the 8 requests, computed once per mask.
const ParseHarness& AfterRequests(uint8_t mask) {
  static ParseHarness* cache[256] = {};
  if (!cache[mask]) {
    auto* h = new ParseHarness;
    for (int i = 0; i < kRequests; i++) h->Send((mask >> i) & 1 ? kCredentialsRequest : kOtherRequest, 1);
    FUZZ_CHECK(h->requests.size() == kRequests, "the fixed requests did not parse");
    cache[mask] = h;
  }
  return *cache[mask];
}

Run Parse(uint8_t mask, const std::vector<std::string>& segments) {
  ParseHarness h = AfterRequests(mask);
  for (const auto& s : segments) {
    h.Receive(s, 1);
    FUZZ_CHECK(h.resp.phase <= IMDS_PH_ERROR, "phase %u", h.resp.phase);
    FUZZ_CHECK(h.resp.expiry_len <= IMDS_EXPIRY_MAX, "expiry_len %u", h.resp.expiry_len);
  }
  return {std::move(h.responses), std::move(h.errors), h.stopped_short};
}

bool Same(const Run& a, const Run& b) {
  if (a.responses.size() != b.responses.size() || a.errors != b.errors) return false;
  for (size_t i = 0; i < a.responses.size(); i++) {
    const auto &x = a.responses[i], &y = b.responses[i];
    if (x.status != y.status || x.flags != y.flags || x.seq != y.seq || x.expiry != y.expiry) return false;
  }
  return true;
}

void CheckResponses(const Run& run, uint8_t mask, bool canary_in_input) {
  for (size_t i = 0; i < run.responses.size(); i++) {
    const auto& r = run.responses[i];
    FUZZ_CHECK(r.seq == i, "seq %u at %zu", r.seq, i);
    FUZZ_CHECK(r.status <= 999 && (r.status < 100 || r.status >= 200), "status %u", r.status);
    FUZZ_CHECK(r.expiry.size() <= IMDS_EXPIRY_MAX, "expiry of %zu bytes", r.expiry.size());
    FUZZ_CHECK(r.expiry.find('"') == std::string::npos, "expiry %s", Printable(r.expiry).c_str());
    FUZZ_CHECK(!(r.flags & IMDS_RESP_HAS_EXPIRY) || ((mask >> (r.seq & 31)) & 1),
               "expiry on the answer to a request that did not ask for credentials (seq %u)", r.seq);
    if (!canary_in_input)
      FUZZ_CHECK(!Contains(r.expiry, kCanary), "a secret leaked into the expiry: %s", Printable(r.expiry).c_str());
  }
}

// What the parser must keep of a credentials body.
std::optional<std::string> ModelExpiry(const std::string& body) {
  const size_t start = body.size() > IMDS_EXPIRY_SCAN ? body.size() - IMDS_EXPIRY_SCAN : 0;
  const size_t key = body.find("iration\"", start);
  if (key == std::string::npos) return std::nullopt;
  const size_t open = body.find('"', key + 8);
  if (open == std::string::npos) return std::nullopt;
  const size_t close = body.find('"', open + 1);
  if (close == std::string::npos || close - open - 1 > IMDS_EXPIRY_MAX) return std::nullopt;
  return body.substr(open + 1, close - open - 1);
}

std::string Filler(Input& in, size_t max) {
  static const char kBase64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  size_t n = in.U16() % (max + 1);
  std::string out;
  uint8_t seed = in.Byte();
  for (size_t i = 0; i < n; i++) {
    seed = static_cast<uint8_t>(seed * 33 + 7 + i);
    out += kBase64[seed % 64];
  }
  return out;
}

// An IMDS credentials answer; returns the stream and its body.
std::pair<std::string, std::string> CredentialsAnswer(Input& in) {
  const uint8_t shape = in.Byte();
  std::vector<std::pair<std::string, std::string>> fields = {
      {"Code", "Success"},
      {"LastUpdated", "2026-11-25T15:00:00Z"},
      {"Type", "AWS-HMAC"},
      {"AccessKeyId", "ASIA" + std::string(kCanary) + Filler(in, 16)},
      {"SecretAccessKey", kCanary + Filler(in, 40)},
      {"Token", "IQoJb3JpZ2lu" + std::string(kCanary) + Filler(in, 1200)},
      {"Expiration", ""},
  };
  // Expiration text from a timestamp alphabet (never a quote or the canary).
  static const char kTime[] = "0123456789-:TZ.+ ";
  std::string expiration = in.Short(48);
  if (expiration.empty()) expiration = "2026-11-25T21:00:00Z";
  for (char& c : expiration) c = kTime[static_cast<uint8_t>(c) % (sizeof(kTime) - 1)];
  fields.back().second = expiration;
  if (shape & 1) {  // IMDS puts Expiration last; other orders are not IMDS's, but must not leak either
    for (size_t i = fields.size() - 1; i > 0; i--) std::swap(fields[i], fields[in.Byte() % (i + 1)]);
  }
  const std::string open = (shape & 2) ? "{\n  " : "{";
  const std::string sep = (shape & 4) ? ",\n  " : ",";
  const std::string colon = (shape & 8) ? " : " : ":";
  std::string body = open;
  for (size_t i = 0; i < fields.size(); i++) {
    if (i) body += sep;
    body += "\"" + fields[i].first + "\"" + colon + "\"" + fields[i].second + "\"";
  }
  body += (shape & 2) ? "\n}" : "}";
  std::string head = (shape & 16) ? "HTTP/1.1 100 Continue\r\n\r\n" : "";
  head += "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nAccept-Ranges: none\r\nLast-Modified: Wed, 25 Nov 2026 "
          "15:00:00 GMT\r\nContent-Length: " +
          std::to_string(body.size()) + "\r\nDate: Wed, 25 Nov 2026 15:00:01 GMT\r\nServer: EC2ws\r\n\r\n";
  return {head + body, body};
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Input in(data, size);
  const uint8_t mode = in.Byte();
  uint8_t mask = in.Byte();
  const uint16_t cuts_seed[3] = {in.U16(), in.U16(), in.U16()};

  std::string stream;
  std::optional<std::string> body;
  bool canary_in_input;
  if (mode & 1) {
    mask |= 1;  // the answer is to request 0, a credentials request
    auto [answer, b] = CredentialsAnswer(in);
    std::string rest = in.Rest();
    canary_in_input = Contains(rest, kCanary);
    stream = answer + rest;
    body = b;
  } else {
    const uint8_t where = in.Byte();
    stream = in.Rest();
    canary_in_input = Contains(stream, kCanary);
    std::vector<size_t> breaks;
    for (size_t i = 0; i < stream.size(); i++)
      if (stream[i] == '\n') breaks.push_back(i + 1);
    if (!breaks.empty())
      stream.insert(breaks[where % breaks.size()],
                    std::string((where & 0x80) ? "Set-Cookie: s=" : "X-Amz-Security-Token: ") + kCanary + "\r\n");
  }

  std::vector<std::string> bytes;
  bytes.reserve(stream.size());
  for (char c : stream) bytes.emplace_back(1, c);
  const Run reference = Parse(mask, bytes);
  FUZZ_CHECK(reference.stopped_short == 0, "a one-byte segment cannot outgrow the windows");
  CheckResponses(reference, mask, canary_in_input);

  if (body) {
    FUZZ_CHECK(!reference.responses.empty() && reference.responses[0].status == 200,
               "a well-formed credentials answer did not complete");
    const auto& got = reference.responses[0];
    const std::optional<std::string> want = ModelExpiry(*body);
    FUZZ_CHECK(want.has_value() == bool(got.flags & IMDS_RESP_HAS_EXPIRY) && (!want || *want == got.expiry),
               "expiry %s, model says %s, body tail %s", Printable(got.expiry).c_str(),
               want ? Printable(*want).c_str() : "(none)",
               Printable(body->substr(body->size() > 120 ? body->size() - 120 : 0)).c_str());
  }

  const Run whole = Parse(mask, {stream});
  if (whole.stopped_short == 0) FUZZ_CHECK(Same(whole, reference), "whole stream parses unlike byte-at-a-time");
  if (!stream.empty()) {
    std::vector<size_t> cuts;
    for (uint16_t seed : cuts_seed) cuts.push_back(seed % stream.size());
    std::sort(cuts.begin(), cuts.end());
    const Run split = Parse(mask, imdswatch::testing::SplitAt(stream, cuts));
    if (split.stopped_short == 0)
      FUZZ_CHECK(Same(split, reference), "split at %zu/%zu/%zu parses unlike byte-at-a-time", cuts[0], cuts[1],
                 cuts[2]);
  }
  return 0;
}
