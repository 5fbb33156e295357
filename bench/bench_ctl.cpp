// bench_ctl: decides which BPF programs run on the hooks during a benchmark.
//
//   bench_ctl serve --cgroup ROOT --agent-pid PID [--endpoint IPV4:PORT]
//       Loads bench/empty.bpf.c (one EMPTY program per type and hook the agent
//       uses) and, given the endpoint, bench/floor.bpf.c (the counting floor:
//       the least work any design does per call), finds the programs and links
//       the running agent holds (its
//       /proc/PID/fdinfo), and reads commands on stdin, one per line, answering
//       one line on stdout:
//         take                  detach the agent's own links (BPF_LINK_DETACH); from
//                               now on its programs run only while attached here
//                               (raw_tp links cannot be detached: kfree_skb stays
//                               attached by the agent; it runs only on dropped packets).
//                               The agent keeps running: it still owns the maps and
//                               consumes the ring buffer, as in production.
//         attach agent|empty|floor  attach that set at ROOT (cgroup programs, as the
//         detach agent|empty|floor  agent does, through BPF links) and raw_tp/kfree_skb
//         ids                   {"agent":{"imds_egress":ID,...},"empty":{...}}
//         floor_counts          "calls N connections M": what the floor counted so far
//                               (so a run shows it did its work, not an early exit)
//         quit
//   bench_ctl testrun --prog NAME=ID ... [--repeat 1000000] [--runs 5]
//       BPF_PROG_TEST_RUN of cgroup_skb programs on synthesized packets; prints
//       one JSON object per (program, packet): the kernel's mean ns per run of
//       each run ("ns", whole ns) and the call's wall clock per run ("wall_ns"),
//       in the order they were made (programs interleaved per run).
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <dirent.h>
#include <fcntl.h>
#include <linux/if_ether.h>
#include <netinet/ip.h>
#include <netinet/ip6.h>
#include <netinet/tcp.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "empty.skel.h"
#include "floor.h"
#include "floor.skel.h"

namespace {

struct Hook {
  const char* suffix;  // program name without its "imds_"/"empty_" prefix
  bpf_attach_type type;
  bool cgroup;
};

const Hook kHooks[] = {
    {"connect4", BPF_CGROUP_INET4_CONNECT, true}, {"connect6", BPF_CGROUP_INET6_CONNECT, true},
    {"sockops", BPF_CGROUP_SOCK_OPS, true},       {"egress", BPF_CGROUP_INET_EGRESS, true},
    {"ingress", BPF_CGROUP_INET_INGRESS, true},   {"kfree_skb", BPF_TRACE_RAW_TP, false},
};

struct Prog {
  std::string name;
  int fd = -1;
  uint32_t id = 0;
  const Hook* hook = nullptr;
  int attached_fd = -1;  // link fd (cgroup) or raw tracepoint fd
  bool kept_by_agent = false;  // attached by the agent's own link, which cannot be detached
};

std::string ProgName(int fd, uint32_t* id) {
  bpf_prog_info info{};
  uint32_t len = sizeof(info);
  if (bpf_obj_get_info_by_fd(fd, &info, &len) != 0) return "";
  if (id) *id = info.id;
  return info.name;
}

const Hook* HookFor(const std::string& name) {
  // the agent's raw_tp filter (kernels before 5.17, or --forwarding-drops.raw-tp)
  if (name == "imds_kfree_raw") return HookFor("imds_kfree_skb");
  for (const Hook& h : kHooks) {
    std::string s = h.suffix;
    if (name == "imds_" + s || name == "empty_" + s || name == "floor_" + s) return &h;
  }
  return nullptr;
}

// prog ids and link ids held by a process, from /proc/PID/fdinfo.
void HeldBy(int pid, std::vector<uint32_t>* progs, std::vector<uint32_t>* links) {
  std::string dir = "/proc/" + std::to_string(pid) + "/fdinfo";
  DIR* d = opendir(dir.c_str());
  if (!d) return;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    std::ifstream in(dir + "/" + e->d_name);
    std::string line;
    uint32_t prog = 0, link = 0;
    while (std::getline(in, line)) {
      if (line.rfind("prog_id:", 0) == 0) prog = std::stoul(line.substr(8));
      if (line.rfind("link_id:", 0) == 0) link = std::stoul(line.substr(8));
    }
    if (link)
      links->push_back(link);
    else if (prog)
      progs->push_back(prog);
  }
  closedir(d);
}

bool Attach(Prog& p, int cgroup_fd, std::string* err) {
  if (p.attached_fd >= 0 || p.kept_by_agent) return true;
  int fd = p.hook->cgroup ? bpf_link_create(p.fd, cgroup_fd, p.hook->type, nullptr)
                          : bpf_raw_tracepoint_open("kfree_skb", p.fd);
  if (fd < 0) {
    *err = p.name + ": " + std::strerror(errno);
    return false;
  }
  p.attached_fd = fd;
  return true;
}

void Detach(Prog& p) {
  if (p.attached_fd < 0) return;
  close(p.attached_fd);  // the last reference: the link goes, and with it the attachment
  p.attached_fd = -1;
}

// The programs of a loaded object that run on one of the agent's hooks.
void AddSet(bpf_object* obj, std::vector<Prog>* set) {
  bpf_program* prog;
  bpf_object__for_each_program(prog, obj) {
    Prog p;
    p.fd = bpf_program__fd(prog);
    p.name = ProgName(p.fd, &p.id);
    p.hook = HookFor(p.name);
    if (p.hook) set->push_back(p);
  }
}

// "A.B.C.D:PORT" into sin (network byte order).
bool ParseIpv4Endpoint(const std::string& endpoint, sockaddr_in* sin) {
  size_t colon = endpoint.rfind(':');
  if (colon == std::string::npos) return false;
  if (inet_pton(AF_INET, endpoint.substr(0, colon).c_str(), &sin->sin_addr) != 1) return false;
  int port = std::atoi(endpoint.c_str() + colon + 1);
  if (port <= 0 || port > 65535) return false;
  sin->sin_port = htons(port);
  return true;
}

int Serve(const std::string& cgroup, int agent_pid, const std::string& endpoint) {
  libbpf_set_print(nullptr);
  int cgroup_fd = open(cgroup.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (cgroup_fd < 0) {
    std::fprintf(stderr, "open %s: %s\n", cgroup.c_str(), std::strerror(errno));
    return 1;
  }
  empty_bpf* skel = empty_bpf::open_and_load();
  if (!skel) {
    std::fprintf(stderr, "loading the empty programs: %s\n", std::strerror(errno));
    return 1;
  }
  std::map<std::string, std::vector<Prog>> sets;
  AddSet(skel->obj, &sets["empty"]);
  floor_bpf* floor = nullptr;
  if (!endpoint.empty()) {
    sockaddr_in sin{};
    if (!ParseIpv4Endpoint(endpoint, &sin)) {
      std::fprintf(stderr, "the floor programs: bad endpoint %s (IPV4:PORT)\n", endpoint.c_str());
      return 1;
    }
    floor = floor_bpf::open();
    if (!floor) {
      std::fprintf(stderr, "opening the floor programs: %s\n", std::strerror(errno));
      return 1;
    }
    floor->rodata->floor_ip4 = sin.sin_addr.s_addr;
    floor->rodata->floor_port = sin.sin_port;
    if (floor_bpf::load(floor) != 0) {
      std::fprintf(stderr, "loading the floor programs: %s\n", std::strerror(errno));
      return 1;
    }
    AddSet(floor->obj, &sets["floor"]);
  }
  std::vector<uint32_t> prog_ids, link_ids;
  HeldBy(agent_pid, &prog_ids, &link_ids);
  for (uint32_t id : prog_ids) {
    Prog p;
    p.fd = bpf_prog_get_fd_by_id(id);
    if (p.fd < 0) continue;
    p.name = ProgName(p.fd, &p.id);
    p.hook = HookFor(p.name);
    if (p.hook && p.name.rfind("imds_", 0) == 0)
      sets["agent"].push_back(p);
    else
      close(p.fd);
  }
  if (sets["agent"].empty()) {
    std::fprintf(stderr, "no imds_* programs held by pid %d\n", agent_pid);
    return 1;
  }
  std::printf("ready %zu agent programs, %zu empty programs, %zu floor programs, %zu agent links\n",
              sets["agent"].size(), sets["empty"].size(), sets["floor"].size(), link_ids.size());
  std::fflush(stdout);

  std::string line;
  while (std::getline(std::cin, line)) {
    std::istringstream words(line);
    std::string cmd, which;
    words >> cmd >> which;
    std::string reply = "ok";
    if (cmd == "take") {
      int taken = 0;
      std::string kept;
      for (uint32_t id : link_ids) {
        int fd = bpf_link_get_fd_by_id(id);
        if (fd < 0) continue;
        if (bpf_link_detach(fd) == 0) {
          taken++;
        } else {
          // raw_tp links cannot be detached (EOPNOTSUPP): that program stays
          // attached by the agent itself, and "attach agent" leaves it alone.
          bpf_link_info info{};
          uint32_t len = sizeof(info);
          bpf_obj_get_info_by_fd(fd, &info, &len);
          for (Prog& p : sets["agent"])
            if (p.id == info.prog_id) {
              p.kept_by_agent = true;
              kept += " " + p.name;
            }
        }
        close(fd);
      }
      reply = "ok taken " + std::to_string(taken) + " kept_by_agent" + (kept.empty() ? " none" : kept);
    } else if ((cmd == "attach" || cmd == "detach") && sets.count(which)) {
      for (Prog& p : sets[which]) {
        std::string err;
        if (cmd == "detach") {
          Detach(p);
        } else if (!Attach(p, cgroup_fd, &err)) {
          reply = "error " + err;
          break;
        }
      }
    } else if (cmd == "ids") {
      reply = "{";
      for (auto& [set, progs] : sets) {
        if (reply.size() > 1) reply += ",";
        reply += "\"" + set + "\":{";
        for (size_t i = 0; i < progs.size(); i++)
          reply += (i ? ",\"" : "\"") + progs[i].name + "\":" + std::to_string(progs[i].id);
        reply += "}";
      }
      reply += "}";
    } else if (cmd == "floor_counts" && floor) {
      uint64_t calls = 0, connections = 0;
      floor_key key{}, next{};
      const int fd = bpf_map__fd(floor->maps.floor_counts);
      for (int rc = bpf_map_get_next_key(fd, nullptr, &next); rc == 0; rc = bpf_map_get_next_key(fd, &key, &next)) {
        uint64_t n = 0;
        if (bpf_map_lookup_elem(fd, &next, &n) == 0) (next.status ? calls : connections) += n;
        key = next;
      }
      reply = "calls " + std::to_string(calls) + " connections " + std::to_string(connections);
    } else if (cmd == "quit") {
      break;
    } else {
      reply = "error unknown command: " + line;
    }
    std::printf("%s\n", reply.c_str());
    std::fflush(stdout);
  }
  for (auto& [set, progs] : sets)
    for (Prog& p : progs) Detach(p);
  empty_bpf::destroy(skel);
  floor_bpf::destroy(floor);
  return 0;
}

// ---- BPF_PROG_TEST_RUN ----

struct Packet {
  std::string name;
  std::vector<uint8_t> bytes;  // Ethernet frame: the test run strips the MAC header for cgroup_skb
};

uint16_t Checksum(const void* data, size_t len) {
  const uint8_t* p = static_cast<const uint8_t*>(data);
  uint32_t sum = 0;
  for (size_t i = 0; i + 1 < len; i += 2) sum += (p[i] << 8) | p[i + 1];
  if (len & 1) sum += p[len - 1] << 8;
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return htons(static_cast<uint16_t>(~sum));
}

Packet Tcp(const std::string& name, bool v6, uint16_t sport, uint16_t dport, size_t payload, uint8_t flags) {
  Packet pkt;
  pkt.name = name;
  const size_t ip_len = v6 ? sizeof(ip6_hdr) : sizeof(iphdr);
  auto& b = pkt.bytes;
  b.assign(ETH_HLEN + ip_len + sizeof(tcphdr) + payload, 0);
  auto* eth = reinterpret_cast<ethhdr*>(b.data());
  std::memset(eth->h_dest, 0x02, ETH_ALEN);
  std::memset(eth->h_source, 0x04, ETH_ALEN);
  eth->h_proto = htons(v6 ? ETH_P_IPV6 : ETH_P_IP);
  uint8_t* l3 = b.data() + ETH_HLEN;
  if (v6) {
    auto* ip6 = reinterpret_cast<ip6_hdr*>(l3);
    ip6->ip6_flow = htonl(6u << 28);
    ip6->ip6_plen = htons(static_cast<uint16_t>(sizeof(tcphdr) + payload));
    ip6->ip6_nxt = IPPROTO_TCP;
    ip6->ip6_hlim = 64;
    inet_pton(AF_INET6, "fd77:1::2", &ip6->ip6_src);
    inet_pton(AF_INET6, "fd77:2::2", &ip6->ip6_dst);
  } else {
    auto* ip = reinterpret_cast<iphdr*>(l3);
    ip->version = 4;
    ip->ihl = 5;
    ip->tot_len = htons(static_cast<uint16_t>(ip_len + sizeof(tcphdr) + payload));
    ip->ttl = 64;
    ip->protocol = IPPROTO_TCP;
    ip->saddr = inet_addr("10.77.1.2");
    ip->daddr = inet_addr("10.77.2.2");
    ip->check = Checksum(ip, sizeof(*ip));
  }
  auto* th = reinterpret_cast<tcphdr*>(l3 + ip_len);
  th->source = htons(sport);
  th->dest = htons(dport);
  th->seq = htonl(1000);
  th->ack_seq = htonl(2000);
  th->doff = 5;
  reinterpret_cast<uint8_t*>(th)[13] = flags;
  th->window = htons(512);
  for (size_t i = 0; i < payload; i++) l3[ip_len + sizeof(tcphdr) + i] = 'a' + i % 26;
  return pkt;
}

int TestRun(const std::vector<std::pair<std::string, uint32_t>>& progs, uint32_t repeat, int runs) {
  const std::vector<Packet> packets = {
      Tcp("tcp4_ack", false, 43210, 5201, 0, 0x10),
      Tcp("tcp4_data512_dport80", false, 43210, 80, 512, 0x18),
      Tcp("tcp6_ack", true, 43210, 5201, 0, 0x10),
  };
  std::vector<int> fds;
  for (const auto& [name, id] : progs) {
    int fd = bpf_prog_get_fd_by_id(id);
    if (fd < 0) {
      std::fprintf(stderr, "program %s (id %u): %s\n", name.c_str(), id, std::strerror(errno));
      return 1;
    }
    fds.push_back(fd);
  }
  for (const Packet& pkt : packets) {
    std::vector<std::vector<uint32_t>> ns(progs.size());
    std::vector<std::vector<double>> wall_ns(progs.size());
    std::vector<uint32_t> retval(progs.size());
    for (int r = 0; r < runs; r++) {
      for (size_t i = 0; i < progs.size(); i++) {
        // alternate the order run by run, so neither side always goes first
        size_t k = (r % 2) ? progs.size() - 1 - i : i;
        std::vector<uint8_t> out(pkt.bytes.size() + 256);
        LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = pkt.bytes.data(),
                    .data_out = out.data(), .data_size_in = static_cast<uint32_t>(pkt.bytes.size()),
                    .data_size_out = static_cast<uint32_t>(out.size()), .repeat = static_cast<int>(repeat));
        // The kernel's duration is whole ns (it divides by repeat): a 7 % step at
        // 14 ns. The call's own clock resolves it; its fixed cost (the syscall,
        // the skb) is ~2 us of the ~14 ms of a million runs.
        timespec t0{}, t1{};
        clock_gettime(CLOCK_MONOTONIC, &t0);
        const int rc = bpf_prog_test_run_opts(fds[k], &opts);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        if (rc != 0) {
          std::fprintf(stderr, "test run %s on %s: %s\n", progs[k].first.c_str(), pkt.name.c_str(),
                       std::strerror(errno));
          return 1;
        }
        ns[k].push_back(opts.duration);
        wall_ns[k].push_back(((t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec)) / repeat);
        retval[k] = opts.retval;
      }
    }
    for (size_t i = 0; i < progs.size(); i++) {
      std::printf("{\"prog\":\"%s\",\"packet\":\"%s\",\"bytes\":%zu,\"repeat\":%u,\"retval\":%u,\"ns\":[",
                  progs[i].first.c_str(), pkt.name.c_str(), pkt.bytes.size() - ETH_HLEN, repeat, retval[i]);
      for (size_t r = 0; r < ns[i].size(); r++) std::printf("%s%u", r ? "," : "", ns[i][r]);
      std::printf("],\"wall_ns\":[");
      for (size_t r = 0; r < wall_ns[i].size(); r++) std::printf("%s%.3f", r ? "," : "", wall_ns[i][r]);
      std::printf("]}\n");
    }
  }
  return 0;
}

int Usage() {
  std::fprintf(stderr,
               "usage: bench_ctl serve --cgroup ROOT --agent-pid PID [--endpoint IPV4:PORT]\n"
               "       bench_ctl testrun --prog NAME=ID ... [--repeat N] [--runs N]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return Usage();
  std::string mode = argv[1];
  std::string cgroup, endpoint;
  int pid = 0;
  uint32_t repeat = 1000000;
  int runs = 5;
  std::vector<std::pair<std::string, uint32_t>> progs;
  for (int i = 2; i < argc; i++) {
    std::string a = argv[i];
    auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--cgroup") cgroup = next();
    else if (a == "--agent-pid") pid = std::atoi(next().c_str());
    else if (a == "--endpoint")
      endpoint = next();
    else if (a == "--repeat") repeat = std::stoul(next());
    else if (a == "--runs") runs = std::atoi(next().c_str());
    else if (a == "--prog") {
      std::string v = next();
      auto eq = v.find('=');
      if (eq == std::string::npos) return Usage();
      progs.emplace_back(v.substr(0, eq), std::stoul(v.substr(eq + 1)));
    } else return Usage();
  }
  if (mode == "serve" && !cgroup.empty() && pid > 0) return Serve(cgroup, pid, endpoint);
  if (mode == "testrun" && !progs.empty()) return TestRun(progs, repeat, runs);
  return Usage();
}
