// bench_net: the loads of the benchmark, all on loopback.
//
//   bench_net server --listen HOST:PORT ...        echo server (thread per connection); prints "ready"
//   bench_net rr --connect HOST:PORT --seconds T [--size 64]
//       TCP request/response on one connection (TCP_NODELAY): send SIZE bytes, read SIZE back.
//   bench_net connect --connect HOST:PORT --count N
//       N x (socket, connect, close): connect4/6 and sockops runs.
//   bench_net udp-drop --connect HOST:PORT --count N
//       N UDP datagrams to a port nobody listens on: each is freed through kfree_skb.
//   bench_net imds --connect HOST:PORT --requests N [--mode sdk|conn] [--pad BYTES] [--out FILE]
//       Metadata requests against tests/fixtures/imds_standin.py, headers as botocore sends them.
//       sdk:  per connection PUT /latest/api/token, GET .../security-credentials/, GET .../ROLE
//             (botocore's credential fetch), then close;
//       conn: one GET .../ROLE per connection (token fetched once beforehand, not counted).
//       --pad adds an "X-Bench-Pad" header of BYTES bytes to each GET (parse cost per head byte).
//       --out writes one latency (ns) per line: from before connect() (first request of a
//       connection) or before send() to the last response byte.
// Every mode prints one JSON object on stdout.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

namespace {

struct Addr {
  sockaddr_storage ss{};
  socklen_t len = 0;
  int family = AF_INET;
};

Addr ParseAddr(const std::string& text) {
  Addr a;
  std::string host, port;
  if (!text.empty() && text[0] == '[') {
    auto close = text.find(']');
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
    auto* s6 = reinterpret_cast<sockaddr_in6*>(&a.ss);
    s6->sin6_family = AF_INET6;
    s6->sin6_port = htons(std::stoi(port));
    if (inet_pton(AF_INET6, host.c_str(), &s6->sin6_addr) != 1) throw std::runtime_error("bad address " + text);
    a.len = sizeof(*s6);
    a.family = AF_INET6;
  } else {
    auto colon = text.rfind(':');
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    auto* s4 = reinterpret_cast<sockaddr_in*>(&a.ss);
    s4->sin_family = AF_INET;
    s4->sin_port = htons(std::stoi(port));
    if (inet_pton(AF_INET, host.c_str(), &s4->sin_addr) != 1) throw std::runtime_error("bad address " + text);
    a.len = sizeof(*s4);
  }
  return a;
}

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "bench_net: %s: %s\n", what.c_str(), std::strerror(errno));
  std::exit(1);
}

uint64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + ts.tv_nsec;
}

int Connect(const Addr& a) {
  int fd = socket(a.family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) Die("socket");
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  if (connect(fd, reinterpret_cast<const sockaddr*>(&a.ss), a.len) != 0) Die("connect");
  return fd;
}

bool ReadFull(int fd, char* buf, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = read(fd, buf + got, n - got);
    if (r <= 0) return false;
    got += static_cast<size_t>(r);
  }
  return true;
}

void WriteFull(int fd, const char* buf, size_t n) {
  size_t put = 0;
  while (put < n) {
    ssize_t w = write(fd, buf + put, n - put);
    if (w <= 0) Die("write");
    put += static_cast<size_t>(w);
  }
}

double Percentile(std::vector<uint64_t> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(p * (v.size() - 1) + 0.5);
  return static_cast<double>(v[i]);
}

int Server(const std::vector<std::string>& listens) {
  std::vector<std::thread> acceptors;
  for (const std::string& l : listens) {
    Addr a = ParseAddr(l);
    int fd = socket(a.family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (a.family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, reinterpret_cast<sockaddr*>(&a.ss), a.len) != 0) Die("bind " + l);
    if (listen(fd, 1024) != 0) Die("listen");
    acceptors.emplace_back([fd] {
      for (;;) {
        int c = accept4(fd, nullptr, nullptr, SOCK_CLOEXEC);
        if (c < 0) continue;
        std::thread([c] {
          int one = 1;
          setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
          char buf[65536];
          for (;;) {
            ssize_t r = read(c, buf, sizeof(buf));
            if (r <= 0) break;
            WriteFull(c, buf, static_cast<size_t>(r));
          }
          close(c);
        }).detach();
      }
    });
  }
  std::printf("ready\n");
  std::fflush(stdout);
  for (auto& t : acceptors) t.join();
  return 0;
}

int RequestResponse(const Addr& a, double seconds, size_t size) {
  int fd = Connect(a);
  std::vector<char> buf(size, 'x');
  std::vector<uint64_t> lat;
  lat.reserve(1 << 20);
  const uint64_t start = NowNs(), stop = start + static_cast<uint64_t>(seconds * 1e9);
  uint64_t now = start;
  while (now < stop) {
    uint64_t t0 = now;
    WriteFull(fd, buf.data(), size);
    if (!ReadFull(fd, buf.data(), size)) Die("rr read");
    now = NowNs();
    lat.push_back(now - t0);
  }
  close(fd);
  const double elapsed = (now - start) / 1e9;
  std::printf("{\"transactions\":%zu,\"seconds\":%.3f,\"tps\":%.1f,\"p50_us\":%.3f,\"p99_us\":%.3f}\n", lat.size(),
              elapsed, lat.size() / elapsed, Percentile(lat, 0.5) / 1e3, Percentile(lat, 0.99) / 1e3);
  return 0;
}

int ConnectLoop(const Addr& a, int count) {
  const uint64_t t0 = NowNs();
  for (int i = 0; i < count; i++) close(Connect(a));
  std::printf("{\"connects\":%d,\"seconds\":%.3f}\n", count, (NowNs() - t0) / 1e9);
  return 0;
}

int UdpDrop(const Addr& a, int count) {
  int fd = socket(a.family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  char payload[64] = {};
  int sent = 0;
  for (int i = 0; i < count; i++)
    if (sendto(fd, payload, sizeof(payload), 0, reinterpret_cast<const sockaddr*>(&a.ss), a.len) > 0) sent++;
  close(fd);
  std::printf("{\"sent\":%d}\n", sent);
  return 0;
}

// ---- metadata client ----

struct Response {
  int status = 0;
  std::string body;
};

// Reads one HTTP/1.1 response with Content-Length (the stand-in always sends it).
bool ReadResponse(int fd, std::string* pending, Response* out) {
  char buf[16384];
  for (;;) {
    auto head_end = pending->find("\r\n\r\n");
    if (head_end != std::string::npos) {
      std::string head = pending->substr(0, head_end);
      out->status = std::atoi(head.c_str() + 9);
      size_t length = 0;
      std::string lower = head;
      for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      auto cl = lower.find("\r\ncontent-length:");
      if (cl != std::string::npos) length = std::strtoul(head.c_str() + cl + 17, nullptr, 10);
      size_t total = head_end + 4 + length;
      while (pending->size() < total) {
        ssize_t r = read(fd, buf, sizeof(buf));
        if (r <= 0) return false;
        pending->append(buf, static_cast<size_t>(r));
      }
      out->body = pending->substr(head_end + 4, length);
      pending->erase(0, total);
      return true;
    }
    ssize_t r = read(fd, buf, sizeof(buf));
    if (r <= 0) return false;
    pending->append(buf, static_cast<size_t>(r));
  }
}

const char* kUserAgent = "Botocore/1.29.27 Python/3.11.2 Linux/6.18";
const char* kRole = "imdswatch-test-role";

std::string Request(const std::string& method, const std::string& path, const std::string& host,
                    const std::string& token, size_t pad) {
  std::string r = method + " " + path + " HTTP/1.1\r\nHost: " + host + "\r\nAccept-Encoding: identity\r\n";
  if (method == "PUT") r += "x-aws-ec2-metadata-token-ttl-seconds: 21600\r\n";
  r += std::string("User-Agent: ") + kUserAgent + "\r\n";
  if (!token.empty()) r += "x-aws-ec2-metadata-token: " + token + "\r\n";
  if (pad) r += "X-Bench-Pad: " + std::string(pad, 'p') + "\r\n";
  if (method == "PUT") r += "Content-Length: 0\r\n";
  return r + "\r\n";
}

struct Exchange {
  int fd;
  std::string pending;
};

// One request; returns its latency (ns). t0: when the clock started for it.
uint64_t Do(Exchange& x, const std::string& req, uint64_t t0, Response* resp) {
  // The stand-in writes head and body in two sends: without a quick ACK, Nagle
  // on its side would wait out our delayed ACK (40 ms) on keep-alive requests.
  // (Sending data re-enters delayed-ACK mode: quick ACKs are asked for after it.)
  WriteFull(x.fd, req.data(), req.size());
  int one = 1;
  setsockopt(x.fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one));
  if (!ReadResponse(x.fd, &x.pending, resp)) Die("metadata response");
  return NowNs() - t0;
}

int Imds(const Addr& a, const std::string& host, int requests, const std::string& mode, size_t pad,
         const std::string& out_path) {
  const std::string creds_dir = "/latest/meta-data/iam/security-credentials/";
  std::vector<uint64_t> lat;
  int errors = 0;
  Response resp;
  std::string token;
  if (mode == "conn") {
    Exchange x{Connect(a), ""};
    Do(x, Request("PUT", "/latest/api/token", host, "", 0), NowNs(), &resp);
    token = resp.body;
    close(x.fd);
  }
  const uint64_t start = NowNs();
  while (static_cast<int>(lat.size()) < requests) {
    uint64_t t0 = NowNs();
    Exchange x{Connect(a), ""};
    if (mode == "sdk") {
      lat.push_back(Do(x, Request("PUT", "/latest/api/token", host, "", 0), t0, &resp));
      errors += resp.status != 200;
      token = resp.body;
      t0 = NowNs();
      lat.push_back(Do(x, Request("GET", creds_dir, host, token, pad), t0, &resp));
      errors += resp.status != 200;
      t0 = NowNs();
      lat.push_back(Do(x, Request("GET", creds_dir + kRole, host, token, pad), t0, &resp));
      errors += resp.status != 200;
    } else {
      lat.push_back(Do(x, Request("GET", creds_dir + kRole, host, token, pad), t0, &resp));
      errors += resp.status != 200;
    }
    close(x.fd);
  }
  const double elapsed = (NowNs() - start) / 1e9;
  if (!out_path.empty()) {
    std::ofstream out(out_path);
    for (uint64_t v : lat) out << v << "\n";
  }
  std::printf("{\"requests\":%zu,\"errors\":%d,\"seconds\":%.3f,\"p50_us\":%.1f,\"p90_us\":%.1f}\n", lat.size(), errors,
              elapsed, Percentile(lat, 0.5) / 1e3, Percentile(lat, 0.9) / 1e3);
  return errors ? 1 : 0;
}

int Usage() {
  std::fprintf(stderr, "usage: see the header of bench/bench_net.cpp\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return Usage();
  std::string mode = argv[1], connect_to, imds_mode = "sdk", out;
  std::vector<std::string> listens;
  double seconds = 2;
  size_t size = 64, pad = 0;
  int count = 1000;
  for (int i = 2; i < argc; i++) {
    std::string a = argv[i];
    auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--listen") listens.push_back(next());
    else if (a == "--connect") connect_to = next();
    else if (a == "--seconds") seconds = std::stod(next());
    else if (a == "--size") size = std::stoul(next());
    else if (a == "--count" || a == "--requests") count = std::stoi(next());
    else if (a == "--mode") imds_mode = next();
    else if (a == "--pad") pad = std::stoul(next());
    else if (a == "--out") out = next();
    else return Usage();
  }
  if (mode == "server" && !listens.empty()) return Server(listens);
  if (connect_to.empty()) return Usage();
  Addr addr = ParseAddr(connect_to);
  if (mode == "rr") return RequestResponse(addr, seconds, size);
  if (mode == "connect") return ConnectLoop(addr, count);
  if (mode == "udp-drop") return UdpDrop(addr, count);
  if (mode == "imds") {
    std::string host = connect_to.substr(0, connect_to.rfind(':'));
    return Imds(addr, host, count, imds_mode, pad, out);
  }
  return Usage();
}
