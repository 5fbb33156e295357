// Runs bpf/http_parse.h — the very code the kernel runs — in userspace,
// feeding it byte streams the way imdswatch.bpf.c does (a whole head at once
// where it can be, else windows of at most IMDS_SCAN_WINDOW bytes, state kept
// between segments).
#pragma once

#include <linux/types.h>

#include <cstdint>
#include <string>
#include <vector>

#define IMDS_PARSER_INLINE inline
#define IMDS_PARSER_OUTLINE inline
struct imds_req_parser;
struct imds_resp_parser;
void imds_on_request(void* ctx, struct imds_req_parser* p, const __u8* buf, __u32 ua_from);
void imds_on_response(void* ctx, struct imds_resp_parser* p, __u64 end_ns);
void imds_on_parse_error(void* ctx, __u8 reason, __u8 direction);
int imds_test_load(void* ctx, __u32 off, __u8* buf, __u32 n);
#define IMDS_LOAD(ctx, off, buf, n) imds_test_load((ctx), (off), (buf), (n))
void imds_test_fast_taken(void* ctx, int dir);
#define IMDS_FAST_TAKEN(ctx, dir) imds_test_fast_taken((ctx), (dir))
void imds_test_fast_tail_taken(void* ctx);
#define IMDS_FAST_TAIL_TAKEN(ctx) imds_test_fast_tail_taken(ctx)
#include "http_parse.h"

namespace imdswatch::testing {

struct ParsedRequest {
  std::string method, path, ua;
  uint8_t flags;
  uint32_t seq;
  uint64_t start_ns;
  // the path and User-Agent fields of the kernel's record, whole (imds_request_text)
  std::string record_path, record_ua;
};

struct ParsedResponse {
  uint16_t status;
  uint8_t flags;
  uint32_t seq;
  std::string expiry;
  uint64_t first_ns, end_ns;
};

struct ParseHarness {
  imds_req_parser req{};
  imds_resp_parser resp{};
  std::vector<ParsedRequest> requests;
  std::vector<ParsedResponse> responses;
  std::vector<uint8_t> errors;  // reason * 2 + direction
  const std::string* segment = nullptr;  // what IMDS_LOAD reads
  uint32_t stopped_short = 0;             // segments whose head outgrew the windows
  bool fast = true;                       // whole heads at once where they can be (as the kernel)
  uint32_t fast_heads[2] = {0, 0};        // heads the fast path took, per direction
  uint32_t fast_tails = 0;                // credentials body tails it took

  // Feeds one segment of the client's stream at time now.
  void Send(const std::string& bytes, uint64_t now = 1);
  // Feeds one segment of the server's stream.
  void Receive(const std::string& bytes, uint64_t now = 1);
};

// Splits text into the given chunk boundaries.
std::vector<std::string> SplitAt(const std::string& text, const std::vector<size_t>& cuts);

}  // namespace imdswatch::testing
