// Maps a cgroup v2 id, as bpf_get_current_cgroup_id() reports it, to the
// cgroup's path. On cgroup v2 the id is the inode number of the cgroup's
// directory, so a walk of the hierarchy recovers it; results are cached
// because the walk is the expensive part.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

namespace imdswatch {

struct CgroupResolverStats {
  uint64_t hits = 0;          // answered from the cache
  uint64_t misses = 0;        // not in the cache and not found by a rescan
  uint64_t rate_limited = 0;  // not in the cache while rescans were throttled
  uint64_t rescans = 0;       // full walks of the hierarchy
  uint64_t evictions = 0;     // entries dropped to honour the size bound
  uint64_t entries = 0;       // current cache size
};

class CgroupResolver {
 public:
  using Clock = std::function<std::chrono::steady_clock::time_point()>;

  static constexpr std::chrono::milliseconds kMinRescanInterval{1000};

  // `root` is the cgroup2 mount (see DetectRoot); `max_entries` bounds the
  // cache. `clock` is a seam for tests.
  CgroupResolver(std::string root, size_t max_entries, Clock clock = std::chrono::steady_clock::now);

  // Path relative to the root ("/" for the root itself). A miss triggers one
  // rescan unless another ran within kMinRescanInterval: a burst of events
  // from unknown cgroups must not turn into a burst of tree walks. Cgroups
  // that vanished stay resolvable while they fit in the cache, so events that
  // raced their container's exit still attribute.
  std::optional<std::string> PathOf(uint64_t id);
  // Learns id's path from a live process's /proc/PID/cgroup (cgroup v2 line),
  // checked against the directory's inode: cheap and exact while the caller
  // lives, so a pod gone before the next rescan still has its path. True
  // when id's path is known afterwards (learnt now or before).
  bool LearnFromProcess(uint32_t pid, uint64_t id, const std::string& proc_root = "/proc");

  // Whether the cgroup still exists, for expiring per-cgroup series. Ids this
  // resolver cannot place (not cached, rescan throttled) read as gone.
  bool Exists(uint64_t id);

  CgroupResolverStats Stats() const;
  const std::string& root() const { return root_; }

  // The cgroup2 mount point from a mountinfo file: /sys/fs/cgroup on pure v2,
  // /sys/fs/cgroup/unified on a v1+v2 hybrid. Prefers mounts of the hierarchy
  // root over bind mounts of a sub-tree.
  static std::optional<std::string> DetectRoot(const std::string& mountinfo = "/proc/self/mountinfo");

 private:
  struct Entry {
    std::string path;
    bool alive = true;
    uint64_t seen_scan = 0;  // rescan that last found it; orders eviction of the dead
  };

  // Rescans unless throttled; true when `wanted` is now cached. Holds mu_.
  bool TryRescanLocked(uint64_t wanted);
  // Walks the tree and refreshes the cache; true when `wanted` was found.
  bool RescanLocked(uint64_t wanted);

  const std::string root_;
  const size_t max_entries_;
  const Clock clock_;

  mutable std::mutex mu_;
  std::unordered_map<uint64_t, Entry> cache_;
  std::optional<std::chrono::steady_clock::time_point> last_rescan_;
  uint64_t scan_number_ = 0;
  CgroupResolverStats stats_;
};

}  // namespace imdswatch
