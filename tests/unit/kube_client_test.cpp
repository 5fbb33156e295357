#include "imdswatch/kube_client.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace imdswatch {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

std::string ReadData(const std::string& name) {
  std::ifstream in(std::string(IMDSWATCH_SOURCE_DIR) + "/tests/unit/data/" + name, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// ---- LineSplitter ----

std::vector<std::string> FeedAll(LineSplitter& splitter, const std::vector<std::string_view>& chunks) {
  std::vector<std::string> lines;
  for (std::string_view chunk : chunks) {
    EXPECT_EQ(splitter.Feed(chunk,
                            [&](std::string_view line) {
                              lines.emplace_back(line);
                              return true;
                            }),
              LineSplitter::Status::kOk);
  }
  return lines;
}

TEST(LineSplitter, EverySplitPointOfAGoldenStream) {
  const std::string stream = ReadData("watch_stream.jsonl");
  const std::vector<std::string> want = Lines(stream);
  ASSERT_EQ(want.size(), 6u);
  for (size_t cut = 0; cut <= stream.size(); ++cut) {
    LineSplitter splitter;
    std::string_view all(stream);
    EXPECT_EQ(FeedAll(splitter, {all.substr(0, cut), all.substr(cut)}), want) << "cut at " << cut;
    EXPECT_EQ(splitter.buffered(), 0u);
  }
}

TEST(LineSplitter, RandomChunkingAndSingleBytes) {
  const std::string stream = ReadData("watch_stream.jsonl");
  const std::vector<std::string> want = Lines(stream);
  std::mt19937 rng(42);
  for (int round = 0; round < 200; ++round) {
    LineSplitter splitter;
    std::vector<std::string_view> chunks;
    size_t max_chunk = round == 0 ? 1 : 1 + rng() % 300;
    for (size_t pos = 0; pos < stream.size();) {
      size_t len = 1 + rng() % max_chunk;
      chunks.push_back(std::string_view(stream).substr(pos, len));
      pos += len;
    }
    EXPECT_EQ(FeedAll(splitter, chunks), want) << "round " << round;
  }
}

TEST(LineSplitter, CrLfBlankLinesAndPartialTail) {
  LineSplitter splitter;
  EXPECT_EQ(FeedAll(splitter, {"a\r\n\nb", "c\r", "\nd"}), (std::vector<std::string>{"a", "", "bc"}));
  EXPECT_EQ(splitter.buffered(), 1u);  // "d" waits for its newline
  EXPECT_EQ(FeedAll(splitter, {"\n"}), (std::vector<std::string>{"d"}));
}

TEST(LineSplitter, StopsWhenAskedAndDropsOverlongLines) {
  LineSplitter splitter(8);
  int seen = 0;
  EXPECT_EQ(splitter.Feed("1\n2\n3\n", [&](std::string_view) { return ++seen < 2; }), LineSplitter::Status::kStopped);
  EXPECT_EQ(seen, 2);
  splitter.Reset();
  auto ignore = [](std::string_view) { return true; };
  EXPECT_EQ(splitter.Feed("12345", ignore), LineSplitter::Status::kOk);
  EXPECT_EQ(splitter.Feed("6789", ignore), LineSplitter::Status::kLineTooLong);
  EXPECT_EQ(splitter.buffered(), 0u);
  EXPECT_EQ(splitter.Feed("123456789\n", ignore), LineSplitter::Status::kLineTooLong);
  EXPECT_EQ(splitter.Feed("12345678\n", ignore), LineSplitter::Status::kOk);
}

// ---- ApplyWatchEvent ----

TEST(ApplyWatchEvent, GoldenStream) {
  PodStore store;
  std::string rv = "100";
  std::vector<WatchEventResult> results;
  for (const std::string& line : Lines(ReadData("watch_stream.jsonl"))) {
    results.push_back(ApplyWatchEvent(line, store, rv));
  }
  EXPECT_EQ(results, (std::vector<WatchEventResult>{WatchEventResult::kApplied, WatchEventResult::kApplied,
                                                    WatchEventResult::kApplied, WatchEventResult::kBookmark,
                                                    WatchEventResult::kDeleted, WatchEventResult::kApplied}));
  EXPECT_EQ(rv, "112");
  EXPECT_EQ(store.Size(), 2u);
  std::optional<PodInfo> api = store.Lookup("aaaaaaaa-0000-4000-8000-000000000001");
  ASSERT_TRUE(api);
  EXPECT_EQ(api->workload, "api");
  EXPECT_EQ(api->containers.at(std::string(64, 'c')), "sidecar");
  EXPECT_EQ(store.Lookup("aaaaaaaa-0000-4000-8000-000000000002"), std::nullopt);
  EXPECT_EQ(store.Lookup("aaaaaaaa-0000-4000-8000-000000000003")->workload, "nightly");
}

TEST(ApplyWatchEvent, ErrorsAndGarbage) {
  PodStore store;
  std::string rv = "7";
  EXPECT_EQ(ApplyWatchEvent(Lines(ReadData("watch_gone.jsonl"))[0], store, rv), WatchEventResult::kGone);
  EXPECT_EQ(ApplyWatchEvent(R"({"type":"ERROR","object":{"kind":"Status","code":500,"message":"x"}})", store, rv),
            WatchEventResult::kError);
  EXPECT_EQ(ApplyWatchEvent(R"({"type":"ERROR","object":{"code":"410"}})", store, rv), WatchEventResult::kError);
  EXPECT_EQ(ApplyWatchEvent("", store, rv), WatchEventResult::kIgnored);
  EXPECT_EQ(ApplyWatchEvent(" \r", store, rv), WatchEventResult::kIgnored);
  EXPECT_EQ(ApplyWatchEvent(R"({"type":"SOMETHING","object":{}})", store, rv), WatchEventResult::kIgnored);
  for (std::string_view bad : {"not json", "{", "[1,2]", "42", R"({"type":"ADDED"})", R"({"type":"ADDED","object":5})",
                               R"({"type":"DELETED","object":{"metadata":{}}})", R"({"type":"BOOKMARK","object":{}})",
                               "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"uid\":\"\xff\xfe\"}}}"}) {
    EXPECT_EQ(ApplyWatchEvent(bad, store, rv), WatchEventResult::kMalformed) << bad;
  }
  EXPECT_EQ(rv, "7");
  EXPECT_EQ(store.Size(), 0u);
  // Deep nesting must not take the process down.
  std::string deep = R"({"type":"ADDED","object":)" + std::string(100000, '[') + std::string(100000, ']') + "}";
  EXPECT_EQ(ApplyWatchEvent(deep, store, rv), WatchEventResult::kMalformed);
}

// ---- KubeConfig ----

class EnvGuard {
 public:
  explicit EnvGuard(const char* name) : name_(name) {
    if (const char* v = std::getenv(name)) old_ = v;
  }
  ~EnvGuard() {
    if (old_) {
      setenv(name_, old_->c_str(), 1);
    } else {
      unsetenv(name_);
    }
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

TEST(KubeConfig, InClusterFromEnvironment) {
  EnvGuard host("KUBERNETES_SERVICE_HOST"), port("KUBERNETES_SERVICE_PORT"), node("NODE_NAME");
  setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
  setenv("KUBERNETES_SERVICE_PORT", "443", 1);
  setenv("NODE_NAME", "node-a", 1);
  KubeConfig config = KubeConfig::InCluster();
  EXPECT_EQ(config.server, "https://10.96.0.1:443");
  EXPECT_EQ(config.token_file, "/var/run/secrets/kubernetes.io/serviceaccount/token");
  EXPECT_EQ(config.ca_file, "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt");
  EXPECT_EQ(config.node_name, "node-a");

  setenv("KUBERNETES_SERVICE_HOST", "fd00:10:96::1", 1);
  EXPECT_EQ(KubeConfig::InCluster().server, "https://[fd00:10:96::1]:443");

  unsetenv("KUBERNETES_SERVICE_HOST");
  EXPECT_EQ(KubeConfig::InCluster().server, "");
  EXPECT_NE(KubeConfig::InCluster().Validate(), "");
}

TEST(KubeConfig, Validate) {
  KubeConfig config;
  config.server = "http://127.0.0.1:1";
  config.node_name = "n";
  EXPECT_EQ(config.Validate(), "");
  config.server = "127.0.0.1:6443";
  EXPECT_NE(config.Validate(), "");
  config.server = "https://127.0.0.1:6443";
  config.node_name = "";
  EXPECT_NE(config.Validate(), "");
  config.node_name = "n";
  config.token_file = "/nonexistent/token";
  EXPECT_NE(config.Validate(), "");
  config.token_file = "";
  config.ca_file = "/nonexistent/ca.crt";
  EXPECT_NE(config.Validate(), "");
  EXPECT_EQ(ToString(KubeError::kWatchError), "watch_error");
  EXPECT_EQ(ToString(static_cast<KubeError>(kKubeErrorCount - 1)), "watch_error");  // the enum's last
}

// ---- A tiny API server on 127.0.0.1 ----

struct Request {
  std::string target;
  std::string authorization;
};

struct Response {
  int status = 200;
  std::vector<std::string> chunks;  // each its own HTTP chunk
  bool hang = false;                // after the chunks, keep the stream open
  bool silent = false;              // read the request, never answer
};

// Serves one connection at a time, HTTP/1.1 with chunked bodies and
// "Connection: close", which is all the watcher needs.
class FakeApiServer {
 public:
  using Handler = std::function<Response(const Request&, size_t index)>;

  explicit FakeApiServer(Handler handler) : handler_(std::move(handler)) {
    listen_fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    int one = 1;
    setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    EXPECT_EQ(bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    EXPECT_EQ(listen(listen_fd_, 8), 0);
    socklen_t len = sizeof(addr);
    getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { Serve(); });
  }
  ~FakeApiServer() {
    stop_ = true;
    thread_.join();
    close(listen_fd_);
  }

  std::string url(const std::string& scheme = "http") const {
    return scheme + "://127.0.0.1:" + std::to_string(port_);
  }
  std::vector<Request> requests() const {
    std::lock_guard<std::mutex> lock(mu_);
    return requests_;
  }
  size_t request_count() const { return requests().size(); }

 private:
  // Waits for the fd to become readable; false on stop or timeout.
  bool WaitReadable(int fd) {
    while (!stop_) {
      pollfd p{fd, POLLIN, 0};
      int n = poll(&p, 1, 20);
      if (n > 0) return true;
      if (n < 0) return false;
    }
    return false;
  }

  void Serve() {
    while (!stop_) {
      if (!WaitReadable(listen_fd_)) continue;
      int fd = accept(listen_fd_, nullptr, nullptr);
      if (fd < 0) continue;
      HandleConnection(fd);
      close(fd);
    }
  }

  void HandleConnection(int fd) {
    std::string head;
    char buf[4096];
    while (head.find("\r\n\r\n") == std::string::npos) {
      if (!WaitReadable(fd)) return;
      ssize_t n = read(fd, buf, sizeof(buf));
      if (n <= 0) return;
      head.append(buf, static_cast<size_t>(n));
      if (!std::isalpha(static_cast<unsigned char>(head[0]))) return;  // a TLS handshake: hang up
    }
    Request request;
    std::istringstream lines(head);
    std::string method, version;
    lines >> method >> request.target >> version;
    for (std::string line; std::getline(lines, line);) {
      if (line.rfind("Authorization: ", 0) == 0) request.authorization = line.substr(15, line.size() - 16);
    }
    size_t index;
    {
      std::lock_guard<std::mutex> lock(mu_);
      index = requests_.size();
      requests_.push_back(request);
    }
    Response response = handler_(request, index);
    if (response.silent) {
      WaitForPeerClose(fd);
      return;
    }
    std::string reason = response.status == 200 ? "OK" : "Error";
    Send(fd, "HTTP/1.1 " + std::to_string(response.status) + " " + reason +
                 "\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
    for (const std::string& chunk : response.chunks) {
      std::ostringstream size;
      size << std::hex << chunk.size();
      Send(fd, size.str() + "\r\n" + chunk + "\r\n");
      std::this_thread::sleep_for(milliseconds(5));  // separate reads on the client
    }
    if (response.hang) {
      WaitForPeerClose(fd);
      return;
    }
    Send(fd, "0\r\n\r\n");
  }

  void WaitForPeerClose(int fd) {
    char buf[256];
    while (WaitReadable(fd)) {
      if (read(fd, buf, sizeof(buf)) <= 0) return;
    }
  }

  static void Send(int fd, const std::string& data) {
    size_t sent = 0;
    while (sent < data.size()) {
      ssize_t n = send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) return;
      sent += static_cast<size_t>(n);
    }
  }

  Handler handler_;
  int listen_fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  mutable std::mutex mu_;
  std::vector<Request> requests_;
};

json Pod(const std::string& uid, const std::string& name, const std::string& rv, const std::string& container = "app",
         char id = 'a') {
  return {{"metadata", {{"uid", uid}, {"name", name}, {"namespace", "ns"}, {"resourceVersion", rv}}},
          {"status",
           {{"containerStatuses", {{{"name", container}, {"containerID", "containerd://" + std::string(64, id)}}}}}}};
}

std::string PodList(const std::vector<json>& pods, const std::string& rv) {
  return json{{"kind", "PodList"}, {"metadata", {{"resourceVersion", rv}}}, {"items", pods}}.dump();
}

std::string Event(const std::string& type, const json& object) {
  return json{{"type", type}, {"object", object}}.dump() + "\n";
}

std::string Status(int code) {
  return json{{"kind", "Status"}, {"status", "Failure"}, {"message", "status " + std::to_string(code)}, {"code", code}}
      .dump();
}

bool IsWatch(const Request& r) { return r.target.find("watch=1") != std::string::npos; }
bool Has(const Request& r, const std::string& part) { return r.target.find(part) != std::string::npos; }

template <typename Pred>
bool WaitFor(Pred pred, milliseconds timeout = milliseconds(5000)) {
  auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(milliseconds(5));
  }
  return pred();
}

const std::string kA = "aaaaaaaa-0000-4000-8000-00000000000a";
const std::string kB = "aaaaaaaa-0000-4000-8000-00000000000b";
const std::string kC = "aaaaaaaa-0000-4000-8000-00000000000c";

class KubePodWatcherTest : public testing::Test {
 protected:
  KubePodWatcherTest() {
    std::string tmpl = (fs::temp_directory_path() / "imdswatch-kube-XXXXXX").string();
    dir_ = mkdtemp(tmpl.data());
    token_file_ = dir_ + "/token";
    WriteToken("s3cr3t-token-one");
  }
  ~KubePodWatcherTest() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  void WriteToken(const std::string& token) { std::ofstream(token_file_) << token << "\n"; }

  KubeConfig Config(const FakeApiServer& server) {
    KubeConfig config;
    config.server = server.url();
    config.token_file = token_file_;
    config.node_name = "node-a";
    config.connect_timeout = milliseconds(1000);
    config.list_timeout = milliseconds(2000);
    config.backoff_initial = milliseconds(20);
    config.backoff_max = milliseconds(200);
    return config;
  }

  // Stop() must not wait for a hung request to time out.
  static void StopPromptly(KubePodWatcher& watcher) {
    auto start = Clock::now();
    watcher.Stop();
    EXPECT_LT(Clock::now() - start, milliseconds(1000));
    EXPECT_FALSE(watcher.Up());
  }

  std::string dir_;
  std::string token_file_;
  PodStore store_;
};

TEST_F(KubePodWatcherTest, ListWatchGoneRelistWatch) {
  FakeApiServer server([](const Request& r, size_t i) -> Response {
    switch (i) {
      case 0:
        EXPECT_FALSE(IsWatch(r));
        EXPECT_TRUE(Has(r, "/api/v1/pods?fieldSelector=spec.nodeName%3Dnode-a")) << r.target;
        EXPECT_TRUE(Has(r, "resourceVersion=0")) << r.target;
        return {200, {PodList({Pod(kA, "a", "90")}, "100")}};
      case 1: {
        EXPECT_TRUE(IsWatch(r));
        EXPECT_TRUE(Has(r, "resourceVersion=100&allowWatchBookmarks=true&timeoutSeconds=300")) << r.target;
        std::string added = Event("ADDED", Pod(kB, "b", "101"));
        // One event split across chunks, then a bookmark and the 410 together.
        return {200,
                {added.substr(0, 25), added.substr(25),
                 Event("BOOKMARK", {{"metadata", {{"resourceVersion", "105"}}}}) + ReadData("watch_gone.jsonl")}};
      }
      case 2:
        EXPECT_FALSE(IsWatch(r));
        EXPECT_FALSE(Has(r, "resourceVersion=")) << "relist after 410 must be a consistent read: " << r.target;
        return {200, {PodList({Pod(kB, "b", "101"), Pod(kC, "c", "150")}, "200")}};
      case 3:
        EXPECT_TRUE(IsWatch(r));
        EXPECT_TRUE(Has(r, "resourceVersion=200")) << r.target;
        return {200, {Event("MODIFIED", Pod(kC, "c", "201", "renamed"))}, /*hang=*/true};
      default:
        return {200, {}, true};
    }
  });
  KubePodWatcher watcher(Config(server), &store_);
  EXPECT_FALSE(watcher.Synced());
  ASSERT_TRUE(watcher.Start());
  ASSERT_TRUE(WaitFor([&] {
    auto c = store_.Lookup(kC);
    return c && c->containers.begin()->second == "renamed";
  })) << "requests: " << server.request_count();

  EXPECT_EQ(store_.Lookup(kA), std::nullopt);  // the relist dropped it
  EXPECT_TRUE(store_.Lookup(kB));
  EXPECT_EQ(server.request_count(), 4u);
  for (const Request& r : server.requests()) EXPECT_EQ(r.authorization, "Bearer s3cr3t-token-one");
  KubeWatcherStats stats = watcher.Stats();
  EXPECT_TRUE(stats.up);
  EXPECT_TRUE(stats.synced);
  EXPECT_GT(stats.last_sync_unix_seconds, 1600000000);
  EXPECT_EQ(stats.lists, 2u);
  EXPECT_EQ(stats.watches, 2u);
  EXPECT_EQ(stats.events, 3u);  // ADDED, BOOKMARK, MODIFIED
  EXPECT_EQ(stats.errors[static_cast<size_t>(KubeError::kGone)], 1u);
  StopPromptly(watcher);  // while the last watch hangs
}

TEST_F(KubePodWatcherTest, StreamEndResumesFromLastResourceVersion) {
  FakeApiServer server([](const Request& r, size_t i) -> Response {
    if (i == 0) return {200, {PodList({}, "10")}};
    if (i == 1) {
      json bookmark = {{"metadata", {{"resourceVersion", "15"}}}};
      return {200, {Event("ADDED", Pod(kA, "a", "11")) + Event("BOOKMARK", bookmark)}};
    }
    if (i == 2) {
      EXPECT_TRUE(IsWatch(r));
      EXPECT_TRUE(Has(r, "resourceVersion=15")) << r.target;
    }
    return {200, {}, true};
  });
  KubePodWatcher watcher(Config(server), &store_);
  ASSERT_TRUE(watcher.Start());
  ASSERT_TRUE(WaitFor([&] { return server.request_count() >= 3; }));
  EXPECT_TRUE(store_.Lookup(kA));
  EXPECT_EQ(watcher.Stats().lists, 1u);
  EXPECT_EQ(watcher.Stats().errors, (std::array<uint64_t, kKubeErrorCount>{}));
  StopPromptly(watcher);
}

TEST_F(KubePodWatcherTest, HttpGoneOnWatchRelists) {
  FakeApiServer server([](const Request& r, size_t i) -> Response {
    if (i == 0) return {200, {PodList({Pod(kA, "a", "5")}, "10")}};
    if (i == 1) return {410, {Status(410)}};
    if (i == 2) {
      EXPECT_FALSE(IsWatch(r));
      return {200, {PodList({Pod(kB, "b", "20")}, "30")}};
    }
    return {200, {}, true};
  });
  KubePodWatcher watcher(Config(server), &store_);
  ASSERT_TRUE(watcher.Start());
  ASSERT_TRUE(WaitFor([&] { return server.request_count() >= 4; }));
  EXPECT_EQ(store_.Lookup(kA), std::nullopt);
  EXPECT_TRUE(store_.Lookup(kB));
  EXPECT_EQ(watcher.Errors(KubeError::kGone), 1u);
  EXPECT_EQ(watcher.Stats().lists, 2u);
  StopPromptly(watcher);
}

TEST_F(KubePodWatcherTest, UnauthorizedRetriesWithTheRotatedTokenAndNeverLogsIt) {
  auto ring = std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(1000);
  auto previous = spdlog::default_logger();
  spdlog::set_default_logger(std::make_shared<spdlog::logger>("test", ring));
  spdlog::set_level(spdlog::level::trace);

  FakeApiServer server([this](const Request&, size_t i) -> Response {
    if (i == 0) {
      WriteToken("s3cr3t-token-two");  // kubelet rotates the projected token
      return {401, {Status(401)}};
    }
    if (i == 1) return {200, {PodList({Pod(kA, "a", "5")}, "10")}};
    return {200, {}, true};
  });
  KubePodWatcher watcher(Config(server), &store_);
  ASSERT_TRUE(watcher.Start());
  ASSERT_TRUE(WaitFor([&] { return watcher.Synced() && server.request_count() >= 3; }));
  std::vector<Request> requests = server.requests();
  EXPECT_EQ(requests[0].authorization, "Bearer s3cr3t-token-one");
  EXPECT_EQ(requests[1].authorization, "Bearer s3cr3t-token-two");
  EXPECT_EQ(watcher.Errors(KubeError::kUnauthorized), 1u);
  EXPECT_TRUE(watcher.Up());
  StopPromptly(watcher);

  std::vector<std::string> logs = ring->last_formatted();
  spdlog::set_default_logger(previous);
  EXPECT_FALSE(logs.empty());  // the 401 was logged...
  for (const std::string& line : logs) {
    EXPECT_EQ(line.find("s3cr3t"), std::string::npos) << line;  // ...without the token
  }
}

TEST_F(KubePodWatcherTest, ForbiddenKeepsRetryingWithBackoff) {
  FakeApiServer server([](const Request&, size_t) -> Response { return {403, {Status(403)}}; });
  KubePodWatcher watcher(Config(server), &store_);
  ASSERT_TRUE(watcher.Start());
  ASSERT_TRUE(WaitFor([&] { return watcher.Errors(KubeError::kForbidden) >= 3; }));
  EXPECT_FALSE(watcher.Up());
  EXPECT_FALSE(watcher.Synced());
  EXPECT_EQ(watcher.LastSyncUnixSeconds(), 0);
  StopPromptly(watcher);
  auto counts = watcher.ErrorCounts();
  ASSERT_EQ(counts.size(), kKubeErrorCount);
  EXPECT_EQ(counts[static_cast<size_t>(KubeError::kForbidden)].first, "forbidden");
  EXPECT_GE(counts[static_cast<size_t>(KubeError::kForbidden)].second, 3u);
  EXPECT_EQ(counts[static_cast<size_t>(KubeError::kConnect)].second, 0u);
  // 20 + 40 + 80 + 160 + 200... ms: backoff keeps the retry rate modest.
  EXPECT_LT(server.request_count(), 30u);
}

TEST_F(KubePodWatcherTest, MalformedEventReconnectsFromLastResourceVersion) {
  FakeApiServer server([](const Request& r, size_t i) -> Response {
    if (i == 0) return {200, {PodList({}, "10")}};
    if (i == 1) return {200, {Event("ADDED", Pod(kA, "a", "11")) + "this is not json\n"}, true};
    if (i == 2) {
      EXPECT_TRUE(IsWatch(r));
      EXPECT_TRUE(Has(r, "resourceVersion=11")) << r.target;
    }
    return {200, {}, true};
  });
  KubePodWatcher watcher(Config(server), &store_);
  ASSERT_TRUE(watcher.Start());
  ASSERT_TRUE(WaitFor([&] { return server.request_count() >= 3; }));
  EXPECT_EQ(watcher.Errors(KubeError::kMalformed), 1u);
  EXPECT_EQ(watcher.Stats().lists, 1u);
  EXPECT_TRUE(store_.Lookup(kA));
  StopPromptly(watcher);
}

TEST_F(KubePodWatcherTest, MalformedListIsRetried) {
  FakeApiServer server([](const Request&, size_t i) -> Response {
    if (i == 0) return {200, {"{\"items\": 5}"}};
    if (i == 1) return {200, {"{\"items\": [], \"metadata\": {}}"}};  // no resourceVersion
    if (i == 2) return {200, {PodList({}, "10")}};
    return {200, {}, true};
  });
  KubePodWatcher watcher(Config(server), &store_);
  ASSERT_TRUE(watcher.Start());
  ASSERT_TRUE(WaitFor([&] { return watcher.Synced(); }));
  EXPECT_EQ(watcher.Errors(KubeError::kMalformed), 2u);
  StopPromptly(watcher);
}

TEST_F(KubePodWatcherTest, HungServerTimesOut) {
  FakeApiServer server([](const Request&, size_t) -> Response { return {200, {}, false, /*silent=*/true}; });
  KubeConfig config = Config(server);
  config.list_timeout = milliseconds(300);
  KubePodWatcher watcher(config, &store_);
  ASSERT_TRUE(watcher.Start());
  ASSERT_TRUE(WaitFor([&] { return watcher.Errors(KubeError::kTimeout) >= 2; }));
  EXPECT_FALSE(watcher.Up());
  StopPromptly(watcher);
}

TEST_F(KubePodWatcherTest, WatchThatNeverEndsIsCutAndResumed) {
  FakeApiServer server([](const Request& r, size_t i) -> Response {
    if (i == 0) return {200, {PodList({}, "10")}};
    if (i == 2) {
      EXPECT_TRUE(Has(r, "watch=1&resourceVersion=10")) << r.target;
    }
    return {200, {}, /*hang=*/true};
  });
  KubeConfig config = Config(server);
  config.watch_timeout = std::chrono::seconds(1);
  config.watch_grace = milliseconds(200);
  KubePodWatcher watcher(config, &store_);
  ASSERT_TRUE(watcher.Start());
  ASSERT_TRUE(WaitFor([&] { return server.request_count() >= 3; }));
  EXPECT_EQ(watcher.Errors(KubeError::kTimeout), 1u);
  StopPromptly(watcher);
}

TEST_F(KubePodWatcherTest, HttpsNeverFallsBackToPlainText) {
  FakeApiServer server([](const Request&, size_t) -> Response { return {200, {PodList({}, "1")}}; });
  KubeConfig config = Config(server);
  config.server = server.url("https");
  KubePodWatcher watcher(config, &store_);
  ASSERT_TRUE(watcher.Start());
  ASSERT_TRUE(WaitFor([&] { return watcher.Errors(KubeError::kTls) + watcher.Errors(KubeError::kTransport) >= 1; }));
  EXPECT_EQ(server.request_count(), 0u);
  EXPECT_FALSE(watcher.Synced());
  StopPromptly(watcher);
}

TEST_F(KubePodWatcherTest, ConnectionRefusedAndUnreadableToken) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);  // nobody listens there now

  KubeConfig config;
  config.server = "http://127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
  config.node_name = "node-a";
  config.token_file = token_file_;
  config.backoff_initial = milliseconds(10);
  config.backoff_max = milliseconds(50);
  KubePodWatcher watcher(config, &store_);
  ASSERT_TRUE(watcher.Start());
  ASSERT_TRUE(WaitFor([&] { return watcher.Errors(KubeError::kConnect) >= 2; }));
  fs::remove(token_file_);
  ASSERT_TRUE(WaitFor([&] { return watcher.Errors(KubeError::kToken) >= 1; }));
  StopPromptly(watcher);
}

TEST_F(KubePodWatcherTest, StartRefusesAnUnusableConfig) {
  KubeConfig config;
  config.server = "ftp://example";
  config.node_name = "n";
  KubePodWatcher watcher(config, &store_);
  EXPECT_FALSE(watcher.Start());
  watcher.Stop();  // harmless without a thread
}

}  // namespace
}  // namespace imdswatch
