// Owns the kernel side: opens the skeleton (twice: the attached filters,
// then the work behind them), configures it, loads it and attaches every
// program to the cgroup v2 root; detaches in reverse on destruction. Links are fds, so even a killed agent leaves nothing attached.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "imdswatch/endpoint.h"
#include "imdswatch.h"

struct imdswatch_bpf;
struct bpf_link;

namespace imdswatch {

// How records reach the agent. Batched: the kernel wakes the reader only once
// a quarter of the ring waits, and the EventLoop drains it on a timer (a
// wakeup per record costs more than the rest of a request's BPF time).
// Per record: each record wakes the reader (`imdswatch trace`, whose lines
// should appear as the requests happen).
enum class Delivery { kBatched, kPerRecord };

// How a part of the kernel side runs on this kernel, where it has more than
// one way (imdswatch_probe_mode): a fleet's nodes on an older kernel's
// fallback are then found by a query, not by reading each agent's log.
struct ProbeMode {
  std::string part;  // connection_claim, half_close, forwarding_drops
  std::string mode;  // connection_claim: cmpxchg, plain_store; half_close: followed, ends_exchange;
                     // forwarding_drops: tp_btf, raw_tp_forwarding_code, raw_tp_every_drop, not_attached, off
};

struct ProbeOptions {
  std::vector<Endpoint> endpoints;
  std::string cgroup_root;
  uint32_t ringbuf_bytes = 1u << 20;
  bool watch_forwarding = true;  // kfree_skb: metadata replies dying in this node's forwarding path
  bool forwarding_raw_tp = false;  // raw_tp/kfree_skb even where the tracepoint passes a drop reason
  bool plain_store_claim = false;  // claim connection slots as before 5.12, even where BPF_CMPXCHG exists
  Delivery delivery = Delivery::kBatched;
};

class Probes {
 public:
  // Loads and attaches everything, or returns null with *error set and
  // nothing left loaded.
  static std::unique_ptr<Probes> Load(const ProbeOptions& options, std::string* error);
  ~Probes();
  Probes(const Probes&) = delete;
  Probes& operator=(const Probes&) = delete;

  // Detaches every program now (maps stay readable); the destructor does the rest.
  void Detach();
  int ringbuf_fd() const;
  // Tells the kernel side that the agent knows this cgroup's path: its
  // connects then wait for the drain timer instead of waking the agent.
  void MarkCgroupKnown(uint64_t cgroup_id);
  // Kernel-side losses by enum imds_drop_reason, summed over CPUs.
  std::array<uint64_t, IMDS_DROP__COUNT> DropCounts() const;
  // "hook:program" of each attached program, for /healthz.
  const std::vector<std::string>& attached() const { return attached_; }
  const std::vector<ProbeMode>& modes() const { return modes_; }
  // The connection claim swaps a slot's word (BPF_CMPXCHG): a connection's
  // close and its eviction cannot both send a record.
  bool closes_once() const { return closes_once_; }

 private:
  Probes() = default;
  imdswatch_bpf* filters_ = nullptr;  // the attached filters, loaded first; owns the maps
  imdswatch_bpf* skel_ = nullptr;     // the work behind them, on the same maps
  int cgroup_fd_ = -1;
  std::vector<::bpf_link*> links_;
  std::vector<std::string> attached_;
  std::vector<ProbeMode> modes_;
  bool closes_once_ = false;
};

}  // namespace imdswatch
