// Joins the kernel's per-connection events into finished calls: a request
// head and its response (matched by connection and sequence number), or a
// request that never got one (the client gave up: timeout; a reset: reset).
// Connection outcomes come from the first request (the handshake completed)
// and the close.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <deque>
#include <string>
#include <unordered_map>

#include "imdswatch/call.h"
#include "imdswatch/event_decoder.h"

namespace imdswatch {

using Comm = std::array<char, IMDS_COMM_LEN>;

inline std::string_view CommView(const Comm& comm) {
  size_t n = 0;
  while (n < comm.size() && comm[n] != '\0') n++;
  return {comm.data(), n};
}

// One finished call with everything the exporters and the trace need.
struct CallRecord {
  uint64_t cgroup_id = 0;
  uint32_t tgid = 0;
  Comm comm{};
  uint64_t start_ns = 0;  // CLOCK_MONOTONIC (bpf_ktime_get_ns)
  CallSample sample;
  std::string method;
  std::string path;
  std::string role;    // credentials calls
  std::string expiry;  // credentials "Expiration", when the response carried one
};

class CallSink {
 public:
  virtual ~CallSink() = default;
  virtual void OnCall(const CallRecord& call) = 0;
  virtual void OnConnection(uint64_t cgroup_id, const Comm& comm, ConnOutcome outcome) = 0;
  virtual void OnRetransmit(uint64_t cgroup_id, const Comm& comm) = 0;
  // A metadata reply to `pod_ip` died in this node's forwarding path (TTL ran out).
  virtual void OnForwardingDrop(const std::string& pod_ip) { (void)pod_ip; }
};

// Written by the event thread, read at scrape time: relaxed atomics.
struct TrackerStats {
  std::atomic<uint64_t> parse_errors[IMDS_PERR__COUNT][2] = {};  // [reason][0 request, 1 response]
  // a response on a connection not followed (closed, or its request's record
  // lost), or a request head sent after its connection's close record
  std::atomic<uint64_t> orphan_events{0};
  std::atomic<uint64_t> unmatched_responses{0};  // response whose request was not seen
  // a second close record of one connection: kernels before 5.12 (no
  // BPF_CMPXCHG) can send one from its close and one from its eviction
  std::atomic<uint64_t> duplicate_closes{0};
  std::atomic<uint64_t> evicted_connections{0};  // table full or connection idle too long
  std::atomic<uint64_t> open_connections{0};
};

class CallTracker {
 public:
  static constexpr size_t kMaxConnections = 65536;
  static constexpr size_t kRecentCloses = 4096;
  // recent_closes 0: the kernel sends one close per connection, none is remembered
  explicit CallTracker(CallSink* sink, size_t max_connections = kMaxConnections, size_t recent_closes = kRecentCloses);
  void Handle(const Event& event);
  // Forgets connections with no event for longer than idle_ns (a close we missed).
  void EvictIdle(uint64_t now_ns, uint64_t idle_ns);
  const TrackerStats& stats() const { return stats_; }
  size_t max_connections() const { return max_connections_; }

 private:
  struct PendingRequest {
    uint32_t seq;
    uint64_t start_ns;
    Call call;
    Version version;
    Client client;
    std::string method;
    std::string path;
  };
  struct Connection {
    uint64_t cgroup_id = 0;
    uint32_t tgid = 0;
    Comm comm{};
    uint64_t last_ns = 0;
    std::deque<PendingRequest> pending;
  };

  // Who a connection belongs to, from any record that carries it.
  static Connection NewConnection(const imds_event_hdr& hdr, const char (&comm)[IMDS_COMM_LEN]);
  Connection* Find(const imds_event_hdr& hdr);
  // The connection of hdr's socket, followed from now on if it was not.
  Connection& Open(const imds_event_hdr& hdr, const char (&comm)[IMDS_COMM_LEN]);
  void OnRequest(const imds_request_event& e);
  void OnResponse(const imds_response_event& e);
  void OnClose(const imds_close_event& e);
  // True for the second of a close and an eviction record of one connection
  // (either order); remembers this one among the last recent_closes.
  bool SecondClose(const imds_close_event& e);
  // A closed connection's outcome and its pending requests'.
  void SettleClosed(Connection& conn, const imds_close_event& e);
  void Finish(const Connection& conn, PendingRequest&& req, Outcome outcome, uint16_t status, uint64_t end_ns,
              uint64_t first_byte_ns, std::string expiry);

  CallSink* sink_;
  size_t max_connections_;
  std::unordered_map<uint64_t, Connection> connections_;
  // Cookies of the last closes, and whether each was an eviction. A cookie
  // is never reused while a kernel runs; a socket that connects again keeps
  // it, so only a close and an eviction of one cookie are a pair (a socket
  // closed, connected again and then evicted would be taken for one).
  size_t recent_closes_;
  std::unordered_map<uint64_t, bool> closed_evicted_;
  std::deque<uint64_t> closed_order_;
  TrackerStats stats_;
};

}  // namespace imdswatch
