// Keeps a PodStore in step with the API server's view of this node's pods:
// list, then watch from the list's resourceVersion, the way client-go's
// reflector does, with libcurl and nlohmann only. One thread, no informer
// machinery: a node agent needs one resource, filtered by node.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "imdswatch/pod_store.h"

namespace imdswatch {

struct KubeConfig {
  std::string server;      // "https://10.96.0.1:443"; plain http only if spelled "http://"
  std::string token_file;  // bearer token, re-read on every connect (projected tokens rotate); "" = none
  std::string ca_file;     // "" = the system trust store
  std::string node_name;   // only this node's pods are listed and watched

  std::chrono::milliseconds connect_timeout{10'000};
  std::chrono::milliseconds list_timeout{60'000};  // one list page, start to end
  std::chrono::seconds watch_timeout{300};          // timeoutSeconds asked of the server
  // A watch still open this long after watch_timeout means a hung server or
  // a proxy that swallowed the close.
  std::chrono::milliseconds watch_grace{30'000};
  std::chrono::milliseconds backoff_initial{500};
  std::chrono::milliseconds backoff_max{30'000};
  size_t page_size = 500;

  // From KUBERNETES_SERVICE_HOST/_PORT, the service account's token and CA
  // under /var/run/secrets/kubernetes.io/serviceaccount, and NODE_NAME (set
  // it from spec.nodeName in the DaemonSet). Fields it cannot find stay
  // empty; Validate() says what is missing.
  static KubeConfig InCluster();

  // "" when usable, else what is wrong (never includes the token).
  std::string Validate() const;
};

// Why a request or stream failed; each has its own counter.
enum class KubeError : uint8_t {
  kConnect,       // could not resolve or connect
  kTransport,     // the connection broke mid-transfer
  kTimeout,       // no answer in time, or a stream that never ended
  kTls,           // certificate or handshake failure
  kToken,         // token file unreadable
  kUnauthorized,  // 401: token expired or invalid
  kForbidden,     // 403: RBAC lacks list/watch pods
  kGone,          // 410: resourceVersion too old, list again
  kHttp,          // any other non-200 status (429, 5xx, ...)
  kMalformed,     // a body or event that is not the JSON we expect
  kWatchError,    // an ERROR event other than 410
};
inline constexpr size_t kKubeErrorCount = static_cast<size_t>(KubeError::kWatchError) + 1;
std::string_view ToString(KubeError error);

// Splits a byte stream into '\n'-terminated lines as they complete: a watch
// event may arrive in many pieces and several may share one piece.
class LineSplitter {
 public:
  enum class Status { kOk, kStopped, kLineTooLong };

  explicit LineSplitter(size_t max_line = 64u << 20) : max_line_(max_line) {}

  // Calls `on_line` for each completed line (without "\n" or "\r\n");
  // `on_line` returns false to stop early, and the rest of the chunk is then
  // dropped. A line longer than max_line is dropped with kLineTooLong.
  Status Feed(std::string_view chunk, const std::function<bool(std::string_view)>& on_line);
  size_t buffered() const { return partial_.size(); }
  void Reset() { partial_.clear(); }

 private:
  size_t max_line_;
  std::string partial_;
};

// What one watch event line did to the store.
enum class WatchEventResult { kApplied, kDeleted, kBookmark, kGone, kError, kMalformed, kIgnored };

// Applies one line of a watch stream: ADDED/MODIFIED/DELETED change `store`;
// those and BOOKMARK advance `resource_version`. ERROR with code 410 is kGone
// (list again), other ERRORs kError. Blank lines and unknown types are
// kIgnored. Never throws.
WatchEventResult ApplyWatchEvent(std::string_view line, PodStore& store, std::string& resource_version);

struct KubeWatcherStats {
  bool up = false;
  bool synced = false;
  int64_t last_sync_unix_seconds = 0;              // 0 before the first list
  uint64_t lists = 0;                               // completed lists
  uint64_t watches = 0;                             // watch streams opened
  uint64_t events = 0;                              // watch events applied, bookmarks included
  std::array<uint64_t, kKubeErrorCount> errors{};  // indexed by KubeError
};

class KubePodWatcher {
 public:
  // `store` must outlive the watcher.
  KubePodWatcher(KubeConfig config, PodStore* store);
  ~KubePodWatcher();  // stops
  KubePodWatcher(const KubePodWatcher&) = delete;
  KubePodWatcher& operator=(const KubePodWatcher&) = delete;

  // Starts the list/watch thread; false (and logs why) if the config is unusable.
  bool Start();
  // Returns promptly even while a request hangs: the transfer is woken and aborted.
  void Stop();

  bool Up() const { return up_.load(); }          // the last list/watch attempt is healthy
  bool Synced() const { return synced_.load(); }  // the first list has completed
  // Last list, watch event or clean end of a watch: when the store was last
  // known current. 0 before the first list.
  int64_t LastSyncUnixSeconds() const { return last_sync_unix_.load(); }
  uint64_t Errors(KubeError error) const { return errors_[static_cast<size_t>(error)].load(); }
  // Every reason with its count, zeros included, for export.
  std::vector<std::pair<std::string, uint64_t>> ErrorCounts() const;
  KubeWatcherStats Stats() const;

 private:
  enum class Outcome { kOk, kIdle, kGone, kFailed, kStopped };
  struct Transfer;

  void Run();
  Outcome List();
  Outcome Watch();
  // One GET with a fresh token. A 200 body goes to `on_body` as it arrives;
  // returning false aborts the transfer, counted under `*abort_reason`
  // (kGone then means "list again"). `on_ok` runs once the 200 headers are in.
  Outcome Get(const std::string& url, std::chrono::milliseconds timeout,
              const std::function<bool(std::string_view)>& on_body, KubeError* abort_reason,
              const std::function<void()>& on_ok = nullptr);
  std::string PodsUrl() const;
  void Fail(KubeError error);
  void MarkSynced();
  void Backoff();
  bool Stopping() const { return stop_.load(); }

  const KubeConfig config_;
  PodStore* store_;

  void* multi_ = nullptr;  // CURLM*, created once so Stop() can wake it
  void* easy_ = nullptr;   // CURL*, reused so list and watch share a connection
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::mutex sleep_mu_;
  std::condition_variable sleep_cv_;

  // Owned by the watcher thread.
  std::string resource_version_;
  bool consistent_list_ = false;  // relists follow a 410: the watch cache was not enough
  std::chrono::milliseconds backoff_;

  std::atomic<bool> up_{false};
  std::atomic<bool> synced_{false};
  std::atomic<int64_t> last_sync_unix_{0};
  std::atomic<uint64_t> lists_{0};
  std::atomic<uint64_t> watches_{0};
  std::atomic<uint64_t> events_{0};
  std::array<std::atomic<uint64_t>, kKubeErrorCount> errors_{};
};

}  // namespace imdswatch
