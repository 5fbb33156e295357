#include "integration/harness.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <mutex>
#include <random>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "imdswatch/cgroup_resolver.h"
#include "imdswatch/preflight.h"

namespace imdswatch::testing {

std::string SourceDir() { return IMDSWATCH_SOURCE_DIR; }
std::string BinaryDir() { return IMDSWATCH_BINARY_DIR; }

std::string CgroupRoot() {
  static const std::string root = CgroupResolver::DetectRoot().value_or("");
  return root;
}

std::string UniquePrefix() {
  static int counter = 0;
  return "iw" + std::to_string(getpid() % 100000) + "x" + std::to_string(counter++);
}

std::string KernelTestsUnavailable() {
  if (geteuid() != 0) return "kernel tests need root";
  if (!MissingCapabilities().empty()) return "kernel tests need CAP_BPF/CAP_NET_ADMIN";
  if (CgroupRoot().empty()) return "no cgroup v2 mount";
  if (!CheckKernelBtf().empty()) return "no kernel BTF";
  if (access((BinaryDir() + "/imdswatch").c_str(), X_OK) != 0) return "build/imdswatch missing";
  return "";
}

Topology::Topology(std::string prefix, int pods) : prefix_(std::move(prefix)), pods_(pods) {
  std::string out;
  int rc = RunCommand({SourceDir() + "/tests/fixtures/topology.sh", "up", prefix_, std::to_string(pods_)}, {},
                      std::chrono::seconds(60), &out);
  if (rc != 0) throw std::runtime_error("topology up failed: " + out);
}

Topology::~Topology() {
  RunCommand({SourceDir() + "/tests/fixtures/topology.sh", "down", prefix_, std::to_string(pods_)}, {},
             std::chrono::seconds(60));
}

std::string Topology::NetnsPath(const std::string& host) const { return "/run/netns/" + prefix_ + "-" + host; }

Cgroup::Cgroup(std::string relative_path) : path_(std::move(relative_path)) {
  std::string dir = CgroupRoot();
  std::stringstream parts(path_);
  std::string part;
  while (std::getline(parts, part, '/')) {
    if (part.empty()) continue;
    dir += "/" + part;
    if (mkdir(dir.c_str(), 0755) == 0)
      created_.push_back(dir);
    else if (errno != EEXIST)
      throw std::runtime_error("mkdir " + dir + ": " + std::strerror(errno));
  }
}

Cgroup::~Cgroup() {
  // processes must leave before the directory can go
  std::ifstream procs(full() + "/cgroup.procs");
  pid_t pid;
  while (procs >> pid) kill(pid, SIGKILL);
  for (auto it = created_.rbegin(); it != created_.rend(); ++it) {
    for (int i = 0; i < 50 && rmdir(it->c_str()) != 0 && errno == EBUSY; i++)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

std::string Cgroup::full() const { return CgroupRoot() + path_; }

uint64_t Cgroup::id() const {
  struct stat st {};
  stat(full().c_str(), &st);
  return st.st_ino;
}

Process::Process(std::vector<std::string> argv, SpawnOptions options) {
  int ready[2];
  if (pipe2(ready, O_CLOEXEC) != 0) throw std::runtime_error("pipe");
  pid_ = fork();
  if (pid_ < 0) throw std::runtime_error("fork");
  if (pid_ == 0) {
    // child: cgroup first (so the connect hook sees it), then netns, then exec
    close(ready[0]);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    auto fail = [&](const char* what) {
      dprintf(ready[1], "%s: %s", what, std::strerror(errno));
      _exit(127);
    };
    if (!options.cgroup.empty()) {
      int fd = open((options.cgroup + "/cgroup.procs").c_str(), O_WRONLY);
      if (fd < 0 || dprintf(fd, "%d", getpid()) < 0) fail("cgroup");
      close(fd);
    }
    if (!options.netns.empty()) {
      int fd = open(options.netns.c_str(), O_RDONLY);
      if (fd < 0 || setns(fd, CLONE_NEWNET) != 0) fail("setns");
      close(fd);
    }
    if (!options.stdout_file.empty()) {
      int fd = open(options.stdout_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (fd >= 0) dup2(fd, 1);
    }
    if (!options.stderr_file.empty()) {
      int fd = open(options.stderr_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (fd >= 0) dup2(fd, 2);
    }
    for (const auto& [k, v] : options.env) setenv(k.c_str(), v.c_str(), 1);
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    execvp(args[0], args.data());
    fail("exec");
  }
  close(ready[1]);
  char msg[256] = {};
  ssize_t n = read(ready[0], msg, sizeof(msg) - 1);
  close(ready[0]);
  if (n > 0) {
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
    throw std::runtime_error(std::string("spawn ") + argv[0] + ": " + msg);
  }
}

Process::~Process() {
  if (pid_ > 0 && Running()) Terminate(std::chrono::seconds(3));
}

bool Process::Running() {
  if (pid_ <= 0 || status_ != -1) return false;
  int st;
  pid_t r = waitpid(pid_, &st, WNOHANG);
  if (r == pid_) {
    status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    return false;
  }
  return true;
}

int Process::Wait(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (Running()) {
    if (std::chrono::steady_clock::now() > deadline) return -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return status_;
}

std::chrono::milliseconds Process::Terminate(std::chrono::milliseconds timeout) {
  auto start = std::chrono::steady_clock::now();
  if (!Running()) return std::chrono::milliseconds(0);
  kill(pid_, SIGTERM);
  if (Wait(timeout) < 0) {
    kill(pid_, SIGKILL);
    Wait(std::chrono::seconds(5));
  }
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
}

int RunCommand(std::vector<std::string> argv, SpawnOptions options, std::chrono::milliseconds timeout,
               std::string* output) {
  char tmpl[] = "/tmp/imdswatch-cmd-XXXXXX";
  int fd = mkstemp(tmpl);
  close(fd);
  options.stdout_file = tmpl;
  if (options.stderr_file.empty()) options.stderr_file = std::string(tmpl) + ".err";
  int rc;
  {
    Process p(std::move(argv), options);
    rc = p.Wait(timeout);
    if (rc < 0) p.Terminate();
  }
  if (output) {
    auto slurp = [](const std::string& path) {
      std::ifstream in(path);
      return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    };
    *output = slurp(tmpl) + slurp(options.stderr_file);
  }
  unlink(tmpl);
  unlink((std::string(tmpl) + ".err").c_str());
  return rc;
}

bool WaitForFile(const std::string& path, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (access(path.c_str(), F_OK) != 0) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

namespace {

size_t Append(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

}  // namespace

int HttpGet(const std::string& url, std::string* body) {
  CURL* curl = curl_easy_init();
  body->clear();
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, Append);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, body);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 5000L);
  curl_easy_setopt(curl, CURLOPT_NOPROXY, "*");
  long status = 0;
  if (curl_easy_perform(curl) == CURLE_OK) curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_cleanup(curl);
  return static_cast<int>(status);
}

std::vector<Sample> ParseMetrics(const std::string& text) {
  static const std::regex line_re(R"(^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)$)");
  static const std::regex label_re(R"re(([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)")re");
  std::vector<Sample> out;
  std::stringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::smatch m;
    if (!std::regex_match(line, m, line_re)) continue;
    Sample s;
    s.name = m[1];
    std::string labels = m[3];
    for (auto it = std::sregex_iterator(labels.begin(), labels.end(), label_re); it != std::sregex_iterator(); ++it)
      s.labels[(*it)[1]] = (*it)[2];
    s.value = std::stod(m[4]);
    out.push_back(std::move(s));
  }
  return out;
}

namespace {

bool Matches(const Sample& s, const std::string& name, const std::map<std::string, std::string>& match) {
  if (s.name != name) return false;
  for (const auto& [k, v] : match) {
    auto it = s.labels.find(k);
    if (it == s.labels.end() || it->second != v) return false;
  }
  return true;
}

}  // namespace

double SumOf(const std::vector<Sample>& samples, const std::string& name,
             const std::map<std::string, std::string>& match) {
  double sum = 0;
  for (const auto& s : samples)
    if (Matches(s, name, match)) sum += s.value;
  return sum;
}

size_t CountOf(const std::vector<Sample>& samples, const std::string& name,
               const std::map<std::string, std::string>& match) {
  size_t n = 0;
  for (const auto& s : samples)
    if (Matches(s, name, match)) n++;
  return n;
}

int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

Agent::Agent(std::vector<std::string> extra_flags, std::string log_file) : port_(FreePort()) {
  log_file_ = log_file.empty() ? "/tmp/imdswatch-agent-" + std::to_string(port_) + ".log" : log_file;
  std::vector<std::string> argv = {BinaryDir() + "/imdswatch", "--web.listen-address",
                                   "127.0.0.1:" + std::to_string(port_), "--log-level", "debug"};
  argv.insert(argv.end(), extra_flags.begin(), extra_flags.end());
  SpawnOptions opts;
  opts.stderr_file = log_file_;
  opts.stdout_file = log_file_ + ".out";
  process_ = std::make_unique<Process>(argv, opts);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  std::string body;
  while (HttpGet(Url("/readyz"), &body) != 200) {
    if (!process_->Running()) throw std::runtime_error("agent exited: " + ReadFile(log_file_));
    if (std::chrono::steady_clock::now() > deadline) throw std::runtime_error("agent not ready in 20 s");
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

Agent::~Agent() { process_->Terminate(); }

std::string Agent::Url(const std::string& path) const {
  return "http://127.0.0.1:" + std::to_string(port_) + path;
}

std::vector<Sample> Agent::Scrape() const {
  std::string body;
  if (HttpGet(Url("/metrics"), &body) != 200) return {};
  return ParseMetrics(body);
}

std::vector<Sample> Agent::ScrapeUntil(const std::function<bool(const std::vector<Sample>&)>& pred,
                                       std::chrono::milliseconds timeout) const {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  std::vector<Sample> samples;
  for (;;) {
    samples = Scrape();
    if (pred(samples) || std::chrono::steady_clock::now() > deadline) return samples;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

std::string KubeletCgroupPath(const std::string& pod_uid, const std::string& container_id, const std::string& qos) {
  std::string uid = pod_uid;
  for (char& c : uid)
    if (c == '-') c = '_';
  return "/kubepods.slice/kubepods-" + qos + ".slice/kubepods-" + qos + "-pod" + uid + ".slice/cri-containerd-" +
         container_id + ".scope";
}

std::string RandomHex(size_t n) {
  static std::mutex mu;
  static std::mt19937_64 rng(std::random_device{}());
  static const char* hex = "0123456789abcdef";
  std::lock_guard<std::mutex> lock(mu);
  std::string s;
  for (size_t i = 0; i < n; i++) s += hex[rng() % 16];
  return s;
}

std::string RandomUid(const std::string& prefix) {
  std::string h = RandomHex(32);
  h.replace(0, std::min(prefix.size(), h.size()), prefix.substr(0, h.size()));
  return h.substr(0, 8) + "-" + h.substr(8, 4) + "-" + h.substr(12, 4) + "-" + h.substr(16, 4) + "-" + h.substr(20);
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace imdswatch::testing
