// Joining kernel events into calls: matching by connection and sequence,
// outcomes from statuses and closes, and bad records.
#include "imdswatch/call_tracker.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <vector>

namespace imdswatch {
namespace {

struct RecordingSink : CallSink {
  std::vector<CallRecord> calls;
  std::vector<ConnOutcome> connections;
  int retransmits = 0;
  void OnCall(const CallRecord& call) override { calls.push_back(call); }
  void OnConnection(uint64_t, const Comm&, ConnOutcome outcome) override { connections.push_back(outcome); }
  void OnRetransmit(uint64_t, const Comm&) override { retransmits++; }
};

imds_event_hdr Hdr(uint8_t type, uint64_t sock, uint64_t ts) {
  imds_event_hdr h{};
  h.type = type;
  h.sock_id = sock;
  h.cgroup_id = 77;
  h.tgid = 1234;
  h.ts_ns = ts;
  return h;
}

imds_connect_event Connect(uint64_t sock) {
  imds_connect_event e{};
  e.hdr = Hdr(IMDS_EV_CONNECT, sock, 1);
  std::strcpy(e.comm, "python3");
  return e;
}

imds_request_event Request(uint64_t sock, uint32_t seq, uint8_t method, const char* path, uint8_t flags,
                           const char* ua, uint64_t start) {
  imds_request_event e{};
  e.hdr = Hdr(IMDS_EV_REQUEST, sock, start);
  e.seq = seq;
  e.method = method;
  e.flags = flags | (ua ? IMDS_REQ_HAS_UA : 0);
  e.start_ns = start;
  e.path_len = static_cast<uint8_t>(std::strlen(path));
  std::memcpy(e.path, path, e.path_len);
  if (ua) {
    e.ua_len = static_cast<uint8_t>(std::strlen(ua));
    std::memcpy(e.ua, ua, e.ua_len);
  }
  return e;
}

imds_response_event Response(uint64_t sock, uint32_t seq, uint16_t status, uint64_t first, uint64_t end) {
  imds_response_event e{};
  e.hdr = Hdr(IMDS_EV_RESPONSE, sock, end);
  e.seq = seq;
  e.status = status;
  e.first_byte_ns = first;
  e.end_ns = end;
  return e;
}

imds_close_event Close(uint64_t sock, uint8_t old_state, uint8_t flags, uint64_t ts, uint32_t requests = 0) {
  imds_close_event e{};
  e.hdr = Hdr(IMDS_EV_CLOSE, sock, ts);
  e.old_state = old_state;
  e.flags = flags;
  e.requests = requests;
  std::strcpy(e.comm, "curl");
  return e;
}

imds_retrans_event Retransmit(uint64_t sock, uint64_t ts) {
  imds_retrans_event e{};
  e.hdr = Hdr(IMDS_EV_RETRANS, sock, ts);
  std::strcpy(e.comm, "curl");
  return e;
}

constexpr uint8_t kEstablished = 1, kSynSent = 2;
constexpr char kBoto[] = "Botocore/1.29.27 Python/3.11.2";

TEST(CallTracker, JoinsKeepAliveRequestsWithTheirResponses) {
  RecordingSink sink;
  CallTracker tracker(&sink);
  tracker.Handle(Connect(1));
  tracker.Handle(Request(1, 0, IMDS_METHOD_PUT, "/latest/api/token", IMDS_REQ_HAS_TOKEN_TTL, kBoto, 1000000));
  tracker.Handle(Response(1, 0, 200, 1500000, 2000000));
  tracker.Handle(Request(1, 1, IMDS_METHOD_GET, "/latest/meta-data/iam/security-credentials/r",
                         IMDS_REQ_HAS_TOKEN, kBoto, 3000000));
  tracker.Handle(Response(1, 1, 200, 3500000, 4000000));
  ASSERT_EQ(sink.calls.size(), 2u);
  EXPECT_EQ(sink.calls[0].sample.call, Call::kToken);
  EXPECT_EQ(sink.calls[0].sample.version, Version::kV2);
  EXPECT_EQ(sink.calls[0].sample.client, Client::kBotocore);
  EXPECT_DOUBLE_EQ(sink.calls[0].sample.duration_seconds, 0.001);
  EXPECT_DOUBLE_EQ(sink.calls[0].sample.ttfb_seconds, 0.0005);
  EXPECT_EQ(sink.calls[1].sample.call, Call::kCredentials);
  EXPECT_EQ(sink.calls[1].role, "r");
  EXPECT_EQ(sink.calls[1].tgid, 1234u);
  EXPECT_EQ(CommView(sink.calls[1].comm), "python3");
  ASSERT_EQ(sink.connections.size(), 1u) << "the first request says the handshake completed, once";
  EXPECT_EQ(sink.connections[0], ConnOutcome::kEstablished);
}

// A caller from a cgroup the agent has placed sends no connect record: the
// request carries its attribution, and the close alone settles a connection
// that sent none.
TEST(CallTracker, ConnectionsWithoutAConnectRecordAreFollowedFromTheirFirstRecord) {
  RecordingSink sink;
  CallTracker tracker(&sink);
  imds_request_event first = Request(1, 0, IMDS_METHOD_GET, "/latest/meta-data/", 0, kBoto, 10);
  std::strcpy(first.comm, "aws");
  tracker.Handle(first);
  tracker.Handle(Response(1, 0, 200, 20, 30));
  ASSERT_EQ(sink.calls.size(), 1u);
  EXPECT_EQ(CommView(sink.calls[0].comm), "aws");
  EXPECT_EQ(sink.calls[0].cgroup_id, 77u);
  EXPECT_EQ(sink.calls[0].tgid, 1234u);
  tracker.Handle(Close(1, kEstablished, IMDS_CLOSE_ESTABLISHED, 40, 1));
  EXPECT_EQ(sink.connections, std::vector<ConnOutcome>{ConnOutcome::kEstablished});

  // established, then closed without a request; reset after it; refused; timed out
  tracker.Handle(Close(2, kEstablished, IMDS_CLOSE_ESTABLISHED, 50));
  tracker.Handle(Close(3, kEstablished, IMDS_CLOSE_ESTABLISHED | IMDS_CLOSE_RST_RECEIVED, 60));
  tracker.Handle(Close(4, kSynSent, IMDS_CLOSE_RST_RECEIVED, 70));
  tracker.Handle(Retransmit(5, 75));
  tracker.Handle(Close(5, kSynSent, 0, 80));
  const std::vector<ConnOutcome> want = {ConnOutcome::kEstablished, ConnOutcome::kEstablished,
                                         ConnOutcome::kEstablished, ConnOutcome::kReset,
                                         ConnOutcome::kRefused,     ConnOutcome::kTimeout};
  EXPECT_EQ(sink.connections, want);
  EXPECT_EQ(sink.retransmits, 1);
  EXPECT_EQ(tracker.stats().orphan_events, 0u);
  EXPECT_EQ(tracker.stats().open_connections, 0u);

  // a connection idled out of the table: its next request is followed again, its handshake not counted twice
  tracker.Handle(Request(6, 0, IMDS_METHOD_GET, "/latest/meta-data/", 0, nullptr, 100));
  tracker.Handle(Response(6, 0, 200, 110, 120));
  tracker.EvictIdle(1000000, 10);
  tracker.Handle(Request(6, 1, IMDS_METHOD_GET, "/latest/meta-data/", 0, nullptr, 2000000));
  tracker.Handle(Response(6, 1, 200, 2000010, 2000020));
  tracker.Handle(Close(6, kEstablished, IMDS_CLOSE_ESTABLISHED, 2000030, 2));
  EXPECT_EQ(sink.calls.size(), 3u);
  EXPECT_EQ(sink.connections.size(), want.size() + 1);
}

// A request head the socket sent after its close record (bytes queued
// before the close, or a head the server's FIN overtook) opens nothing and
// counts no second handshake; a lost record of request 0 leaves the
// handshake to the close.
TEST(CallTracker, RequestAfterTheCloseAndALostFirstRequestCountTheHandshakeOnce) {
  RecordingSink sink;
  CallTracker tracker(&sink);
  tracker.Handle(Close(1, kEstablished, IMDS_CLOSE_ESTABLISHED | IMDS_CLOSE_PEER_FIN, 10));
  tracker.Handle(Request(1, 0, IMDS_METHOD_GET, "/latest/meta-data/", IMDS_REQ_AFTER_CLOSE, nullptr, 20));
  EXPECT_EQ(sink.connections, std::vector<ConnOutcome>{ConnOutcome::kEstablished});
  EXPECT_EQ(tracker.stats().open_connections, 0u);
  EXPECT_EQ(tracker.stats().orphan_events, 1u);

  // request 0's record lost: request 1 opens the connection, the close counts the handshake
  tracker.Handle(Request(2, 1, IMDS_METHOD_GET, "/latest/meta-data/", 0, nullptr, 30));
  tracker.Handle(Response(2, 1, 200, 40, 50));
  tracker.Handle(Close(2, kEstablished, IMDS_CLOSE_ESTABLISHED | IMDS_CLOSE_FIRST_REQUEST_LOST, 60, 2));
  EXPECT_EQ(sink.connections, std::vector<ConnOutcome>(2, ConnOutcome::kEstablished));
  EXPECT_EQ(sink.calls.size(), 1u);

  // opened by a connect record (a cgroup not placed yet), closed without a request
  tracker.Handle(Connect(3));
  tracker.Handle(Close(3, kEstablished, IMDS_CLOSE_ESTABLISHED, 70));
  EXPECT_EQ(sink.connections, std::vector<ConnOutcome>(3, ConnOutcome::kEstablished));
  EXPECT_EQ(tracker.stats().open_connections, 0u);
}

TEST(CallTracker, StatusesMapToOutcomes) {
  RecordingSink sink;
  CallTracker tracker(&sink);
  tracker.Handle(Connect(1));
  const uint16_t statuses[] = {200, 301, 404, 429, 503, 500};
  for (uint32_t i = 0; i < 6; i++) tracker.Handle(Request(1, i, IMDS_METHOD_GET, "/latest/meta-data/", 0, nullptr, 10));
  for (uint32_t i = 0; i < 6; i++) tracker.Handle(Response(1, i, statuses[i], 20, 30));
  ASSERT_EQ(sink.calls.size(), 6u);
  const Outcome want[] = {Outcome::kOk,        Outcome::kOk,        Outcome::kError,
                          Outcome::kThrottled, Outcome::kThrottled, Outcome::kError};
  for (int i = 0; i < 6; i++) {
    EXPECT_EQ(sink.calls[i].sample.outcome, want[i]) << statuses[i];
    EXPECT_EQ(sink.calls[i].sample.status, statuses[i]);
    EXPECT_EQ(sink.calls[i].sample.client, Client::kUnknown);
  }
}

TEST(CallTracker, ClientLeavingWithARequestPendingIsATimeout) {
  RecordingSink sink;
  CallTracker tracker(&sink);
  tracker.Handle(Connect(1));
  tracker.Handle(Request(1, 0, IMDS_METHOD_PUT, "/latest/api/token", IMDS_REQ_HAS_TOKEN_TTL, nullptr, 1000000000));
  tracker.Handle(Close(1, kEstablished, IMDS_CLOSE_ESTABLISHED, 2000000000, 1));
  ASSERT_EQ(sink.calls.size(), 1u);
  EXPECT_EQ(sink.calls[0].sample.outcome, Outcome::kTimeout);
  EXPECT_EQ(sink.calls[0].sample.status, 0);
  EXPECT_DOUBLE_EQ(sink.calls[0].sample.duration_seconds, 1.0);
  // the connection is forgotten: a late response is not a call
  tracker.Handle(Response(1, 0, 200, 3, 4));
  EXPECT_EQ(sink.calls.size(), 1u);
  EXPECT_EQ(tracker.stats().orphan_events, 1u);
}

TEST(CallTracker, PeerCuttingTheConnectionIsAReset) {
  for (uint8_t flags : {uint8_t(IMDS_CLOSE_RST_RECEIVED), uint8_t(IMDS_CLOSE_PEER_FIN)}) {
    RecordingSink sink;
    CallTracker tracker(&sink);
    tracker.Handle(Connect(1));
    tracker.Handle(Request(1, 0, IMDS_METHOD_GET, "/latest/meta-data/", 0, nullptr, 10));
    tracker.Handle(Close(1, kEstablished, flags | IMDS_CLOSE_ESTABLISHED, 20, 1));
    ASSERT_EQ(sink.calls.size(), 1u);
    EXPECT_EQ(sink.calls[0].sample.outcome, Outcome::kReset);
    bool rst = flags & IMDS_CLOSE_RST_RECEIVED;
    std::vector<ConnOutcome> want = {ConnOutcome::kEstablished};
    if (rst) want.push_back(ConnOutcome::kReset);
    EXPECT_EQ(sink.connections, want);
  }
}

// After the client's half-close the kernel ends the exchange at the server's
// FIN or an RST, from FIN_WAIT1 or FIN_WAIT2.
TEST(CallTracker, APeerCutAfterTheClientsHalfCloseIsAReset) {
  constexpr uint8_t kFinWait1 = 4, kFinWait2 = 5;
  RecordingSink sink;
  CallTracker tracker(&sink);
  tracker.Handle(Request(1, 0, IMDS_METHOD_GET, "/latest/meta-data/", 0, nullptr, 10));
  tracker.Handle(Close(1, kFinWait1, IMDS_CLOSE_ESTABLISHED | IMDS_CLOSE_HALF_CLOSED | IMDS_CLOSE_RST_RECEIVED, 20, 1));
  tracker.Handle(Request(2, 0, IMDS_METHOD_GET, "/latest/meta-data/", 0, nullptr, 30));
  tracker.Handle(Close(2, kFinWait2, IMDS_CLOSE_ESTABLISHED | IMDS_CLOSE_HALF_CLOSED | IMDS_CLOSE_PEER_FIN, 40, 1));
  ASSERT_EQ(sink.calls.size(), 2u);
  EXPECT_EQ(sink.calls[0].sample.outcome, Outcome::kReset);
  EXPECT_EQ(sink.calls[1].sample.outcome, Outcome::kReset);
  EXPECT_EQ(sink.connections,
            (std::vector<ConnOutcome>{ConnOutcome::kEstablished, ConnOutcome::kReset, ConnOutcome::kEstablished}));
}

TEST(CallTracker, ConnectionEvictedFromTheKernelTableIsForgottenWithoutAnOutcome) {
  RecordingSink sink;
  CallTracker tracker(&sink);
  tracker.Handle(Connect(1));
  tracker.Handle(Request(1, 0, IMDS_METHOD_GET, "/latest/meta-data/", 0, nullptr, 10));
  tracker.Handle(Close(1, kEstablished, IMDS_CLOSE_ESTABLISHED | IMDS_CLOSE_EVICTED, 20, 1));
  EXPECT_TRUE(sink.calls.empty()) << "a pending request of an evicted connection is neither timeout nor reset";
  EXPECT_EQ(sink.connections, std::vector<ConnOutcome>{ConnOutcome::kEstablished}) << "its request said so";
  EXPECT_EQ(tracker.stats().open_connections, 0u);
  EXPECT_EQ(tracker.stats().evicted_connections, 0u) << "counted once, by the kernel";
  tracker.Handle(Response(1, 0, 200, 30, 40));
  EXPECT_TRUE(sink.calls.empty());
}

// Kernels before 5.12 claim slots with plain stores: a connection's close and
// its eviction by a new connect can both send a record.
TEST(CallTracker, ACloseAndAnEvictionOfOneConnectionSettleItOnce) {
  for (bool eviction_first : {true, false}) {
    RecordingSink sink;
    CallTracker tracker(&sink, 65536, 2);
    tracker.Handle(Request(1, 0, IMDS_METHOD_GET, "/latest/meta-data/", 0, nullptr, 10));
    const auto evicted = Close(1, kEstablished, IMDS_CLOSE_ESTABLISHED | IMDS_CLOSE_EVICTED, 20, 1);
    const auto closed = Close(1, kEstablished, IMDS_CLOSE_ESTABLISHED | IMDS_CLOSE_RST_RECEIVED, 21, 1);
    tracker.Handle(eviction_first ? evicted : closed);
    tracker.Handle(eviction_first ? closed : evicted);
    std::vector<ConnOutcome> want = {ConnOutcome::kEstablished};
    if (!eviction_first) want.push_back(ConnOutcome::kReset);
    EXPECT_EQ(sink.connections, want) << "eviction first: " << eviction_first;
    EXPECT_EQ(sink.calls.size(), eviction_first ? 0u : 1u);
    EXPECT_EQ(tracker.stats().duplicate_closes, 1u);
    EXPECT_EQ(tracker.stats().orphan_events, 0u);

    // two handshakes that never sent a request: each counted once
    tracker.Handle(Close(2, kEstablished, IMDS_CLOSE_ESTABLISHED | IMDS_CLOSE_EVICTED, 30));
    tracker.Handle(Close(2, kEstablished, IMDS_CLOSE_ESTABLISHED, 31));
    tracker.Handle(Close(3, kEstablished, IMDS_CLOSE_ESTABLISHED, 32));
    tracker.Handle(Close(3, kEstablished, IMDS_CLOSE_ESTABLISHED | IMDS_CLOSE_EVICTED, 33));
    EXPECT_EQ(std::count(sink.connections.begin(), sink.connections.end(), ConnOutcome::kEstablished), 3);
    EXPECT_EQ(tracker.stats().duplicate_closes, 3u);

    // a socket that connects again closes again: both closes count
    tracker.Handle(Close(4, kSynSent, 0, 40));
    tracker.Handle(Close(4, kSynSent, 0, 41));
    EXPECT_EQ(std::count(sink.connections.begin(), sink.connections.end(), ConnOutcome::kTimeout), 2);

    // only the last two closes are remembered (recent_closes 2): 1, 2 and 3 are forgotten
    tracker.Handle(Close(1, kEstablished, IMDS_CLOSE_EVICTED, 50));
    EXPECT_EQ(tracker.stats().duplicate_closes, 3u);
  }
  // recent_closes 0 (a kernel whose claim swaps: one close per connection): nothing is remembered
  RecordingSink sink;
  CallTracker tracker(&sink, CallTracker::kMaxConnections, 0);
  tracker.Handle(Close(5, kEstablished, IMDS_CLOSE_ESTABLISHED | IMDS_CLOSE_EVICTED, 60));
  tracker.Handle(Close(5, kEstablished, IMDS_CLOSE_ESTABLISHED, 61));
  EXPECT_EQ(sink.connections, std::vector<ConnOutcome>(2, ConnOutcome::kEstablished));
  EXPECT_EQ(tracker.stats().duplicate_closes, 0u);
}

TEST(CallTracker, FailedHandshakeIsRefusedOrTimeout) {
  RecordingSink sink;
  CallTracker tracker(&sink);
  tracker.Handle(Connect(1));
  tracker.Handle(Close(1, kSynSent, IMDS_CLOSE_RST_RECEIVED, 5));
  tracker.Handle(Connect(2));
  tracker.Handle(Retransmit(2, 6));
  tracker.Handle(Close(2, kSynSent, 0, 7));
  ASSERT_EQ(sink.connections.size(), 2u);
  EXPECT_EQ(sink.connections[0], ConnOutcome::kRefused);
  EXPECT_EQ(sink.connections[1], ConnOutcome::kTimeout);
  EXPECT_EQ(sink.retransmits, 1);
  EXPECT_TRUE(sink.calls.empty());
}

TEST(CallTracker, LostResponseIsSkippedNotMismatched) {
  RecordingSink sink;
  CallTracker tracker(&sink);
  tracker.Handle(Connect(1));
  tracker.Handle(Request(1, 0, IMDS_METHOD_GET, "/latest/meta-data/a", 0, nullptr, 10));
  tracker.Handle(Request(1, 1, IMDS_METHOD_GET, "/latest/meta-data/b", 0, nullptr, 20));
  tracker.Handle(Response(1, 1, 200, 30, 40));  // response 0 was lost
  ASSERT_EQ(sink.calls.size(), 1u);
  EXPECT_EQ(sink.calls[0].path, "/latest/meta-data/b");
  tracker.Handle(Response(1, 7, 200, 50, 60));  // nothing asked
  EXPECT_EQ(tracker.stats().unmatched_responses, 1u);
}

TEST(CallTracker, ParseErrorsAreCountedByReasonAndDirection) {
  RecordingSink sink;
  CallTracker tracker(&sink);
  imds_parse_error_event e{};
  e.hdr = Hdr(IMDS_EV_PARSE_ERROR, 1, 1);
  e.reason = IMDS_PERR_BAD_STATUS_LINE;
  e.direction = 1;
  tracker.Handle(e);
  e.reason = 200;  // out of range: ignored, not a crash
  tracker.Handle(e);
  EXPECT_EQ(tracker.stats().parse_errors[IMDS_PERR_BAD_STATUS_LINE][1], 1u);
}

TEST(CallTracker, TableIsBoundedAndIdleConnectionsAreEvicted) {
  RecordingSink sink;
  CallTracker tracker(&sink, 4);
  for (uint64_t s = 1; s <= 6; s++) tracker.Handle(Connect(s));
  EXPECT_EQ(tracker.stats().open_connections, 4u);
  EXPECT_EQ(tracker.stats().evicted_connections, 2u);
  tracker.EvictIdle(1000000, 10);
  EXPECT_EQ(tracker.stats().open_connections, 0u);
}

}  // namespace
}  // namespace imdswatch
