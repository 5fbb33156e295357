#include "imdswatch/cgroup_path.h"

#include <cstddef>
#include <optional>
#include <vector>

namespace imdswatch {
namespace {

constexpr size_t kMaxPathLength = 4096;  // PATH_MAX; anything longer is not a kernel path
constexpr size_t kContainerIdLength = 64;

bool StartsWith(std::string_view s, std::string_view prefix) { return s.substr(0, prefix.size()) == prefix; }

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

bool IsHexDigit(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

bool IsHex(std::string_view s) {
  for (char c : s) {
    if (!IsHexDigit(c)) return false;
  }
  return !s.empty();
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'F') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

// Splits on '/', skipping empty segments; nullopt for input no kernel path has.
std::optional<std::vector<std::string_view>> Segments(std::string_view path) {
  if (path.empty() || path.size() > kMaxPathLength || path.front() != '/') return std::nullopt;
  std::vector<std::string_view> segments;
  size_t pos = 0;
  while (pos < path.size()) {
    size_t end = path.find('/', pos);
    if (end == std::string_view::npos) end = path.size();
    std::string_view segment = path.substr(pos, end - pos);
    pos = end + 1;
    if (segment.empty()) continue;
    if (segment == "." || segment == "..") return std::nullopt;
    for (char c : segment) {
      if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return std::nullopt;
    }
    segments.push_back(segment);
  }
  return segments;
}

// Pod uids: kubelet writes API uids as 8-4-4-4-12 with '-' (cgroupfs) or '_'
// (systemd, where '-' separates slice levels). Static pods carry kubelet's own
// 32-hex hash instead, with no separators at all.
std::optional<std::string> CanonicalPodUid(std::string_view raw) {
  if (raw.size() == 32) {
    if (!IsHex(raw)) return std::nullopt;
    return Lower(raw);
  }
  if (raw.size() != 36) return std::nullopt;
  std::string uid;
  uid.reserve(36);
  for (size_t i = 0; i < raw.size(); ++i) {
    char c = raw[i];
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (c != '-' && c != '_') return std::nullopt;
      uid.push_back('-');
    } else {
      if (!IsHexDigit(c)) return std::nullopt;
      uid.push_back(c);
    }
  }
  return Lower(uid);
}

bool IsKubepodsRoot(std::string_view segment) {
  return segment == "kubepods" || segment == "kubepods.slice" || EndsWith(segment, "-kubepods.slice");
}

bool IsQosLevel(std::string_view segment) {
  return segment == "burstable" || segment == "besteffort" || EndsWith(segment, "-burstable.slice") ||
         EndsWith(segment, "-besteffort.slice");
}

// "pod<uid>" (cgroupfs) or "<parent>-pod<uid_>.slice" (systemd).
std::optional<std::string> PodUidOf(std::string_view segment) {
  if (EndsWith(segment, ".slice")) {
    std::string_view stem = segment.substr(0, segment.size() - 6);
    size_t at = stem.rfind("-pod");
    if (at == std::string_view::npos) return std::nullopt;
    return CanonicalPodUid(stem.substr(at + 4));
  }
  if (StartsWith(segment, "pod")) return CanonicalPodUid(segment.substr(3));
  return std::nullopt;
}

struct ContainerScope {
  std::string id;
  std::string runtime;
};

// One container's cgroup: "<runtime prefix>-<64 hex>[.scope]" or, for the
// cgroupfs driver with containerd/docker, the bare id. CRI-O's conmon gets
// its own scope beside the container; it yields nullopt so its processes stay
// pod-level instead of posing as a container.
std::optional<ContainerScope> ParseContainerScope(std::string_view segment) {
  if (EndsWith(segment, ".scope")) segment.remove_suffix(6);
  if (StartsWith(segment, "crio-conmon-")) return std::nullopt;
  struct Prefix {
    std::string_view prefix;
    std::string_view runtime;
  };
  static constexpr Prefix kPrefixes[] = {
      {"cri-containerd-", "containerd"},
      {"crio-", "cri-o"},
      {"docker-", "docker"},
      {"", ""},
  };
  for (const Prefix& p : kPrefixes) {
    if (!StartsWith(segment, p.prefix)) continue;
    std::string_view id = segment.substr(p.prefix.size());
    if (id.size() != kContainerIdLength || !IsHex(id)) continue;
    return ContainerScope{Lower(id), std::string(p.runtime)};
  }
  return std::nullopt;
}

bool IsUnitChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == ':' || c == '_' ||
         c == '.' || c == '@' || c == '-' || c == '\\';
}

bool IsServiceUnit(std::string_view segment) {
  if (!EndsWith(segment, ".service") || segment.size() == 8 || segment.size() > 256) return false;
  for (char c : segment) {
    if (!IsUnitChar(c)) return false;
  }
  return true;
}

CgroupIdentity ParsePodPath(const std::vector<std::string_view>& segments, size_t kubepods) {
  CgroupIdentity identity;
  size_t i = kubepods + 1;
  if (i < segments.size() && IsQosLevel(segments[i])) ++i;
  if (i >= segments.size()) return identity;  // a QoS slice itself: no pod yet
  std::optional<std::string> uid = PodUidOf(segments[i]);
  if (!uid) return identity;
  identity.pod_uid = std::move(*uid);
  if (i + 1 < segments.size()) {
    std::string_view scope = segments[i + 1];
    if (std::optional<ContainerScope> container = ParseContainerScope(scope)) {
      identity.container_id = std::move(container->id);
      identity.runtime = std::move(container->runtime);
    } else if (StartsWith(scope, "crio-conmon-")) {
      identity.runtime = "cri-o";
    }
  }
  return identity;
}

}  // namespace

CgroupIdentity ParseCgroupPath(std::string_view path) {
  std::optional<std::vector<std::string_view>> parsed = Segments(path);
  if (!parsed) return {};
  const std::vector<std::string_view>& segments = *parsed;

  // Kubernetes first: when the node itself runs in a container (kind, CI),
  // the pod hierarchy sits below that container's cgroup and is what counts.
  for (size_t i = 0; i < segments.size(); ++i) {
    if (IsKubepodsRoot(segments[i])) return ParsePodPath(segments, i);
  }

  // Plain docker, outermost container: inner ones are unknown to this host.
  for (size_t i = 0; i < segments.size(); ++i) {
    std::string_view segment = segments[i];
    bool systemd_scope = StartsWith(segment, "docker-") && EndsWith(segment, ".scope");
    bool cgroupfs = segment == "docker" && i + 1 < segments.size();
    std::string_view candidate = systemd_scope ? segment : cgroupfs ? segments[i + 1] : std::string_view();
    if (candidate.empty()) continue;
    std::optional<ContainerScope> container = ParseContainerScope(candidate);
    if (container && (systemd_scope || container->runtime.empty())) {
      return CgroupIdentity{"", std::move(container->id), "docker", ""};
    }
  }

  // Host services; a service's own sub-cgroups still belong to it. User
  // sessions are skipped: user@1000.service says nothing about the caller.
  if (!segments.empty() && segments.front() == "user.slice") return {};
  for (std::string_view segment : segments) {
    if (IsServiceUnit(segment)) return CgroupIdentity{"", "", "", std::string(segment)};
  }
  return {};
}

}  // namespace imdswatch
