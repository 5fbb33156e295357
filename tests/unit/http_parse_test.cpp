// The kernel's HTTP parsers (bpf/http_parse.h), run on real request and
// response bytes, whole and split at every point.
#include <gtest/gtest.h>

#include <random>

#include "unit/http_parse_harness.h"

namespace imdswatch::testing {
namespace {

constexpr char kCanary[] = "CANARY-7f3a9c";

uint32_t Fnv(const std::string& s) {
  uint32_t h = IMDS_FNV_OFFSET;
  for (unsigned char c : s) h = (h ^ c) * IMDS_FNV_PRIME;
  return h;
}

const std::string kBotocorePut =
    "PUT /latest/api/token HTTP/1.1\r\nHost: 169.254.169.254\r\nAccept-Encoding: identity\r\n"
    "x-aws-ec2-metadata-token-ttl-seconds: 21600\r\nUser-Agent: Botocore/1.29.27 Python/3.11.2 Linux/6.1\r\n"
    "Content-Length: 0\r\n\r\n";
const std::string kRubyGet = std::string(
                                 "GET /latest/meta-data/iam/security-credentials/ HTTP/1.1\r\n"
                                 "Accept-Encoding: gzip;q=1.0,deflate;q=0.6,identity;q=0.3\r\n"
                                 "User-Agent: aws-sdk-ruby3/3.168.1\r\nX-Aws-Ec2-Metadata-Token: AQAE") +
                             kCanary + "==\r\nAccept: */*\r\nHost: 169.254.169.254\r\n\r\n";
const std::string kCurlCreds = std::string(
                                   "GET /latest/meta-data/iam/security-credentials/my-role HTTP/1.1\r\n"
                                   "Host: 169.254.169.254\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n") +
                               "X-aws-ec2-metadata-token: " + kCanary + "\r\n\r\n";

std::string CredentialsBody() {
  return std::string("{\n  \"Code\" : \"Success\",\n  \"LastUpdated\" : \"2026-11-25T15:00:00Z\",\n") +
         "  \"Type\" : \"AWS-HMAC\",\n  \"AccessKeyId\" : \"ASIA" + kCanary + "\",\n  \"SecretAccessKey\" : \"" +
         kCanary + std::string(40, 'x') + "\",\n  \"Token\" : \"IQoJ" + kCanary + std::string(900, 'T') +
         "\",\n  \"Expiration\" : \"2026-11-25T21:00:00Z\"\n}";
}

std::string Response(int status, const std::string& body, const std::string& extra = "") {
  return "HTTP/1.1 " + std::to_string(status) + " X\r\nContent-Type: text/plain\r\n" + extra +
         "Content-Length: " + std::to_string(body.size()) + "\r\nServer: EC2ws\r\n\r\n" + body;
}

TEST(HttpParse, HeaderHashesMatchTheirNames) {
  EXPECT_EQ(Fnv("x-aws-ec2-metadata-token"), IMDS_HDR_HASH_TOKEN);
  EXPECT_EQ(Fnv("x-aws-ec2-metadata-token-ttl-seconds"), IMDS_HDR_HASH_TOKEN_TTL);
  EXPECT_EQ(Fnv("user-agent"), IMDS_HDR_HASH_USER_AGENT);
  EXPECT_EQ(Fnv("content-length"), IMDS_HDR_HASH_CONTENT_LENGTH);
  EXPECT_EQ(Fnv("transfer-encoding"), IMDS_HDR_HASH_TRANSFER_ENC);
}

TEST(HttpParse, TokenPutHasTtlHeaderButNoToken) {
  ParseHarness h;
  h.Send(kBotocorePut, 42);
  ASSERT_EQ(h.requests.size(), 1u);
  EXPECT_EQ(h.requests[0].method, "PUT");
  EXPECT_EQ(h.requests[0].path, "/latest/api/token");
  EXPECT_EQ(h.requests[0].ua, "Botocore/1.29.27 Python/3.11.2 Linux/6.1");
  EXPECT_EQ(h.requests[0].flags & IMDS_REQ_HAS_TOKEN_TTL, IMDS_REQ_HAS_TOKEN_TTL);
  EXPECT_EQ(h.requests[0].flags & IMDS_REQ_HAS_TOKEN, 0);
  EXPECT_EQ(h.requests[0].start_ns, 42u);
  EXPECT_TRUE(h.errors.empty());
}

TEST(HttpParse, TokenHeaderFoundInAnyCaseAndNeverCopied) {
  for (const std::string& req : {kRubyGet, kCurlCreds}) {
    ParseHarness h;
    h.Send(req);
    ASSERT_EQ(h.requests.size(), 1u) << req;
    EXPECT_TRUE(h.requests[0].flags & IMDS_REQ_HAS_TOKEN);
    EXPECT_EQ(h.requests[0].path.find(kCanary), std::string::npos);
    EXPECT_EQ(h.requests[0].ua.find(kCanary), std::string::npos);
    EXPECT_EQ(std::string(h.req.path, sizeof(h.req.path)).find(kCanary), std::string::npos);
    EXPECT_EQ(std::string(h.req.ua, sizeof(h.req.ua)).find(kCanary), std::string::npos);
  }
}

TEST(HttpParse, CredentialsPathIsFlaggedButTheListIsNot) {
  ParseHarness h;
  h.Send(kRubyGet + kCurlCreds);
  ASSERT_EQ(h.requests.size(), 2u);
  EXPECT_EQ(h.requests[0].flags & IMDS_REQ_CREDENTIALS, 0);
  EXPECT_EQ(h.requests[1].flags & IMDS_REQ_CREDENTIALS, IMDS_REQ_CREDENTIALS);
  EXPECT_EQ(h.requests[1].path, "/latest/meta-data/iam/security-credentials/my-role");
}

TEST(HttpParse, PipelinedRequestsComeOutInOrder) {
  ParseHarness h;
  std::string body_put = "PUT /x HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello";
  h.Send(kBotocorePut + body_put + kCurlCreds);
  ASSERT_EQ(h.requests.size(), 3u);
  EXPECT_EQ(h.requests[0].seq, 0u);
  EXPECT_EQ(h.requests[1].path, "/x");
  EXPECT_EQ(h.requests[2].seq, 2u);
  EXPECT_EQ(h.requests[2].ua, "curl/7.88.1");
}

TEST(HttpParse, RequestSplitAtEveryPointParsesTheSame) {
  const std::string stream = kBotocorePut + kRubyGet + kCurlCreds;
  ParseHarness whole;
  whole.Send(stream);
  ASSERT_EQ(whole.requests.size(), 3u);
  for (size_t cut = 1; cut < stream.size(); cut++) {
    ParseHarness h;
    for (const auto& part : SplitAt(stream, {cut})) h.Send(part);
    ASSERT_EQ(h.requests.size(), 3u) << "cut at " << cut;
    for (size_t i = 0; i < 3; i++) {
      EXPECT_EQ(h.requests[i].path, whole.requests[i].path) << "cut at " << cut;
      EXPECT_EQ(h.requests[i].ua, whole.requests[i].ua) << "cut at " << cut;
      EXPECT_EQ(h.requests[i].flags, whole.requests[i].flags) << "cut at " << cut;
    }
  }
}

TEST(HttpParse, RandomChunkingParsesTheSame) {
  const std::string stream = kRubyGet + kBotocorePut + kCurlCreds + kRubyGet;
  std::mt19937 rng(7);
  for (int round = 0; round < 200; round++) {
    std::vector<size_t> cuts;
    for (size_t pos = 0; pos < stream.size(); pos += 1 + rng() % 40) cuts.push_back(pos);
    ParseHarness h;
    for (const auto& part : SplitAt(stream, cuts)) h.Send(part);
    ASSERT_EQ(h.requests.size(), 4u);
    EXPECT_EQ(h.requests[3].flags & IMDS_REQ_HAS_TOKEN, IMDS_REQ_HAS_TOKEN);
  }
}

TEST(HttpParse, LongPathAndUserAgentAreCutNotOverrun) {
  ParseHarness h;
  std::string path = "/latest/meta-data/" + std::string(300, 'p');
  std::string ua(200, 'u');
  h.Send("GET " + path + " HTTP/1.1\r\nUser-Agent: " + ua + "\r\n\r\n");
  ASSERT_EQ(h.requests.size(), 1u);
  EXPECT_EQ(h.requests[0].path.size(), size_t{IMDS_PATH_MAX});
  EXPECT_TRUE(h.requests[0].flags & IMDS_REQ_PATH_CUT);
  EXPECT_EQ(h.requests[0].ua, std::string(IMDS_UA_MAX, 'u'));
}

TEST(HttpParse, NoUserAgentMeansNone) {
  ParseHarness h;
  h.Send("GET /latest/meta-data/ HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n");
  ASSERT_EQ(h.requests.size(), 1u);
  EXPECT_EQ(h.requests[0].flags & IMDS_REQ_HAS_UA, 0);
  EXPECT_EQ(h.requests[0].ua, "");
}

TEST(HttpParse, MalformedRequestsAreErrorsNotCalls) {
  for (const std::string& bad : {std::string("get / HTTP/1.1\r\n\r\n"), std::string("GET /\r\n\r\n"),
                                 std::string("GET / XTTP/1.1\r\n\r\n"), std::string("\x16\x03\x01\x02", 4),
                                 std::string("GET / HTTP/1.1\r\nContent-Length: 12x\r\n\r\n"),
                                 std::string("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")}) {
    ParseHarness h;
    h.Send(bad);
    h.Send(kBotocorePut);  // the stream is abandoned after an error
    EXPECT_EQ(h.errors.size(), 1u) << bad;
    EXPECT_TRUE(h.requests.empty()) << bad;
  }
}

TEST(HttpParse, ResponseStatusAndEndOnKeepAlive) {
  ParseHarness h;
  h.Send(kBotocorePut + kRubyGet);
  h.Receive(Response(200, "AQAEtoken"), 10);
  h.Receive(Response(404, "Not Found"), 20);
  ASSERT_EQ(h.responses.size(), 2u);
  EXPECT_EQ(h.responses[0].status, 200);
  EXPECT_EQ(h.responses[0].first_ns, 10u);
  EXPECT_EQ(h.responses[0].end_ns, 10u);
  EXPECT_EQ(h.responses[1].status, 404);
  EXPECT_EQ(h.responses[1].seq, 1u);
  EXPECT_TRUE(h.errors.empty());
}

TEST(HttpParse, ResponseEndIsTheLastBodyByte) {
  ParseHarness h;
  h.Send(kRubyGet);
  std::string resp = Response(200, std::string(1000, 'b'));
  h.Receive(resp.substr(0, 100), 5);
  h.Receive(resp.substr(100, 600), 6);
  EXPECT_TRUE(h.responses.empty());
  h.Receive(resp.substr(700), 9);
  ASSERT_EQ(h.responses.size(), 1u);
  EXPECT_EQ(h.responses[0].first_ns, 5u);
  EXPECT_EQ(h.responses[0].end_ns, 9u);
}

TEST(HttpParse, ExpiryIsTheOnlyThingTakenFromCredentials) {
  ParseHarness h;
  h.Send(kCurlCreds);
  std::string resp = Response(200, CredentialsBody());
  for (size_t cut = 1; cut < resp.size(); cut += 7) {
    ParseHarness split;
    split.Send(kCurlCreds);
    for (const auto& part : SplitAt(resp, {cut})) split.Receive(part);
    ASSERT_EQ(split.responses.size(), 1u) << cut;
    EXPECT_EQ(split.responses[0].expiry, "2026-11-25T21:00:00Z") << cut;
    std::string state(reinterpret_cast<const char*>(&split.resp), sizeof(split.resp));
    EXPECT_EQ(state.find(kCanary), std::string::npos) << "secret bytes kept in parser state, cut " << cut;
  }
}

TEST(HttpParse, NoExpiryLookedForOutsideCredentialCalls) {
  ParseHarness h;
  h.Send(kRubyGet);  // the role list, not a role
  h.Receive(Response(200, CredentialsBody()));
  ASSERT_EQ(h.responses.size(), 1u);
  EXPECT_EQ(h.responses[0].expiry, "");
}

TEST(HttpParse, ResponseWithoutLengthEndsAtItsHead) {
  ParseHarness h;
  h.Send(kRubyGet);
  h.Receive("HTTP/1.0 200 OK\r\nServer: x\r\n\r\nrole");
  ASSERT_EQ(h.responses.size(), 1u);
  EXPECT_TRUE(h.responses[0].flags & IMDS_RESP_NO_LENGTH);
}

TEST(HttpParse, InterimResponseIsSkipped) {
  ParseHarness h;
  h.Send(kBotocorePut);
  h.Receive("HTTP/1.1 100 Continue\r\n\r\n" + Response(200, "tok"));
  ASSERT_EQ(h.responses.size(), 1u);
  EXPECT_EQ(h.responses[0].status, 200);
}

TEST(HttpParse, ThrottledAndErrorStatuses) {
  ParseHarness h;
  h.Send(kRubyGet + kRubyGet + kRubyGet);
  h.Receive(Response(429, "") + Response(503, "busy") + Response(500, "x"));
  ASSERT_EQ(h.responses.size(), 3u);
  EXPECT_EQ(h.responses[0].status, 429);
  EXPECT_EQ(h.responses[1].status, 503);
  EXPECT_EQ(h.responses[2].status, 500);
}

TEST(HttpParse, MalformedResponsesAreErrors) {
  for (const std::string& bad : {std::string("HTTP/1.1 2x0 OK\r\n\r\n"), std::string("SSH-2.0-OpenSSH\r\n"),
                                 std::string("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"),
                                 std::string("HTTP/1.1\r\n\r\n")}) {
    ParseHarness h;
    h.Send(kRubyGet);
    h.Receive(bad);
    EXPECT_EQ(h.errors.size(), 1u) << bad;
    EXPECT_TRUE(h.responses.empty()) << bad;
  }
}


// ---- The fast path (a whole head at once) against the byte-at-a-time parser ----

struct Outcome {
  ParseHarness h;
  std::string Describe() const {
    std::string out;
    for (const auto& r : h.requests)
      out += "req " + r.method + " " + r.path + " ua=" + r.ua + " f=" + std::to_string(r.flags) +
             " seq=" + std::to_string(r.seq) + " t=" + std::to_string(r.start_ns) + "\n";
    for (const auto& r : h.responses)
      out += "resp " + std::to_string(r.status) + " f=" + std::to_string(r.flags) + " seq=" + std::to_string(r.seq) +
             " exp=" + r.expiry + " t=" + std::to_string(r.first_ns) + "-" + std::to_string(r.end_ns) + "\n";
    for (uint8_t e : h.errors) out += "err " + std::to_string(e) + "\n";
    return out;
  }
};

// Client stream `sent`, then server stream `received`, each as one segment
// (fast path on) or one byte per segment (fast path off: the reference).
Outcome RunBoth(const std::string& sent, const std::string& received, bool whole) {
  Outcome o;
  o.h.fast = whole;
  if (whole) {
    o.h.Send(sent, 5);
    if (!received.empty()) o.h.Receive(received, 9);
  } else {
    for (char c : sent) o.h.Send(std::string(1, c), 5);
    for (char c : received) o.h.Receive(std::string(1, c), 9);
  }
  return o;
}

TEST(HttpParseFast, TakesRealHeadsAndAgreesWithByteAtATime) {
  const std::string creds = CredentialsBody();
  const struct {
    std::string sent, received;
    uint32_t fast_requests, fast_responses;
  } cases[] = {
      {kBotocorePut, Response(200, "AQAE" + std::string(kCanary)), 1, 1},
      {kRubyGet, Response(200, "my-role"), 1, 1},
      {kCurlCreds, Response(200, creds), 1, 1},
      {kCurlCreds, "HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok", 1, 1},
      {kRubyGet, Response(404, "") , 1, 1},
      {kRubyGet, Response(429, "slow down"), 1, 1},
      {kRubyGet, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nno length", 1, 1},
      {"GET  HTTP/1.1\r\nUser-Agent:\r\n\r\n", "", 1, 0},
      {"PUT /latest/api/token HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET /x HTTP/1.1\r\n\r\n", "", 1, 0},
      {"GET /a HTTP/1.1\r\nUser-Agent: \t  spaced\r\nuser-agenT2: x\r\n\r\n", "", 1, 0},
  };
  for (const auto& c : cases) {
    Outcome fast = RunBoth(c.sent, c.received, true), slow = RunBoth(c.sent, c.received, false);
    EXPECT_EQ(fast.Describe(), slow.Describe()) << c.sent;
    EXPECT_FALSE(fast.h.requests.empty()) << c.sent;
    EXPECT_EQ(fast.h.fast_heads[0], c.fast_requests) << c.sent;
    EXPECT_EQ(fast.h.fast_heads[1], c.fast_responses) << c.received;
    EXPECT_EQ(slow.h.fast_heads[0] + slow.h.fast_heads[1], 0u);
  }
}

// A head of exactly n bytes: an X-Pad header fills it up.
std::string PaddedHead(const std::string& first_lines, size_t n) {
  const std::string pad = "X-Pad: ";
  return first_lines + pad + std::string(n - first_lines.size() - pad.size() - 4, 'p') + "\r\n\r\n";
}

TEST(HttpParseFast, HeadsUpToTheLookSizeAreTakenAndLongerOnesAreNot) {
  for (size_t n : {size_t(IMDS_FAST_MAX - 1), size_t(IMDS_FAST_MAX), size_t(IMDS_FAST_MAX + 1)}) {
    const std::string request = PaddedHead("GET /latest/meta-data/ HTTP/1.1\r\nUser-Agent: pad\r\n", n);
    const std::string response = PaddedHead("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n", n) + "body";
    ASSERT_EQ(request.size(), n);
    Outcome fast = RunBoth(request, response, true), slow = RunBoth(request, response, false);
    EXPECT_EQ(fast.Describe(), slow.Describe()) << n;
    ASSERT_EQ(fast.h.responses.size(), 1u) << n;
    EXPECT_EQ(fast.h.responses[0].flags & IMDS_RESP_NO_LENGTH, 0) << n;
    EXPECT_EQ(fast.h.fast_heads[0], n <= IMDS_FAST_MAX ? 1u : 0u) << n;
    EXPECT_EQ(fast.h.fast_heads[1], n <= IMDS_FAST_MAX ? 1u : 0u) << n;
  }
}

TEST(HttpParseFast, DeclinesWhatItIsNotSureOfAndTheResultIsTheSame) {
  const std::string long_path = "GET /" + std::string(200, 'p') + " HTTP/1.1\r\n\r\n";
  const struct {
    std::string sent, received;
  } cases[] = {
      {"GET /x HTTP/1.1\r\nUser-\rAgent: stray-cr\r\n\r\n", ""},       // a CR the other parser skips
      {"GET /x HTTP/1.1\nUser-Agent: bare-lf\n\n", ""},                 // LF without CR
      {"GET /x HTTP/1.1\r\nUser-Agent: a\r\nUser-Agent: b\r\n\r\n", ""}, // repeated: values joined
      {"PUT /x HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", ""},
      {"PUT /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", ""},
      {"PUT /x HTTP/1.1\r\nContent-Length: 12x\r\n\r\n", ""},
      {"HEAD /x HTTP/1.1\r\n\r\n", ""},
      {"\r\nGET /x HTTP/1.1\r\n\r\n", ""},
      {long_path, ""},
      {kRubyGet, "HTTP/1.1 100 Continue\r\n\r\n" + Response(200, "role")},
      {kRubyGet, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"},
      {kRubyGet, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabc"},
      {kRubyGet, "HTTP/1.1 200 OK\r\nContent-Length: nine\r\n\r\n"},
      {kRubyGet, "HTTP/1.1 2x0 OK\r\n\r\n"},
  };
  for (const auto& c : cases) {
    Outcome fast = RunBoth(c.sent, c.received, true), slow = RunBoth(c.sent, c.received, false);
    EXPECT_EQ(fast.Describe(), slow.Describe()) << c.sent << c.received;
    // the head the case is about was left to the byte-at-a-time parser
    if (c.received.empty())
      EXPECT_EQ(fast.h.fast_heads[0], 0u) << c.sent;
    else
      EXPECT_EQ(fast.h.fast_heads[1], 0u) << c.received;
  }
}

TEST(HttpParseFast, HeadsSplitAtEveryPointAgreeWithTheWholeOnes) {
  const std::string sent = kBotocorePut + kCurlCreds;
  const std::string received = Response(200, "tok") + Response(200, CredentialsBody());
  Outcome whole = RunBoth(sent, received, true);
  ASSERT_EQ(whole.h.fast_heads[0], 1u);  // the second request follows in the same segment: windows
  for (size_t cut = 1; cut < received.size(); cut += 7) {
    Outcome split;
    split.h.Send(kBotocorePut, 5);
    split.h.Send(kCurlCreds, 5);
    for (const auto& part : SplitAt(received, {cut})) split.h.Receive(part, 9);
    Outcome reference = RunBoth(sent, received, false);
    EXPECT_EQ(split.Describe(), reference.Describe()) << "cut at " << cut;
  }
}

TEST(HttpParseFast, CredentialsTailsAgreeWithByteAtATime) {
  const std::string pad(200, 'T');
  const std::string bodies[] = {
      CredentialsBody(),
      "{\"Token\" : \"" + pad + "\",\n  \"Expiration\" : \"" + std::string(32, '9') + "\"\n}",  // the longest kept
      "{\"Token\" : \"" + pad + "\",\n  \"Expiration\" : \"" + std::string(33, '9') + "\"\n}",  // too long: dropped
      "{\"Token\" : \"" + pad + "\",\n  \"Expiration\" : \"2026-11-25T21:00:00Z",                // no closing quote
      "{\"Token\" : \"" + pad + "\", \"Expiration\":\"A\", \"Expiration\":\"B\"}",               // the first one counts
      "{\"Token\" : \"" + pad + "\", \"Code\" : \"Success\"}",                                    // no key at all
      "iration\":\"at-the-first-byte\"",                                                 // key at the tail's start
      "ration\":\"one-byte-short\"",
      "{\"Expiration\" : \"" + std::string(60, 'y') + "\"}",                               // 96 bytes and over
      "{\"Expiration\":\"" + std::string(59, 'y') + "\"}" + std::string(18, ' '),
      "{\"Expiration\":\"" + std::string(59, 'y') + "\"}" + std::string(19, ' '),
  };
  for (const std::string& body : bodies) {
    const std::string received = Response(200, body);
    Outcome reference = RunBoth(kCurlCreds, received, false);
    ASSERT_EQ(reference.h.responses.size(), 1u) << body;
    // head and body in one segment (as IMDS sends them)
    Outcome whole = RunBoth(kCurlCreds, received, true);
    EXPECT_EQ(whole.Describe(), reference.Describe()) << body;
    EXPECT_EQ(whole.h.fast_tails, 1u) << body;
    // head, then body (as the stand-in sends them), then the body cut anywhere
    const size_t head = received.size() - body.size();
    for (size_t cut = head; cut < received.size(); cut++) {
      Outcome split;
      split.h.Send(kCurlCreds, 5);
      for (const auto& part : SplitAt(received, {head, cut})) split.h.Receive(part, 9);
      EXPECT_EQ(split.Describe(), reference.Describe()) << body << " cut at " << cut;
      // a tail that arrives whole (the cut is before it) is taken fast
      if (cut == head) {
        EXPECT_EQ(split.h.fast_tails, 1u) << body;
      }
    }
  }
  // not a credentials call: no tail is looked at
  Outcome list = RunBoth(kRubyGet, Response(200, CredentialsBody()), true);
  EXPECT_EQ(list.h.fast_tails, 0u);
  EXPECT_EQ(list.Describe(), RunBoth(kRubyGet, Response(200, CredentialsBody()), false).Describe());
}

TEST(HttpParseFast, NeverCopiesMoreThanThePathAndUserAgent) {
  // a short path and User-Agent followed by the token in the fast path's
  // buffer: the record's whole path and User-Agent fields (which the kernel
  // fills from that buffer) must not hold a byte of it
  ParseHarness h;
  h.Send(std::string("GET / HTTP/1.1\r\nUser-Agent: a\r\nX-aws-ec2-metadata-token: ") + kCanary + kCanary +
         kCanary + "\r\n\r\n");
  ASSERT_EQ(h.fast_heads[0], 1u);
  ASSERT_EQ(h.requests.size(), 1u);
  EXPECT_EQ(h.requests[0].flags & IMDS_REQ_HAS_TOKEN, IMDS_REQ_HAS_TOKEN);
  EXPECT_EQ(h.requests[0].record_path, std::string("/") + std::string(IMDS_PATH_MAX - 1, '\0'));
  EXPECT_EQ(h.requests[0].record_ua, std::string("a") + std::string(IMDS_UA_MAX - 1, '\0'));
}

}  // namespace
}  // namespace imdswatch::testing
