#include "imdswatch/call_tracker.h"

#include <arpa/inet.h>

#include <cstring>
#include <optional>

#include "imdswatch/classify.h"

namespace imdswatch {

namespace {

constexpr uint8_t kTcpSynSent = 2;

std::string_view MethodName(uint8_t method) {
  switch (method) {
    case IMDS_METHOD_GET: return "GET";
    case IMDS_METHOD_PUT: return "PUT";
    case IMDS_METHOD_HEAD: return "HEAD";
    case IMDS_METHOD_POST: return "POST";
  }
  return "OTHER";
}

double Seconds(uint64_t from_ns, uint64_t to_ns) {
  return to_ns > from_ns ? static_cast<double>(to_ns - from_ns) / 1e9 : 0.0;
}

Comm CommOf(const char (&comm)[IMDS_COMM_LEN]) {
  Comm out;
  std::memcpy(out.data(), comm, out.size());
  return out;
}

}  // namespace

CallTracker::CallTracker(CallSink* sink, size_t max_connections, size_t recent_closes)
    : sink_(sink), max_connections_(max_connections), recent_closes_(recent_closes) {}

CallTracker::Connection* CallTracker::Find(const imds_event_hdr& hdr) {
  auto it = connections_.find(hdr.sock_id);
  if (it == connections_.end()) {
    stats_.orphan_events++;
    return nullptr;
  }
  it->second.last_ns = hdr.ts_ns;
  return &it->second;
}

CallTracker::Connection CallTracker::NewConnection(const imds_event_hdr& hdr, const char (&comm)[IMDS_COMM_LEN]) {
  Connection conn;
  conn.cgroup_id = hdr.cgroup_id;
  conn.tgid = hdr.tgid;
  conn.comm = CommOf(comm);
  conn.last_ns = hdr.ts_ns;
  return conn;
}

CallTracker::Connection& CallTracker::Open(const imds_event_hdr& hdr, const char (&comm)[IMDS_COMM_LEN]) {
  auto it = connections_.find(hdr.sock_id);
  if (it == connections_.end()) {
    if (connections_.size() >= max_connections_) {
      // full: drop the least recently active connection rather than the new one
      auto oldest = connections_.begin();
      for (auto o = connections_.begin(); o != connections_.end(); ++o)
        if (o->second.last_ns < oldest->second.last_ns) oldest = o;
      connections_.erase(oldest);
      stats_.evicted_connections++;
    }
    it = connections_.emplace(hdr.sock_id, NewConnection(hdr, comm)).first;
    stats_.open_connections = connections_.size();
  }
  it->second.last_ns = hdr.ts_ns;
  return it->second;
}

void CallTracker::Handle(const Event& event) {
  if (const auto* e = std::get_if<imds_connect_event>(&event)) {
    // a socket that connects again starts over
    connections_.erase(e->hdr.sock_id);
    Open(e->hdr, e->comm);
  } else if (const auto* req = std::get_if<imds_request_event>(&event)) {
    OnRequest(*req);
  } else if (const auto* resp = std::get_if<imds_response_event>(&event)) {
    OnResponse(*resp);
  } else if (const auto* close = std::get_if<imds_close_event>(&event)) {
    OnClose(*close);
  } else if (const auto* rt = std::get_if<imds_retrans_event>(&event)) {
    sink_->OnRetransmit(rt->hdr.cgroup_id, CommOf(rt->comm));
  } else if (const auto* drop = std::get_if<imds_ttl_drop_event>(&event)) {
    char text[INET6_ADDRSTRLEN] = {};
    inet_ntop(drop->hdr.family, drop->daddr, text, sizeof(text));
    sink_->OnForwardingDrop(text);
  } else if (const auto* perr = std::get_if<imds_parse_error_event>(&event)) {
    if (perr->reason < IMDS_PERR__COUNT) stats_.parse_errors[perr->reason][perr->direction ? 1 : 0]++;
  }
}

void CallTracker::OnRequest(const imds_request_event& e) {
  // bytes the socket sent after its close record: that connection is settled
  if (e.flags & IMDS_REQ_AFTER_CLOSE) {
    stats_.orphan_events++;
    return;
  }
  // The kernel sends no record for a handshake: the first request says it
  // completed (a connection that never sends one, or whose first request's
  // record was lost, its close).
  Connection& conn = Open(e.hdr, e.comm);
  if (e.seq == 0) sink_->OnConnection(conn.cgroup_id, conn.comm, ConnOutcome::kEstablished);
  PendingRequest req;
  req.seq = e.seq;
  req.start_ns = e.start_ns;
  req.method = std::string(MethodName(e.method));
  req.path.assign(e.path, e.path_len);
  req.call = ClassifyCall(req.method, req.path);
  req.version = ClassifyVersion(req.call, e.flags & IMDS_REQ_HAS_TOKEN);
  req.client = ClassifyUserAgent(std::string_view(e.ua, e.ua_len), e.flags & IMDS_REQ_HAS_UA);
  conn.pending.push_back(std::move(req));
}

void CallTracker::OnResponse(const imds_response_event& e) {
  Connection* conn = Find(e.hdr);
  if (!conn) return;
  // responses come in request order; anything older than this one was lost
  while (!conn->pending.empty() && conn->pending.front().seq < e.seq) conn->pending.pop_front();
  if (conn->pending.empty() || conn->pending.front().seq != e.seq) {
    stats_.unmatched_responses++;
    return;
  }
  PendingRequest req = std::move(conn->pending.front());
  conn->pending.pop_front();
  std::string expiry;
  if (e.flags & IMDS_RESP_HAS_EXPIRY) expiry.assign(e.expiry, e.expiry_len);
  Finish(*conn, std::move(req), OutcomeForStatus(e.status), e.status, e.end_ns, e.first_byte_ns, std::move(expiry));
}

bool CallTracker::SecondClose(const imds_close_event& e) {
  if (recent_closes_ == 0) return false;
  const bool evicted = e.flags & IMDS_CLOSE_EVICTED;
  auto [seen, fresh] = closed_evicted_.try_emplace(e.hdr.sock_id, evicted);
  // the same kind twice: the socket connected again and closed again
  if (!fresh) return seen->second != evicted;
  closed_order_.push_back(e.hdr.sock_id);
  if (closed_order_.size() > recent_closes_) {
    closed_evicted_.erase(closed_order_.front());
    closed_order_.pop_front();
  }
  return false;
}

void CallTracker::OnClose(const imds_close_event& e) {
  if (SecondClose(e)) {
    stats_.duplicate_closes++;
    return;
  }
  auto it = connections_.find(e.hdr.sock_id);
  // A connection with no record before its close (a handshake that failed,
  // or one that sent no request) is known by the close alone.
  std::optional<Connection> unseen;
  if (it == connections_.end()) unseen.emplace(NewConnection(e.hdr, e.comm));
  Connection& conn = unseen ? *unseen : it->second;
  if ((e.flags & IMDS_CLOSE_ESTABLISHED) && (e.requests == 0 || (e.flags & IMDS_CLOSE_FIRST_REQUEST_LOST)))
    sink_->OnConnection(conn.cgroup_id, conn.comm, ConnOutcome::kEstablished);
  // An evicted connection (the kernel gave its slot to a new one, counted
  // there as socket_table_full) has no outcome to report for what it had pending.
  if (!(e.flags & IMDS_CLOSE_EVICTED)) SettleClosed(conn, e);
  if (it != connections_.end()) connections_.erase(it);
  stats_.open_connections = connections_.size();
}

void CallTracker::SettleClosed(Connection& conn, const imds_close_event& e) {
  const bool rst = e.flags & IMDS_CLOSE_RST_RECEIVED;
  if (e.old_state == kTcpSynSent) {
    // the handshake never completed: an RST is a refusal, silence a timeout
    sink_->OnConnection(conn.cgroup_id, conn.comm, rst ? ConnOutcome::kRefused : ConnOutcome::kTimeout);
  } else if (rst) {  // ESTABLISHED, or FIN_WAIT1/2 after the client's half-close
    sink_->OnConnection(conn.cgroup_id, conn.comm, ConnOutcome::kReset);
  }
  // Requests still waiting: the client left (timeout), or the peer cut the
  // connection with an RST or a FIN before answering (reset).
  const bool peer_cut = rst || (e.flags & IMDS_CLOSE_PEER_FIN);
  while (!conn.pending.empty()) {
    PendingRequest req = std::move(conn.pending.front());
    conn.pending.pop_front();
    Finish(conn, std::move(req), peer_cut ? Outcome::kReset : Outcome::kTimeout, 0, e.hdr.ts_ns, 0, "");
  }
}

void CallTracker::Finish(const Connection& conn, PendingRequest&& req, Outcome outcome, uint16_t status,
                         uint64_t end_ns, uint64_t first_byte_ns, std::string expiry) {
  CallRecord rec;
  rec.cgroup_id = conn.cgroup_id;
  rec.tgid = conn.tgid;
  rec.comm = conn.comm;
  rec.start_ns = req.start_ns;
  rec.sample.call = req.call;
  rec.sample.version = req.version;
  rec.sample.client = req.client;
  rec.sample.outcome = outcome;
  rec.sample.status = status;
  rec.sample.duration_seconds = Seconds(req.start_ns, end_ns);
  rec.sample.ttfb_seconds = first_byte_ns ? Seconds(req.start_ns, first_byte_ns) : 0.0;
  if (req.call == Call::kCredentials) rec.role = RoleFromPath(req.path);
  rec.method = std::move(req.method);
  rec.path = std::move(req.path);
  rec.expiry = std::move(expiry);
  sink_->OnCall(rec);
}

void CallTracker::EvictIdle(uint64_t now_ns, uint64_t idle_ns) {
  for (auto it = connections_.begin(); it != connections_.end();) {
    if (now_ns > it->second.last_ns && now_ns - it->second.last_ns > idle_ns) {
      it = connections_.erase(it);
      stats_.evicted_connections++;
    } else {
      ++it;
    }
  }
  stats_.open_connections = connections_.size();
}

}  // namespace imdswatch
