#include "imdswatch/cgroup_resolver.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

namespace imdswatch {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;
using TimePoint = std::chrono::steady_clock::time_point;

// A throwaway directory tree standing in for /sys/fs/cgroup.
class TempTree {
 public:
  TempTree() {
    std::string tmpl = (fs::temp_directory_path() / "imdswatch-cgroup-XXXXXX").string();
    root_ = mkdtemp(tmpl.data());
  }
  ~TempTree() {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }
  const std::string& root() const { return root_; }
  uint64_t Mkdir(const std::string& rel) {
    fs::create_directories(root_ + rel);
    return Inode(rel);
  }
  uint64_t Inode(const std::string& rel) const {
    struct stat st {};
    EXPECT_EQ(stat((root_ + rel).c_str(), &st), 0) << rel;
    return st.st_ino;
  }
  void Rmdir(const std::string& rel) { fs::remove(root_ + rel); }

 private:
  std::string root_;
};

class CgroupResolverTest : public testing::Test {
 protected:
  CgroupResolver Make(size_t max_entries = 1000) {
    return CgroupResolver(tree_.root(), max_entries, [this] { return now_; });
  }
  void Advance(milliseconds d) { now_ += d; }

  TempTree tree_;
  TimePoint now_{std::chrono::hours(1)};
};

const std::string kPod = "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1_2.slice";
const std::string kContainer = kPod + "/cri-containerd-abc.scope";

TEST_F(CgroupResolverTest, ResolvesNestedDirectoriesAndRoot) {
  uint64_t container = tree_.Mkdir(kContainer);
  uint64_t service = tree_.Mkdir("/system.slice/sshd.service");
  uint64_t root = tree_.Inode("");
  CgroupResolver resolver = Make();
  EXPECT_EQ(resolver.PathOf(container), kContainer);
  EXPECT_EQ(resolver.PathOf(service), "/system.slice/sshd.service");
  EXPECT_EQ(resolver.PathOf(root), "/");
  CgroupResolverStats stats = resolver.Stats();
  EXPECT_EQ(stats.rescans, 1u);  // one walk served all three
  EXPECT_EQ(stats.hits, 2u);
  EXPECT_EQ(stats.misses, 0u);
}

TEST_F(CgroupResolverTest, IgnoresFilesAndSymlinks) {
  tree_.Mkdir("/a");
  std::ofstream(tree_.root() + "/a/cgroup.procs") << "1\n";
  uint64_t file = tree_.Inode("/a/cgroup.procs");
  fs::create_directory_symlink(tree_.root(), tree_.root() + "/a/loop");  // would recurse forever if followed
  CgroupResolver resolver = Make();
  EXPECT_EQ(resolver.PathOf(file), std::nullopt);
  EXPECT_EQ(resolver.PathOf(tree_.Inode("/a")), "/a");
  EXPECT_EQ(resolver.Stats().entries, 2u);  // root and /a only
}

TEST_F(CgroupResolverTest, MissesAreRateLimited) {
  tree_.Mkdir("/a");
  CgroupResolver resolver = Make();
  const uint64_t unknown = 0xdeadbeefcafe;
  EXPECT_EQ(resolver.PathOf(unknown), std::nullopt);
  EXPECT_EQ(resolver.PathOf(unknown), std::nullopt);
  EXPECT_FALSE(resolver.Exists(unknown));
  CgroupResolverStats stats = resolver.Stats();
  EXPECT_EQ(stats.rescans, 1u);
  EXPECT_EQ(stats.misses, 1u);
  EXPECT_EQ(stats.rate_limited, 2u);

  Advance(milliseconds(999));
  EXPECT_EQ(resolver.PathOf(unknown), std::nullopt);
  EXPECT_EQ(resolver.Stats().rescans, 1u);
  Advance(milliseconds(1));
  EXPECT_EQ(resolver.PathOf(unknown), std::nullopt);
  EXPECT_EQ(resolver.Stats().rescans, 2u);
  EXPECT_EQ(resolver.Stats().misses, 2u);
}

TEST_F(CgroupResolverTest, NewCgroupFoundByTheNextAllowedRescan) {
  tree_.Mkdir("/a");
  CgroupResolver resolver = Make();
  ASSERT_TRUE(resolver.PathOf(tree_.Inode("/a")));
  uint64_t fresh = tree_.Mkdir(kContainer);
  EXPECT_EQ(resolver.PathOf(fresh), std::nullopt);  // within the window of the first walk
  Advance(milliseconds(1000));
  EXPECT_EQ(resolver.PathOf(fresh), kContainer);
  EXPECT_TRUE(resolver.Exists(fresh));
}

TEST_F(CgroupResolverTest, VanishedCgroupStillResolvesButDoesNotExist) {
  uint64_t container = tree_.Mkdir(kContainer);
  CgroupResolver resolver = Make();
  ASSERT_EQ(resolver.PathOf(container), kContainer);
  EXPECT_TRUE(resolver.Exists(container));
  tree_.Rmdir(kContainer);
  EXPECT_FALSE(resolver.Exists(container));
  EXPECT_EQ(resolver.PathOf(container), kContainer);  // late events still attribute
  Advance(milliseconds(5000));
  EXPECT_EQ(resolver.PathOf(0xdeadbeef), std::nullopt);  // a rescan confirms it is gone
  EXPECT_FALSE(resolver.Exists(container));
  EXPECT_EQ(resolver.PathOf(container), kContainer);
}

TEST_F(CgroupResolverTest, CacheIsBoundedAndWantedIdAlwaysFits) {
  std::vector<std::pair<uint64_t, std::string>> dirs;
  for (int i = 0; i < 8; ++i) {
    std::string rel = "/d" + std::to_string(i);
    dirs.emplace_back(tree_.Mkdir(rel), rel);
  }
  CgroupResolver resolver = Make(3);
  for (const auto& [id, rel] : dirs) {
    Advance(milliseconds(1000));
    EXPECT_EQ(resolver.PathOf(id), rel);
    EXPECT_LE(resolver.Stats().entries, 3u);
  }
  EXPECT_GT(resolver.Stats().evictions, 0u);
}

TEST_F(CgroupResolverTest, EvictsDeadEntriesFirst) {
  uint64_t a = tree_.Mkdir("/a");
  uint64_t b = tree_.Mkdir("/b");
  CgroupResolver resolver = Make(3);  // root, a, b
  ASSERT_EQ(resolver.PathOf(a), "/a");
  ASSERT_EQ(resolver.Stats().entries, 3u);
  uint64_t c = tree_.Mkdir("/c");  // before the rmdir, or the fs may reuse a's inode
  tree_.Rmdir("/a");
  Advance(milliseconds(1000));
  EXPECT_EQ(resolver.PathOf(c), "/c");
  CgroupResolverStats before = resolver.Stats();
  EXPECT_EQ(before.evictions, 1u);
  EXPECT_EQ(resolver.PathOf(b), "/b");  // the live entry survived: a hit, no walk
  EXPECT_EQ(resolver.PathOf(tree_.Inode("")), "/");
  EXPECT_EQ(resolver.Stats().rescans, before.rescans);
  EXPECT_EQ(resolver.Stats().hits, before.hits + 2);
}

TEST_F(CgroupResolverTest, MissingRootIsHarmless) {
  CgroupResolver resolver("/nonexistent/imdswatch/cgroup", 10, [this] { return now_; });
  EXPECT_EQ(resolver.PathOf(1), std::nullopt);
  EXPECT_FALSE(resolver.Exists(1));
}

class DetectRootTest : public testing::Test {
 protected:
  std::string Write(const std::string& text) {
    std::string path = tree_.root() + "/mountinfo";
    std::ofstream(path) << text;
    return path;
  }
  TempTree tree_;
};

TEST_F(DetectRootTest, HybridHierarchy) {
  std::string path = Write(
      "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
      "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
      "40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd\n"
      "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n");
  EXPECT_EQ(CgroupResolver::DetectRoot(path), "/sys/fs/cgroup/unified");
}

TEST_F(DetectRootTest, PureV2WithOptionalFields) {
  std::string path = Write(
      "25 30 0:23 / /sys rw,nosuid shared:7 - sysfs sysfs rw\n"
      "26 25 0:24 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:8 - cgroup2 cgroup2 "
      "rw,nsdelegate,memory_recursiveprot\n");
  EXPECT_EQ(CgroupResolver::DetectRoot(path), "/sys/fs/cgroup");
}

TEST_F(DetectRootTest, PrefersHierarchyRootOverSubtreeAndUnescapes) {
  std::string path = Write(
      "50 30 0:24 /kubepods.slice /host/sub rw - cgroup2 cgroup2 rw\n"
      "51 30 0:24 / /host/my\\040cgroup rw - cgroup2 cgroup2 rw\n");
  EXPECT_EQ(CgroupResolver::DetectRoot(path), "/host/my cgroup");
}

TEST_F(DetectRootTest, NoCgroup2OrNoFile) {
  EXPECT_EQ(CgroupResolver::DetectRoot(Write("32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n"
                                             "garbage line\n\n - cgroup2\n")),
            std::nullopt);
  EXPECT_EQ(CgroupResolver::DetectRoot(tree_.root() + "/missing"), std::nullopt);
}

}  // namespace
}  // namespace imdswatch

namespace imdswatch {
namespace {

// A live caller's /proc/PID/cgroup places a cgroup the resolver has never
// scanned, and stays placed after the cgroup goes; a line that disagrees with
// the directory's inode, or a path escaping the root, is not learnt.
TEST_F(CgroupResolverTest, LearnsFromALiveProcessAndSaysWhetherItKnows) {
  CgroupResolver r = Make();
  ASSERT_FALSE(r.PathOf(0).has_value());  // the first scan happens now, before the container exists
  const uint64_t id = tree_.Mkdir(kContainer);
  TempTree proc;
  fs::create_directories(proc.root() + "/42");
  std::ofstream(proc.root() + "/42/cgroup") << "0::" << kContainer << "\n";
  fs::create_directories(proc.root() + "/43");
  std::ofstream(proc.root() + "/43/cgroup") << "0::/kubepods.slice/../../etc\n";

  EXPECT_FALSE(r.LearnFromProcess(43, id, proc.root()));       // escapes the root
  EXPECT_FALSE(r.LearnFromProcess(42, id + 1, proc.root()));   // another cgroup's id: inode differs
  EXPECT_FALSE(r.LearnFromProcess(44, id, proc.root()));       // process gone
  EXPECT_TRUE(r.LearnFromProcess(42, id, proc.root()));
  tree_.Rmdir(kContainer);
  EXPECT_TRUE(r.LearnFromProcess(99, id, proc.root()));  // known before: no /proc read needed
  EXPECT_EQ(r.PathOf(id), kContainer);
}

}  // namespace
}  // namespace imdswatch
