#include "hardening/hardening.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include <nlohmann/json.hpp>

namespace imdswatch::testing {

TempDir::TempDir(const std::string& tag) {
  path_ = "/tmp/imdswatch-hardening-" + tag + "-" + UniquePrefix();
  std::filesystem::remove_all(path_);
  std::filesystem::create_directories(path_);
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

LoopbackImds::LoopbackImds(const std::string& dir, std::vector<std::string> flags)
    : stats_(dir + "/imds.stats"), port_(FreePort()) {
  std::string ready = dir + "/imds.ready";
  unlink(ready.c_str());
  std::vector<std::string> argv = {"/usr/bin/python3", SourceDir() + "/tests/fixtures/imds_standin.py",
                                   "--listen", Endpoint(), "--stats-file", stats_, "--ready-file", ready};
  argv.insert(argv.end(), flags.begin(), flags.end());
  process_ = std::make_unique<Process>(argv, SpawnOptions{.stderr_file = dir + "/imds.log"});
  if (!WaitForFile(ready, std::chrono::seconds(10))) throw std::runtime_error("imds stand-in did not start");
}

std::string LoopbackImds::Url(const std::string& path) const { return "http://" + Endpoint() + path; }

uint64_t LoopbackImds::Requests() const {
  auto j = nlohmann::json::parse(ReadFile(stats_), nullptr, false);
  if (!j.is_object() || !j.contains("requests")) return 0;
  return j["requests"].get<uint64_t>();
}

PodCgroup::PodCgroup(const std::string& uid_prefix) : uid(RandomUid(uid_prefix)), container_id(RandomHex(64)) {
  cgroup = std::make_unique<Cgroup>(KubeletCgroupPath(uid, container_id));
}

int CurlFrom(const Cgroup& cgroup, const std::string& url) {
  std::string out;
  int rc = RunCommand({"curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5", url},
                      {.cgroup = cgroup.full()}, std::chrono::seconds(10), &out);
  if (rc != 0) return 0;
  try {
    return std::stoi(out);
  } catch (...) {
    return 0;
  }
}

long RssKib(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  return 0;
}

double CpuSeconds(pid_t pid) {
  const std::string stat = ReadFile("/proc/" + std::to_string(pid) + "/stat");
  // "PID (comm) state ppid ...": comm may hold spaces and parentheses; utime and stime are fields
  // 14 and 15, the 12th and 13th after the last ')'.
  const size_t paren = stat.rfind(')');
  if (paren == std::string::npos) return -1;
  std::istringstream fields(stat.substr(paren + 1));
  std::string field;
  unsigned long long utime = 0, stime = 0;
  for (int i = 1; i <= 13 && fields >> field; i++) {
    if (i == 12) utime = std::stoull(field);
    if (i == 13) stime = std::stoull(field);
  }
  if (!fields) return -1;
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

bool SanitizedBuild() {
#ifdef IMDSWATCH_SANITIZED
  return true;
#else
  return false;
#endif
}

}  // namespace imdswatch::testing
