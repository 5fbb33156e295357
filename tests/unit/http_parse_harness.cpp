#include "unit/http_parse_harness.h"

#include <algorithm>
#include <cstring>

using imdswatch::testing::ParseHarness;

void imds_on_request(void* ctx, imds_req_parser* p, const __u8* buf, __u32 ua_from) {
  auto* h = static_cast<ParseHarness*>(ctx);
  imds_note_request(&h->resp, p);
  // as the kernel's record takes them (from the fast path's buffer or p)
  char record_path[IMDS_PATH_MAX], record_ua[IMDS_UA_MAX];
  imds_request_text(record_path, record_ua, p, buf, ua_from);
  h->requests.push_back(
      {std::string(p->method, p->method_len), std::string(record_path, std::min<size_t>(p->path_len, IMDS_PATH_MAX)),
       std::string(record_ua, std::min<size_t>(p->ua_len, IMDS_UA_MAX)), p->flags, p->seq, p->start_ns,
       std::string(record_path, sizeof(record_path)), std::string(record_ua, sizeof(record_ua))});
}

void imds_on_response(void* ctx, imds_resp_parser* p, __u64 end_ns) {
  auto* h = static_cast<ParseHarness*>(ctx);
  std::string expiry = (p->flags & IMDS_RESP_HAS_EXPIRY) ? std::string(p->expiry, p->expiry_len) : "";
  h->responses.push_back({p->status, p->flags, p->seq, expiry, p->first_ns, end_ns});
}

void imds_on_parse_error(void* ctx, __u8 reason, __u8 direction) {
  static_cast<ParseHarness*>(ctx)->errors.push_back(reason * 2 + direction);
}

void imds_test_fast_taken(void* ctx, int dir) { static_cast<ParseHarness*>(ctx)->fast_heads[dir ? 1 : 0]++; }

void imds_test_fast_tail_taken(void* ctx) { static_cast<ParseHarness*>(ctx)->fast_tails++; }

int imds_test_load(void* ctx, __u32 off, __u8* buf, __u32 n) {
  const std::string* seg = static_cast<ParseHarness*>(ctx)->segment;
  if (!seg || off + n > seg->size() || n > IMDS_FAST_MAX) return -1;
  std::memcpy(buf, seg->data() + off, n);
  return 0;
}

namespace imdswatch::testing {

namespace {

void Feed(ParseHarness* h, int dir, const std::string& bytes, uint64_t now) {
  std::vector<__u8> buf(IMDS_FAST_BUF);
  h->segment = &bytes;
  auto end = static_cast<__u32>(bytes.size());
  __u32 off = imds_parse_stream(h, dir, &h->req, &h->resp, buf.data(), 0, end, now, h->fast);
  if (off < end) h->stopped_short++;
  h->segment = nullptr;
}

}  // namespace

void ParseHarness::Send(const std::string& bytes, uint64_t now) { Feed(this, 0, bytes, now); }

void ParseHarness::Receive(const std::string& bytes, uint64_t now) { Feed(this, 1, bytes, now); }

std::vector<std::string> SplitAt(const std::string& text, const std::vector<size_t>& cuts) {
  std::vector<std::string> parts;
  size_t prev = 0;
  for (size_t cut : cuts) {
    if (cut <= prev || cut >= text.size()) continue;
    parts.push_back(text.substr(prev, cut - prev));
    prev = cut;
  }
  parts.push_back(text.substr(prev));
  return parts;
}

}  // namespace imdswatch::testing
