// Socket table: the kernel keeps each metadata connection's state in a
// preallocated table of IMDS_SOCK_WAYS-slot sets keyed by socket cookie
// (imds_socks in bpf/imdswatch.bpf.c, imds_sock_set in bpf/imdswatch.h).
// Two more live connections than a set has slots, their cookies all in one
// set: the first ones take its slots, the last two each evict the connection
// made first. Each eviction is counted in
// imdswatch_events_lost_total{reason="socket_table_full"} and reported to the
// agent, which stops following that connection; exactly the calls of the
// connections that kept a slot are counted. A connect
// that fails before its SYN gets no close callback: its slot is live for the
// 130 s a handshake could last, and free after.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdio>
#include <map>
#include <thread>
#include <vector>

#include "hardening/hardening.h"
#include "imdswatch.h"

namespace imdswatch::testing {
namespace {

class SocketTableTest : public ::testing::Test {
 protected:
  void SetUp() override { HARDENING_REQUIRE_KERNEL(); }
};

uint64_t CookieOf(int fd) {
  uint64_t cookie = 0;
  socklen_t len = sizeof(cookie);
  if (getsockopt(fd, SOL_SOCKET, SO_COOKIE, &cookie, &len) != 0) return 0;
  return cookie;
}

constexpr uint32_t kAnySet = UINT32_MAX;

// `n` TCP sockets whose cookies (given out on first ask, before connect) fall
// in one set: *set, or the first socket's if *set is kAnySet (*set is then it).
std::vector<int> SocketsSharingASet(size_t n, uint32_t* set) {
  std::vector<int> kept;
  for (int tries = 0; tries < 200000 && kept.size() < n; tries++) {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) break;
    const uint64_t cookie = CookieOf(fd);
    if (cookie != 0 && *set == kAnySet) *set = imds_sock_set(cookie);
    if (cookie != 0 && imds_sock_set(cookie) == *set) {
      kept.push_back(fd);
    } else {
      close(fd);
    }
  }
  return kept;
}

bool ConnectTo(int fd, int port, const char* addr = "127.0.0.1") {
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(port);
  to.sin_addr.s_addr = inet_addr(addr);
  return connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof(to)) == 0;
}

// One GET on the connection; the stand-in closes it after answering.
std::string GetAndClose(int fd) {
  const std::string request = "GET /latest/meta-data/instance-id HTTP/1.1\r\nHost: 169.254.169.254\r\n"
                              "Connection: close\r\n\r\n";
  std::string answer;
  if (send(fd, request.data(), request.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(request.size())) return "";
  char buf[4096];
  ssize_t got;
  while ((got = recv(fd, buf, sizeof(buf), 0)) > 0) answer.append(buf, got);
  close(fd);
  return answer;
}

// In a child, in a network namespace of its own (no route at all), connects
// `n` sockets of one set to the metadata address: each connect runs the
// agent's connect hook, then fails before sending anything. `*set` as for
// SocketsSharingASet. Returns the connects that failed with ENETUNREACH.
int UnroutedConnects(size_t n, uint32_t* set) {
  int pipefd[2];
  if (pipe(pipefd) != 0) return -1;
  const pid_t pid = fork();
  if (pid == 0) {
    close(pipefd[0]);
    if (unshare(CLONE_NEWNET) != 0) _exit(100);
    uint32_t want = *set;
    int unreachable = 0;
    for (int fd : SocketsSharingASet(n, &want))
      if (!ConnectTo(fd, 80, "169.254.169.254") && errno == ENETUNREACH) unreachable++;
    if (write(pipefd[1], &want, sizeof(want)) != sizeof(want)) _exit(101);
    _exit(unreachable);
  }
  close(pipefd[1]);
  if (read(pipefd[0], set, sizeof(*set)) != sizeof(*set)) *set = kAnySet;
  close(pipefd[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST_F(SocketTableTest, AConnectThatNeverSentItsSynHoldsItsSlotOnlyAsLongAsAHandshakeCould) {
  TempDir dir("socktable-stale");
  Agent agent({"--no-kube"}, dir.path() + "/agent.log");
  const auto evictions = [](const std::vector<Sample>& x) {
    return SumOf(x, "imdswatch_events_lost_total", {{"reason", "socket_table_full"}});
  };

  // The claims and evictions happen in the connect hook itself, and its
  // counter is read at the scrape: nothing to wait for (no record: a caller
  // from a placed cgroup sends none before its first request).
  // One more than the set holds, at once: the last takes the first's slot (it could still be handshaking).
  constexpr int kWays = IMDS_SOCK_WAYS;
  uint32_t set = kAnySet;
  ASSERT_EQ(UnroutedConnects(kWays + 1, &set), kWays + 1) << "connects did not all fail unrouted";
  ASSERT_NE(set, kAnySet);
  EXPECT_EQ(evictions(agent.Scrape()), 1) << "set " << set;

  // After 130 s no handshake can be going on: every slot is free, new connects evict nothing.
  std::printf("socket table: set %u is full of unrouted connects; waiting out the 130 s a handshake could last\n",
              set);
  std::this_thread::sleep_for(std::chrono::seconds(132));
  ASSERT_EQ(UnroutedConnects(kWays, &set), kWays);
  EXPECT_EQ(evictions(agent.Scrape()), 1) << "a stale slot was not taken as free";
  // and those connects hold the set's slots now: one more evicts one of them
  ASSERT_EQ(UnroutedConnects(1, &set), 1);
  EXPECT_EQ(evictions(agent.Scrape()), 2);
}

TEST_F(SocketTableTest, AFullSetCountsEachEvictionAndKeepsTheOthersExact) {
  TempDir dir("socktable");
  LoopbackImds imds(dir.path());
  Agent agent({"--no-kube", "--endpoint", imds.Endpoint()}, dir.path() + "/agent.log");

  constexpr size_t kWays = IMDS_SOCK_WAYS;
  uint32_t set = kAnySet;
  std::vector<int> fds = SocketsSharingASet(kWays + 2, &set);
  ASSERT_EQ(fds.size(), kWays + 2) << "not enough cookies in one set";
  std::printf("socket table: cookies");
  for (int fd : fds) std::printf(" %llu", static_cast<unsigned long long>(CookieOf(fd)));
  std::printf(" share set %u of %d\n", set, IMDS_SOCK_SETS);

  // All live at once: the last two connects each take the slot of the connection made first.
  for (int fd : fds) ASSERT_TRUE(ConnectTo(fd, imds.port())) << "connect: " << errno;
  for (int fd : fds) EXPECT_NE(GetAndClose(fd).find(" 200 "), std::string::npos);

  // (and every connection's close handled: a loaded machine may take longer than the 600 ms below)
  const auto settled = [&](const std::vector<Sample>& x) {
    return SumOf(x, "imds_requests_total") >= kWays &&
           SumOf(x, "imdswatch_events_lost_total", {{"reason", "socket_table_full"}}) >= 2 &&
           SumOf(x, "imdswatch_map_entries", {{"map", "connections"}}) == 0;
  };
  std::vector<Sample> s = agent.ScrapeUntil(settled);
  std::this_thread::sleep_for(std::chrono::milliseconds(600));
  s = agent.Scrape();
  std::printf("  calls counted %.0f of %zu made, evictions counted %.0f\n", SumOf(s, "imds_requests_total"),
              fds.size(), SumOf(s, "imdswatch_events_lost_total", {{"reason", "socket_table_full"}}));
  EXPECT_EQ(SumOf(s, "imdswatch_events_lost_total", {{"reason", "socket_table_full"}}), 2);
  EXPECT_EQ(SumOf(s, "imds_requests_total"), kWays) << "the connections that kept their slot: all but the first two";
  EXPECT_EQ(SumOf(s, "imds_requests_total", {{"outcome", "ok"}, {"code", "200"}}), kWays);
  EXPECT_EQ(imds.Requests(), kWays + 2);
  // the evicted connections were reported as such: the agent follows none of them any more
  EXPECT_EQ(SumOf(s, "imdswatch_map_entries", {{"map", "connections"}}), 0);
  EXPECT_EQ(SumOf(s, "imdswatch_events_lost_total", {{"reason", "connection_evicted"}}), 0);

  // Closed connections free their slots: four more connections in one set,
  // two at a time, lose nothing.
  set = kAnySet;
  std::vector<int> more = SocketsSharingASet(4, &set);
  ASSERT_EQ(more.size(), 4u);
  for (size_t i = 0; i < more.size(); i += 2) {
    ASSERT_TRUE(ConnectTo(more[i], imds.port()));
    ASSERT_TRUE(ConnectTo(more[i + 1], imds.port()));
    EXPECT_NE(GetAndClose(more[i]).find(" 200 "), std::string::npos);
    EXPECT_NE(GetAndClose(more[i + 1]).find(" 200 "), std::string::npos);
  }
  s = agent.ScrapeUntil([&](const std::vector<Sample>& x) { return SumOf(x, "imds_requests_total") >= kWays + 4; });
  std::this_thread::sleep_for(std::chrono::milliseconds(600));
  s = agent.Scrape();
  EXPECT_EQ(SumOf(s, "imds_requests_total"), kWays + 4);
  EXPECT_EQ(SumOf(s, "imdswatch_events_lost_total", {{"reason", "socket_table_full"}}), 2);
}

}  // namespace
}  // namespace imdswatch::testing
