#include "imdswatch/kube_client.h"

#include <curl/curl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <sstream>
#include <utility>

namespace imdswatch {
namespace {

using nlohmann::json;

constexpr const char* kServiceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount";
// One pod object is capped at ~1.5 MB by etcd; a line far past that is not a
// pod event, and a page far past this is not a page of one node's pods.
constexpr size_t kMaxEventBytes = 16u << 20;
constexpr size_t kMaxListBodyBytes = 256u << 20;
constexpr size_t kMaxErrorBodyBytes = 4096;
// A watch that ends this fast without events is treated like a failure, so a
// proxy that closes every stream at once cannot make us spin.
constexpr std::chrono::milliseconds kMinHealthyWatch{1000};

bool StartsWith(std::string_view s, std::string_view prefix) { return s.substr(0, prefix.size()) == prefix; }

std::string Trim(std::string s) {
  auto not_space = [](unsigned char c) { return !std::isspace(c); };
  s.erase(s.begin(), std::find_if(s.begin(), s.end(), not_space));
  s.erase(std::find_if(s.rbegin(), s.rend(), not_space).base(), s.end());
  return s;
}

std::optional<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream out;
  out << in.rdbuf();
  if (in.bad()) return std::nullopt;
  return out.str();
}

std::string Escape(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      static constexpr char kHex[] = "0123456789ABCDEF";
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

const json* Field(const json* object, const char* key) {
  if (object == nullptr || !object->is_object()) return nullptr;
  auto it = object->find(key);
  return it == object->end() ? nullptr : &*it;
}

std::string String(const json* value) {
  return value != nullptr && value->is_string() ? value->get<std::string>() : std::string();
}

// The message of a v1.Status, bare or wrapped in an ERROR event, for logs.
std::string StatusMessage(std::string_view body) {
  json status = json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  std::string message = String(Field(&status, "message"));
  if (message.empty()) message = String(Field(Field(&status, "object"), "message"));
  if (message.empty()) message = std::string(body.substr(0, 200));
  return message;
}

KubeError ErrorForCurl(CURLcode code) {
  switch (code) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
      return KubeError::kConnect;
    case CURLE_OPERATION_TIMEDOUT:
      return KubeError::kTimeout;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_SSL_SHUTDOWN_FAILED:
      return KubeError::kTls;
    default:
      return KubeError::kTransport;
  }
}

KubeError ErrorForStatus(long status) {
  switch (status) {
    case 401: return KubeError::kUnauthorized;
    case 403: return KubeError::kForbidden;
    case 410: return KubeError::kGone;
    default: return KubeError::kHttp;
  }
}

int64_t UnixNow() { return static_cast<int64_t>(std::time(nullptr)); }

}  // namespace

std::string_view ToString(KubeError error) {
  switch (error) {
    case KubeError::kConnect: return "connect";
    case KubeError::kTransport: return "transport";
    case KubeError::kTimeout: return "timeout";
    case KubeError::kTls: return "tls";
    case KubeError::kToken: return "token";
    case KubeError::kUnauthorized: return "unauthorized";
    case KubeError::kForbidden: return "forbidden";
    case KubeError::kGone: return "gone";
    case KubeError::kHttp: return "http";
    case KubeError::kMalformed: return "malformed";
    case KubeError::kWatchError: return "watch_error";
  }
  return "unknown";
}

// ---- KubeConfig ----

KubeConfig KubeConfig::InCluster() {
  KubeConfig config;
  const char* host = std::getenv("KUBERNETES_SERVICE_HOST");
  const char* port = std::getenv("KUBERNETES_SERVICE_PORT");
  if (host != nullptr && *host != '\0' && port != nullptr && *port != '\0') {
    std::string h = host;
    if (h.find(':') != std::string::npos) h = "[" + h + "]";  // IPv6 literal
    config.server = "https://" + h + ":" + port;
  }
  config.token_file = std::string(kServiceAccountDir) + "/token";
  config.ca_file = std::string(kServiceAccountDir) + "/ca.crt";
  if (const char* node = std::getenv("NODE_NAME")) config.node_name = node;
  return config;
}

std::string KubeConfig::Validate() const {
  if (server.empty()) return "no API server: KUBERNETES_SERVICE_HOST/_PORT unset and no URL given";
  if (!StartsWith(server, "https://") && !StartsWith(server, "http://")) {
    return "API server URL must start with https:// (or http:// to mean plain text)";
  }
  if (node_name.empty()) return "no node name (set NODE_NAME from spec.nodeName)";
  if (!token_file.empty() && access(token_file.c_str(), R_OK) != 0) return "token file unreadable: " + token_file;
  if (!ca_file.empty() && access(ca_file.c_str(), R_OK) != 0) return "CA file unreadable: " + ca_file;
  if (backoff_initial.count() <= 0 || backoff_max < backoff_initial) return "bad backoff bounds";
  return "";
}

// ---- LineSplitter ----

LineSplitter::Status LineSplitter::Feed(std::string_view chunk, const std::function<bool(std::string_view)>& on_line) {
  auto emit = [&](std::string_view line) {
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    return on_line(line);
  };
  while (!chunk.empty()) {
    size_t newline = chunk.find('\n');
    if (newline == std::string_view::npos) {
      if (partial_.size() + chunk.size() > max_line_) {
        partial_.clear();
        return Status::kLineTooLong;
      }
      partial_.append(chunk);
      return Status::kOk;
    }
    std::string_view head = chunk.substr(0, newline);
    chunk.remove_prefix(newline + 1);
    bool go_on;
    if (partial_.empty()) {
      if (head.size() > max_line_) return Status::kLineTooLong;
      go_on = emit(head);  // the common case: no copy
    } else {
      if (partial_.size() + head.size() > max_line_) {
        partial_.clear();
        return Status::kLineTooLong;
      }
      partial_.append(head);
      std::string line = std::move(partial_);
      partial_.clear();
      go_on = emit(line);
    }
    if (!go_on) return Status::kStopped;
  }
  return Status::kOk;
}

// ---- Watch events ----

WatchEventResult ApplyWatchEvent(std::string_view line, PodStore& store, std::string& resource_version) {
  while (!line.empty() && std::isspace(static_cast<unsigned char>(line.back()))) line.remove_suffix(1);
  while (!line.empty() && std::isspace(static_cast<unsigned char>(line.front()))) line.remove_prefix(1);
  if (line.empty()) return WatchEventResult::kIgnored;
  try {
    json event = json::parse(line.begin(), line.end(), nullptr, /*allow_exceptions=*/false);
    if (event.is_discarded() || !event.is_object()) return WatchEventResult::kMalformed;
    std::string type = String(Field(&event, "type"));
    const json* object = Field(&event, "object");
    if (object == nullptr || !object->is_object()) return WatchEventResult::kMalformed;

    if (type == "ERROR") {
      // The object is a v1.Status; 410 means our resourceVersion is compacted away.
      const json* code = Field(object, "code");
      if (code != nullptr && code->is_number_integer() && code->get<int64_t>() == 410) {
        return WatchEventResult::kGone;
      }
      return WatchEventResult::kError;
    }
    const json* metadata = Field(object, "metadata");
    std::string rv = String(Field(metadata, "resourceVersion"));
    WatchEventResult result;
    if (type == "ADDED" || type == "MODIFIED") {
      store.ApplyPod(*object);
      result = WatchEventResult::kApplied;
    } else if (type == "DELETED") {
      std::string uid = String(Field(metadata, "uid"));
      if (uid.empty()) return WatchEventResult::kMalformed;
      store.Remove(uid);
      result = WatchEventResult::kDeleted;
    } else if (type == "BOOKMARK") {
      if (rv.empty()) return WatchEventResult::kMalformed;
      result = WatchEventResult::kBookmark;
    } else {
      return WatchEventResult::kIgnored;
    }
    if (!rv.empty()) resource_version = std::move(rv);
    return result;
  } catch (const std::exception&) {
    return WatchEventResult::kMalformed;
  }
}

// ---- KubePodWatcher ----

struct KubePodWatcher::Transfer {
  CURL* easy = nullptr;
  const std::function<bool(std::string_view)>* on_body = nullptr;
  const std::function<void()>* on_ok = nullptr;
  const std::atomic<bool>* stop = nullptr;
  long status = 0;
  bool ok_seen = false;
  bool body_aborted = false;
  std::string error_body;

  static size_t OnHeader(char* data, size_t size, size_t count, void* user) {
    auto* t = static_cast<Transfer*>(user);
    size_t len = size * count;
    std::string_view line(data, len);
    // The blank line ends a header block; 1xx blocks are followed by another.
    if (line == "\r\n" || line == "\n") {
      curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &t->status);
      if (t->status == 200 && !t->ok_seen && t->on_ok != nullptr && *t->on_ok) (*t->on_ok)();
      if (t->status == 200) t->ok_seen = true;
    }
    return len;
  }

  static size_t OnWrite(char* data, size_t size, size_t count, void* user) {
    auto* t = static_cast<Transfer*>(user);
    size_t len = size * count;
    if (t->status == 0) curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &t->status);
    if (t->status != 200) {
      size_t room = kMaxErrorBodyBytes - std::min(kMaxErrorBodyBytes, t->error_body.size());
      t->error_body.append(data, std::min(room, len));
      return len;
    }
    if (!(*t->on_body)(std::string_view(data, len))) {
      t->body_aborted = true;
      return 0;  // anything but len makes curl fail the transfer
    }
    return len;
  }

  // Called by curl even while no bytes move: a second way for a stop request
  // to end a hung transfer, should the multi wake-up in Stop() be missed.
  static int OnProgress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
    return static_cast<Transfer*>(user)->stop->load() ? 1 : 0;
  }
};

KubePodWatcher::KubePodWatcher(KubeConfig config, PodStore* store)
    : config_(std::move(config)), store_(store), backoff_(config_.backoff_initial) {
  static std::once_flag curl_init;
  std::call_once(curl_init, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  multi_ = curl_multi_init();
}

KubePodWatcher::~KubePodWatcher() {
  Stop();
  if (easy_ != nullptr) curl_easy_cleanup(easy_);
  if (multi_ != nullptr) curl_multi_cleanup(multi_);
}

bool KubePodWatcher::Start() {
  if (thread_.joinable()) return true;
  if (std::string problem = config_.Validate(); !problem.empty()) {
    spdlog::error("kube: not watching pods: {}", problem);
    return false;
  }
  if (multi_ == nullptr) {
    spdlog::error("kube: not watching pods: curl_multi_init failed");
    return false;
  }
  stop_ = false;
  thread_ = std::thread([this] { Run(); });
  return true;
}

void KubePodWatcher::Stop() {
  stop_ = true;
  {
    std::lock_guard<std::mutex> lock(sleep_mu_);
    sleep_cv_.notify_all();
  }
  if (multi_ != nullptr) curl_multi_wakeup(multi_);
  if (thread_.joinable()) thread_.join();
  up_ = false;
}

std::vector<std::pair<std::string, uint64_t>> KubePodWatcher::ErrorCounts() const {
  std::vector<std::pair<std::string, uint64_t>> counts;
  for (size_t i = 0; i < kKubeErrorCount; ++i) {
    counts.emplace_back(std::string(ToString(static_cast<KubeError>(i))), errors_[i].load());
  }
  return counts;
}

KubeWatcherStats KubePodWatcher::Stats() const {
  KubeWatcherStats stats;
  stats.up = up_.load();
  stats.synced = synced_.load();
  stats.last_sync_unix_seconds = last_sync_unix_.load();
  stats.lists = lists_.load();
  stats.watches = watches_.load();
  stats.events = events_.load();
  for (size_t i = 0; i < kKubeErrorCount; ++i) stats.errors[i] = errors_[i].load();
  return stats;
}

void KubePodWatcher::Run() {
  bool need_list = true;
  int gone_streak = 0;
  while (!Stopping()) {
    uint64_t events_before = events_.load();
    Outcome outcome = need_list ? List() : Watch();
    if (events_.load() != events_before) gone_streak = 0;  // the watch made progress
    switch (outcome) {
      case Outcome::kStopped:
        return;
      case Outcome::kOk:
        need_list = false;
        backoff_ = config_.backoff_initial;
        break;
      case Outcome::kGone:
        // One 410 is routine (compaction); 410 right after a fresh list is not.
        // The watch cache just failed us, so the relist reads from etcd.
        need_list = true;
        consistent_list_ = true;
        if (++gone_streak > 1) Backoff();
        break;
      case Outcome::kIdle:
      case Outcome::kFailed:
        Backoff();
        break;
    }
  }
}

std::string KubePodWatcher::PodsUrl() const {
  std::string server = config_.server;
  while (!server.empty() && server.back() == '/') server.pop_back();
  return server + "/api/v1/pods?fieldSelector=" + Escape("spec.nodeName=" + config_.node_name);
}

KubePodWatcher::Outcome KubePodWatcher::List() {
  json items = json::array();
  std::string rv;
  std::string continue_token;
  do {
    std::string url = PodsUrl() + "&limit=" + std::to_string(config_.page_size);
    if (!continue_token.empty()) {
      url += "&continue=" + Escape(continue_token);
    } else if (!consistent_list_) {
      // "0" lets the API server answer from its watch cache instead of a
      // quorum read of etcd: cheap when every node's agent lists at once.
      url += "&resourceVersion=0";
    }
    std::string body;
    KubeError reason = KubeError::kMalformed;
    auto on_body = [&body](std::string_view chunk) {
      if (body.size() + chunk.size() > kMaxListBodyBytes) return false;
      body.append(chunk);
      return true;
    };
    Outcome outcome = Get(url, config_.list_timeout, on_body, &reason);
    if (outcome != Outcome::kOk) return outcome;  // kGone: an expired continue token

    json page = json::parse(body, nullptr, /*allow_exceptions=*/false);
    const json* page_items = Field(&page, "items");
    const json* metadata = Field(&page, "metadata");
    if (page.is_discarded() || page_items == nullptr || !(page_items->is_array() || page_items->is_null())) {
      spdlog::warn("kube: pod list is not a PodList");
      Fail(KubeError::kMalformed);
      return Outcome::kFailed;
    }
    if (page_items->is_array()) {
      for (json& item : page["items"]) items.push_back(std::move(item));
    }
    rv = String(Field(metadata, "resourceVersion"));
    continue_token = String(Field(metadata, "continue"));
  } while (!continue_token.empty() && !Stopping());
  if (Stopping()) return Outcome::kStopped;
  if (rv.empty()) {
    spdlog::warn("kube: pod list without a resourceVersion");
    Fail(KubeError::kMalformed);
    return Outcome::kFailed;
  }

  store_->ReplaceAll(items);
  resource_version_ = rv;
  ++lists_;
  up_ = true;
  if (!synced_.exchange(true)) {
    spdlog::info("kube: synced {} pods on node {}", items.size(), config_.node_name);
  }
  MarkSynced();
  return Outcome::kOk;
}

KubePodWatcher::Outcome KubePodWatcher::Watch() {
  LineSplitter splitter(kMaxEventBytes);
  uint64_t applied = 0;
  KubeError reason = KubeError::kMalformed;
  auto handle_line = [&](std::string_view line) {
    switch (ApplyWatchEvent(line, *store_, resource_version_)) {
      case WatchEventResult::kApplied:
      case WatchEventResult::kDeleted:
      case WatchEventResult::kBookmark:
        ++applied;
        ++events_;
        MarkSynced();
        return true;
      case WatchEventResult::kIgnored:
        return true;
      case WatchEventResult::kGone:
        reason = KubeError::kGone;
        return false;
      case WatchEventResult::kError:
        spdlog::warn("kube: watch ERROR event: {}", StatusMessage(line));
        reason = KubeError::kWatchError;
        return false;
      case WatchEventResult::kMalformed:
        reason = KubeError::kMalformed;
        return false;
    }
    return false;
  };
  auto on_body = [&](std::string_view chunk) {
    LineSplitter::Status status = splitter.Feed(chunk, handle_line);
    if (status == LineSplitter::Status::kLineTooLong) reason = KubeError::kMalformed;
    return status == LineSplitter::Status::kOk;
  };
  auto on_ok = [this] {
    ++watches_;
    up_ = true;
  };

  std::string url = PodsUrl() + "&watch=1&resourceVersion=" + Escape(resource_version_) +
                    "&allowWatchBookmarks=true&timeoutSeconds=" + std::to_string(config_.watch_timeout.count());
  auto started = std::chrono::steady_clock::now();
  Outcome outcome = Get(url, config_.watch_timeout + config_.watch_grace, on_body, &reason, on_ok);
  if (outcome != Outcome::kOk) return outcome;

  // The server closed the stream, normally at timeoutSeconds. A last line
  // without its newline is still a whole event if it parses.
  if (splitter.buffered() > 0 && !on_body("\n")) {
    if (reason == KubeError::kGone) {
      Fail(KubeError::kGone);
      return Outcome::kGone;
    }
    Fail(reason);
    return Outcome::kFailed;
  }
  MarkSynced();
  if (applied == 0 && std::chrono::steady_clock::now() - started < kMinHealthyWatch) return Outcome::kIdle;
  return Outcome::kOk;
}

KubePodWatcher::Outcome KubePodWatcher::Get(const std::string& url, std::chrono::milliseconds timeout,
                                            const std::function<bool(std::string_view)>& on_body,
                                            KubeError* abort_reason, const std::function<void()>& on_ok) {
  std::string token;
  if (!config_.token_file.empty()) {
    std::optional<std::string> read = ReadFile(config_.token_file);
    if (!read || Trim(*read).empty()) {
      spdlog::warn("kube: cannot read token file {}", config_.token_file);
      Fail(KubeError::kToken);
      return Outcome::kFailed;
    }
    token = Trim(std::move(*read));
  }

  if (easy_ == nullptr) easy_ = curl_easy_init();
  if (easy_ == nullptr) {
    Fail(KubeError::kConnect);
    return Outcome::kFailed;
  }
  CURL* easy = easy_;
  curl_easy_reset(easy);  // keeps the connection cache: list and watch share a connection

  Transfer transfer;
  transfer.easy = easy;
  transfer.on_body = &on_body;
  transfer.on_ok = &on_ok;
  transfer.stop = &stop_;
  char error_buffer[CURL_ERROR_SIZE] = {};

  const bool plain = StartsWith(config_.server, "http://");
  curl_easy_setopt(easy, CURLOPT_URL, url.c_str());
  curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, plain ? "http" : "https");
  curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);  // the token must not follow a redirect
  curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(config_.connect_timeout.count()));
  curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout.count()));
  // A peer that vanished without a FIN is found by keepalive probes; one that
  // is up but silent by the overall timeout above.
  curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(easy, CURLOPT_TCP_KEEPIDLE, 30L);
  curl_easy_setopt(easy, CURLOPT_TCP_KEEPINTVL, 10L);
  curl_easy_setopt(easy, CURLOPT_ACCEPT_ENCODING, "");
  curl_easy_setopt(easy, CURLOPT_USERAGENT, "imdswatch/" IMDSWATCH_VERSION);
  curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, error_buffer);
  if (!plain) {
    curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, 2L);
    if (!config_.ca_file.empty()) curl_easy_setopt(easy, CURLOPT_CAINFO, config_.ca_file.c_str());
  }
  if (!token.empty()) {
    // curl's bearer support keeps the token out of its own debug output.
    curl_easy_setopt(easy, CURLOPT_HTTPAUTH, CURLAUTH_BEARER);
    curl_easy_setopt(easy, CURLOPT_XOAUTH2_BEARER, token.c_str());
  }
  curl_slist* headers = curl_slist_append(nullptr, "Accept: application/json");
  curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, &Transfer::OnHeader);
  curl_easy_setopt(easy, CURLOPT_HEADERDATA, &transfer);
  curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, &Transfer::OnWrite);
  curl_easy_setopt(easy, CURLOPT_WRITEDATA, &transfer);
  curl_easy_setopt(easy, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(easy, CURLOPT_XFERINFOFUNCTION, &Transfer::OnProgress);
  curl_easy_setopt(easy, CURLOPT_XFERINFODATA, &transfer);

  // The multi interface only so Stop() can wake the poll at once.
  CURLcode result = CURLE_OK;
  curl_multi_add_handle(multi_, easy);
  bool done = false;
  while (!done) {
    int running = 0;
    if (curl_multi_perform(multi_, &running) != CURLM_OK) {
      result = CURLE_RECV_ERROR;
      break;
    }
    int queued = 0;
    while (CURLMsg* msg = curl_multi_info_read(multi_, &queued)) {
      if (msg->msg == CURLMSG_DONE && msg->easy_handle == easy) {
        result = msg->data.result;
        done = true;
      }
    }
    if (done) break;
    if (Stopping()) {
      result = CURLE_ABORTED_BY_CALLBACK;
      break;
    }
    curl_multi_poll(multi_, nullptr, 0, 1000, nullptr);
  }
  curl_multi_remove_handle(multi_, easy);
  curl_easy_setopt(easy, CURLOPT_HTTPHEADER, nullptr);
  curl_easy_setopt(easy, CURLOPT_XOAUTH2_BEARER, nullptr);
  curl_slist_free_all(headers);
  std::fill(token.begin(), token.end(), '\0');

  if (Stopping()) return Outcome::kStopped;
  if (transfer.body_aborted) {
    Fail(*abort_reason);
    return *abort_reason == KubeError::kGone ? Outcome::kGone : Outcome::kFailed;
  }
  if (transfer.status == 0) curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &transfer.status);
  if (transfer.status != 0 && transfer.status != 200) {
    KubeError error = ErrorForStatus(transfer.status);
    Fail(error);
    if (error != KubeError::kGone) {
      spdlog::warn("kube: HTTP {} from API server: {}", transfer.status, StatusMessage(transfer.error_body));
    }
    return error == KubeError::kGone ? Outcome::kGone : Outcome::kFailed;
  }
  if (result != CURLE_OK) {
    spdlog::warn("kube: request failed: {}", error_buffer[0] != '\0' ? error_buffer : curl_easy_strerror(result));
    Fail(ErrorForCurl(result));
    return Outcome::kFailed;
  }
  return Outcome::kOk;
}

void KubePodWatcher::Fail(KubeError error) {
  ++errors_[static_cast<size_t>(error)];
  if (error != KubeError::kGone) up_ = false;
}

void KubePodWatcher::MarkSynced() { last_sync_unix_ = UnixNow(); }

void KubePodWatcher::Backoff() {
  // Jitter spreads the reconnects of a fleet of agents after an API outage.
  static thread_local std::minstd_rand rng(std::random_device{}());
  std::uniform_real_distribution<double> jitter(0.8, 1.0);
  auto delay = std::chrono::milliseconds(static_cast<int64_t>(backoff_.count() * jitter(rng)));
  {
    std::unique_lock<std::mutex> lock(sleep_mu_);
    sleep_cv_.wait_for(lock, delay, [this] { return Stopping(); });
  }
  backoff_ = std::min(backoff_ * 2, config_.backoff_max);
}

}  // namespace imdswatch
