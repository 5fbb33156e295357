#include "imdswatch/cgroup_resolver.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <fstream>
#include <memory>
#include <sstream>
#include <unordered_set>
#include <utility>
#include <vector>

namespace imdswatch {
namespace {

// Kubernetes nests five levels at most; the bound guards against bind-mount
// loops and hostile trees, not against real hierarchies.
constexpr size_t kMaxDepth = 32;

struct DirCloser {
  void operator()(DIR* dir) const { closedir(dir); }
};

// Every directory under `root`, as (inode, path relative to root).
std::vector<std::pair<uint64_t, std::string>> WalkDirectories(const std::string& root) {
  std::vector<std::pair<uint64_t, std::string>> found;
  struct stat st {};
  if (stat(root.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) return found;
  found.emplace_back(st.st_ino, "/");

  struct Pending {
    std::string rel;
    size_t depth;
  };
  std::vector<Pending> stack{{"", 0}};
  while (!stack.empty()) {
    Pending dir_entry = std::move(stack.back());
    stack.pop_back();
    std::unique_ptr<DIR, DirCloser> dir(opendir((root + dir_entry.rel).c_str()));
    if (!dir) continue;  // vanished or unreadable mid-walk: not an error
    while (dirent* entry = readdir(dir.get())) {
      std::string_view name = entry->d_name;
      if (name == "." || name == "..") continue;
      // Cgroup control files are regular files; skip them without a stat.
      if (entry->d_type != DT_DIR && entry->d_type != DT_UNKNOWN) continue;
      // st_ino rather than d_ino: overlay filesystems may report them apart,
      // and `stat -c %i` is what the id is defined against.
      if (fstatat(dirfd(dir.get()), entry->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISDIR(st.st_mode)) {
        continue;
      }
      std::string rel = dir_entry.rel + "/" + std::string(name);
      found.emplace_back(st.st_ino, rel);
      if (dir_entry.depth + 1 < kMaxDepth) stack.push_back({std::move(rel), dir_entry.depth + 1});
    }
  }
  return found;
}

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string UnescapeMountField(const std::string& field) {
  std::string out;
  for (size_t i = 0; i < field.size(); ++i) {
    if (field[i] == '\\' && i + 3 < field.size()) {
      const char* p = field.c_str() + i + 1;
      if (p[0] >= '0' && p[0] <= '3' && p[1] >= '0' && p[1] <= '7' && p[2] >= '0' && p[2] <= '7') {
        out.push_back(static_cast<char>((p[0] - '0') * 64 + (p[1] - '0') * 8 + (p[2] - '0')));
        i += 3;
        continue;
      }
    }
    out.push_back(field[i]);
  }
  return out;
}

}  // namespace

CgroupResolver::CgroupResolver(std::string root, size_t max_entries, Clock clock)
    : root_(std::move(root)), max_entries_(std::max<size_t>(max_entries, 1)), clock_(std::move(clock)) {}

std::optional<std::string> CgroupResolver::PathOf(uint64_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  if (auto it = cache_.find(id); it != cache_.end()) {
    ++stats_.hits;
    return it->second.path;
  }
  if (!TryRescanLocked(id)) return std::nullopt;
  auto it = cache_.find(id);
  if (it == cache_.end()) return std::nullopt;
  return it->second.path;
}

bool CgroupResolver::LearnFromProcess(uint32_t pid, uint64_t id, const std::string& proc_root) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (cache_.count(id)) return true;
  }
  std::ifstream in(proc_root + "/" + std::to_string(pid) + "/cgroup");
  std::string line, path;
  while (std::getline(in, line))
    if (line.rfind("0::", 0) == 0) path = line.substr(3);
  if (path.empty() || path[0] != '/' || path.find("/..") != std::string::npos) return false;
  struct stat st {};
  const std::string full = path == "/" ? root_ : root_ + path;
  if (stat(full.c_str(), &st) != 0 || !S_ISDIR(st.st_mode) || st.st_ino != id) return false;
  std::lock_guard<std::mutex> lock(mu_);
  if (cache_.count(id)) return true;
  if (cache_.size() >= max_entries_) return false;  // a rescan makes room for what is asked
  cache_.emplace(id, Entry{path == "/" ? std::string("/") : path, true, scan_number_});
  return true;
}

bool CgroupResolver::Exists(uint64_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = cache_.find(id);
  if (it == cache_.end()) {
    if (!TryRescanLocked(id)) return false;
    it = cache_.find(id);
    return it != cache_.end() && it->second.alive;
  }
  Entry& entry = it->second;
  if (!entry.alive) return false;  // ids are never reused, so gone stays gone
  struct stat st {};
  if (stat((root_ + entry.path).c_str(), &st) == 0 && S_ISDIR(st.st_mode) && st.st_ino == id) return true;
  entry.alive = false;
  return false;
}

bool CgroupResolver::TryRescanLocked(uint64_t wanted) {
  auto now = clock_();
  if (last_rescan_ && now - *last_rescan_ < kMinRescanInterval) {
    ++stats_.rate_limited;
    return false;
  }
  last_rescan_ = now;
  if (RescanLocked(wanted)) return true;
  ++stats_.misses;
  return false;
}

bool CgroupResolver::RescanLocked(uint64_t wanted) {
  ++stats_.rescans;
  ++scan_number_;
  std::vector<std::pair<uint64_t, std::string>> found = WalkDirectories(root_);

  std::unordered_set<uint64_t> live;
  live.reserve(found.size());
  for (const auto& [id, path] : found) live.insert(id);

  // Dead entries are the first to go, longest dead first.
  std::vector<std::pair<uint64_t, uint64_t>> dead;  // (seen_scan, id)
  for (auto& [id, entry] : cache_) {
    entry.alive = live.count(id) > 0;
    if (!entry.alive) dead.emplace_back(entry.seen_scan, id);
  }
  std::sort(dead.begin(), dead.end());
  size_t next_dead = 0;

  auto make_room = [&]() {
    if (cache_.size() < max_entries_) return true;
    if (next_dead == dead.size()) return false;
    cache_.erase(dead[next_dead++].second);
    ++stats_.evictions;
    return true;
  };
  auto insert = [&](uint64_t id, std::string& path) {
    if (auto it = cache_.find(id); it != cache_.end()) {
      it->second.path = std::move(path);
      it->second.seen_scan = scan_number_;
      return;
    }
    if (!make_room()) return;  // the rest of the tree waits for a later rescan
    cache_.emplace(id, Entry{std::move(path), true, scan_number_});
  };

  // The wanted id goes in first and, when the cache is all live entries,
  // displaces one: it is the one being asked for right now.
  bool found_wanted = false;
  for (auto& [id, path] : found) {
    if (id != wanted) continue;
    found_wanted = true;
    if (cache_.count(id) == 0 && cache_.size() >= max_entries_ && next_dead == dead.size()) {
      cache_.erase(cache_.begin());
      ++stats_.evictions;
    }
    insert(id, path);
    break;
  }
  for (auto& [id, path] : found) {
    if (id != wanted) insert(id, path);
  }
  return found_wanted;
}

CgroupResolverStats CgroupResolver::Stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  CgroupResolverStats stats = stats_;
  stats.entries = cache_.size();
  return stats;
}

std::optional<std::string> CgroupResolver::DetectRoot(const std::string& mountinfo) {
  std::ifstream in(mountinfo);
  if (!in) return std::nullopt;
  std::optional<std::string> best;
  int best_score = -1;
  std::string line;
  while (std::getline(in, line)) {
    // id parent major:minor root mount-point options [optional...] - fstype source super-options
    std::istringstream fields(line);
    std::vector<std::string> f;
    for (std::string field; fields >> field;) f.push_back(std::move(field));
    auto dash = std::find(f.begin(), f.end(), "-");
    if (f.size() < 5 || dash == f.end() || dash + 1 == f.end() || *(dash + 1) != "cgroup2") continue;
    std::string mount_root = UnescapeMountField(f[3]);
    std::string mount_point = UnescapeMountField(f[4]);
    int score = (mount_root == "/" ? 2 : 0) +
                (mount_point == "/sys/fs/cgroup" || mount_point == "/sys/fs/cgroup/unified" ? 1 : 0);
    if (score > best_score) {
      best_score = score;
      best = mount_point;
    }
  }
  return best;
}

}  // namespace imdswatch
