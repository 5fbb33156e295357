// Turns a cgroup v2 path into the identity it encodes: which pod, which
// container, which runtime, or which host service. Pure string work, so the
// kubelet layouts are pinned down by table tests rather than by a live node.
#pragma once

#include <string>
#include <string_view>

namespace imdswatch {

struct CgroupIdentity {
  std::string pod_uid;       // canonical dashed form; "" when not in a pod
  std::string container_id;  // 64 lowercase hex, no runtime prefix; "" when none
  std::string runtime;       // "containerd", "cri-o", "docker", or "" when unknown
  std::string systemd_unit;  // host service such as "sshd.service"; "" otherwise

  bool InPod() const { return !pod_uid.empty(); }
  bool operator==(const CgroupIdentity& other) const {
    return pod_uid == other.pod_uid && container_id == other.container_id && runtime == other.runtime &&
           systemd_unit == other.systemd_unit;
  }
};

// Parses `path`, relative to the cgroup v2 root ("/kubepods.slice/...").
//
// Layouts understood (kubepods may sit under any prefix: kind's
// /kubelet.slice/kubelet-kubepods.slice, CI runners' /actions_job/<id>/kubepods,
// or a docker scope when the node itself is a container):
//   systemd driver  /kubepods.slice[/kubepods-<qos>.slice]/kubepods[-<qos>]-pod<uid_>.slice/<scope>
//                   scope: cri-containerd-<id>.scope | crio-<id>.scope | docker-<id>.scope
//                   (crio-conmon-<id>.scope is CRI-O's monitor, not a container)
//   cgroupfs driver /kubepods[/<qos>]/pod<uid>/<id>   (also crio-<id>, crio-conmon-<id>)
//   plain docker    /system.slice/docker-<id>.scope, /docker/<id>
//   host services   /system.slice/[<x>.slice/]<name>.service
// Deeper cgroups a container creates for itself resolve to that container.
// Anything else (user sessions, "/", garbage) yields an empty identity. Never
// throws.
CgroupIdentity ParseCgroupPath(std::string_view path);

}  // namespace imdswatch
