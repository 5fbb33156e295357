#include "imdswatch/pipeline.h"

#include <linux/capability.h>
#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstring>

#include "imdswatch/preflight.h"

namespace imdswatch {

std::unique_ptr<Pipeline> Pipeline::Start(const AgentConfig& config, CallSink* sink, std::string* error,
                                          Delivery delivery) {
  std::unique_ptr<Pipeline> p(new Pipeline());
  auto missing = MissingCapabilities();
  if (!missing.empty()) {
    *error = "insufficient privileges: ";
    for (size_t i = 0; i < missing.size(); i++) *error += (i ? "; " : "") + missing[i];
    return nullptr;
  }
  if (std::string why = CheckKernelBtf(); !why.empty()) {
    *error = why;
    return nullptr;
  }
  p->cgroup_root_ = config.cgroup_root;
  if (p->cgroup_root_.empty()) {
    auto detected = CgroupResolver::DetectRoot();
    if (!detected) {
      *error = "no cgroup v2 mount found in /proc/self/mountinfo: imdswatch needs cgroup v2 (give --cgroup-root)";
      return nullptr;
    }
    p->cgroup_root_ = *detected;
  }
  if (std::string why = CheckCgroupV2Root(p->cgroup_root_); !why.empty()) {
    *error = "--cgroup-root: " + why;
    return nullptr;
  }

  p->cgroups_ = std::make_unique<CgroupResolver>(p->cgroup_root_, 65536);
  if (config.kube.enabled) {
    KubeConfig kube = config.kube.api_server.empty() ? KubeConfig::InCluster() : KubeConfig{};
    if (!config.kube.api_server.empty()) kube.server = config.kube.api_server;
    if (!config.kube.token_file.empty()) kube.token_file = config.kube.token_file;
    if (!config.kube.ca_file.empty()) kube.ca_file = config.kube.ca_file;
    kube.node_name = config.kube.node_name;
    if (kube.server.empty()) {
      *error = "--kube-api-server: not given and not running in a cluster "
               "(KUBERNETES_SERVICE_HOST unset); use --no-kube to run without it";
      return nullptr;
    }
    if (std::string why = kube.Validate(); !why.empty()) {
      *error = "Kubernetes API configuration: " + why;
      return nullptr;
    }
    p->pods_ = std::make_unique<PodStore>();
    p->kube_ = std::make_unique<KubePodWatcher>(kube, p->pods_.get());
  }
  p->attributor_ = std::make_unique<Attributor>(p->cgroups_.get(), p->pods_.get());

  ProbeOptions probe_options;
  probe_options.endpoints = config.endpoints;
  probe_options.cgroup_root = p->cgroup_root_;
  probe_options.ringbuf_bytes = config.ringbuf_bytes;
  probe_options.watch_forwarding = config.watch_forwarding;
  probe_options.forwarding_raw_tp = config.forwarding_raw_tp;
  probe_options.plain_store_claim = config.plain_store_claim;
  probe_options.delivery = delivery;
  p->probes_ = Probes::Load(probe_options, error);
  if (!p->probes_) return nullptr;
  // closes are remembered only where the kernel may send two for one connection
  p->tracker_ = std::make_unique<CallTracker>(sink, CallTracker::kMaxConnections,
                                              p->probes_->closes_once() ? 0 : CallTracker::kRecentCloses);
  // CAP_SYSLOG (deploy/components/kernel-before-5.17) was for reading the
  // forwarding code's addresses in /proc/kallsyms at load: not kept after.
  if (!DropCapability(CAP_SYSLOG)) spdlog::warn("could not give up CAP_SYSLOG: {}", std::strerror(errno));
  for (const auto& name : p->probes_->attached()) spdlog::info("attached {} at {}", name, p->cgroup_root_);
  if (p->kube_ && !p->kube_->Start()) {
    *error = "the Kubernetes API client did not start (see the log above)";
    return nullptr;
  }
  return p;
}

Pipeline::~Pipeline() {
  if (kube_) kube_->Stop();
}

void Pipeline::OnRecord(const void* data, size_t size) {
  Event event;
  DecodeError err = DecodeEvent(data, size, &event);
  if (err != DecodeError::kNone) {
    decode_errors_[static_cast<int>(err)]++;
    return;
  }
  const imds_event_hdr& hdr = HeaderOf(event);
  events_[hdr.type & 15]++;
  // the caller is alive now: learn its cgroup's path before the pod can go away
  if (hdr.type == IMDS_EV_CONNECT && cgroups_->LearnFromProcess(hdr.tgid, hdr.cgroup_id))
    probes_->MarkCgroupKnown(hdr.cgroup_id);
  tracker_->Handle(event);
}

Workload Pipeline::Resolve(uint64_t cgroup_id, std::string_view comm) {
  std::lock_guard<std::mutex> lock(attributor_mu_);
  return attributor_->Resolve(cgroup_id, comm);
}

bool Pipeline::CgroupAlive(uint64_t cgroup_id) {
  std::lock_guard<std::mutex> lock(attributor_mu_);
  return cgroups_->Exists(cgroup_id);
}

}  // namespace imdswatch
