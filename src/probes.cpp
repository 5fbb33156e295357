#include "imdswatch/probes.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstring>
#include <fstream>
#include <optional>
#include <utility>

#include "imdswatch.skel.h"
#include "imdswatch/kernel_symbols.h"
#include "imdswatch/packet_filter.h"

namespace imdswatch {

namespace {

// libbpf's messages (verifier logs among them) go to the agent's log, a line at a time.
int LibbpfLog(enum libbpf_print_level level, const char* format, va_list args) {
  va_list copy;
  va_copy(copy, args);
  int n = vsnprintf(nullptr, 0, format, copy);
  va_end(copy);
  if (n <= 0) return 0;
  std::string text(static_cast<size_t>(n) + 1, '\0');
  vsnprintf(text.data(), text.size(), format, args);
  text.resize(static_cast<size_t>(n));
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    std::string_view line(text.data() + start, end - start);
    if (level == LIBBPF_WARN)
      spdlog::warn("libbpf: {}", line);
    else if (level == LIBBPF_INFO)
      spdlog::debug("libbpf: {}", line);
    else
      spdlog::trace("libbpf: {}", line);
    start = end + 1;
  }
  return 0;
}

std::string Errno(int err) { return std::strerror(err < 0 ? -err : err); }

// Does this kernel's kfree_skb tracepoint pass a drop reason (5.17+)? Its
// BTF prototype, btf_trace_kfree_skb, is then (void *, skb, location,
// enum skb_drop_reason[, ...]).
bool KfreeSkbHasReason() {
  btf* vmlinux = btf__load_vmlinux_btf();
  if (libbpf_get_error(vmlinux)) return false;
  bool has = false;
  int id = btf__find_by_name_kind(vmlinux, "btf_trace_kfree_skb", BTF_KIND_TYPEDEF);
  const btf_type* t = id > 0 ? btf__type_by_id(vmlinux, id) : nullptr;
  if (t) t = btf__type_by_id(vmlinux, t->type);  // the pointer
  if (t && btf_is_ptr(t)) t = btf__type_by_id(vmlinux, t->type);
  if (t && btf_is_func_proto(t) && btf_vlen(t) >= 4) {
    const btf_type* arg = btf__type_by_id(vmlinux, btf_params(t)[3].type);
    while (arg && (btf_is_typedef(arg) || btf_is_mod(arg))) arg = btf__type_by_id(vmlinux, arg->type);
    has = arg && (btf_is_enum(arg) || btf_is_enum64(arg));
  }
  btf__free(vmlinux);
  return has;
}

// Does the verifier take BPF_CMPXCHG (5.12+)? An eight-instruction program
// swaps a stack slot; where the kernel refuses it, the claim of a
// connection's slot falls back to a plain store (sock_claim).
bool KernelHasCmpxchg() {
  const bpf_insn insns[] = {
      {.code = BPF_ST | BPF_MEM | BPF_DW, .dst_reg = BPF_REG_10, .off = -8, .imm = 0},
      {.code = BPF_ALU64 | BPF_MOV | BPF_X, .dst_reg = BPF_REG_1, .src_reg = BPF_REG_10},
      {.code = BPF_ALU64 | BPF_ADD | BPF_K, .dst_reg = BPF_REG_1, .imm = -8},
      {.code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0, .imm = 0},
      {.code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_2, .imm = 1},
      {.code = BPF_STX | BPF_ATOMIC | BPF_DW, .dst_reg = BPF_REG_1, .src_reg = BPF_REG_2, .imm = BPF_CMPXCHG},
      {.code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0, .imm = 0},
      {.code = BPF_JMP | BPF_EXIT},
  };
  const int fd = bpf_prog_load(BPF_PROG_TYPE_SOCKET_FILTER, nullptr, "GPL", insns, std::size(insns), nullptr);
  if (fd < 0) {
    // EINVAL is the verifier's "BPF_STX uses reserved fields"; anything else says nothing of the kernel
    if (errno != EINVAL)
      spdlog::warn("probing for BPF_CMPXCHG failed ({}): taking the plain-store build", Errno(errno));
    return false;
  }
  close(fd);
  return true;
}

// Writes every page the hooks will write, before they are attached. A
// guest's fresh kernel pages may be backed by the host only at their first
// write: here a connection slot's first use cost ~10 us in connect4, and
// the ring's first pass ~1 us a metadata request, for as long as it took
// the traffic to reach every page (bench/README.md, 2026-12-03). Returns
// the bytes written, or 0 with *error set.
size_t PrefaultMaps(imdswatch_bpf* skel, std::string* error) {
  size_t bytes = 0;
  const int ncpu = libbpf_num_possible_cpus();
  for (bpf_map* map : {skel->maps.imds_socks, skel->maps.known_cgroups, skel->maps.scratch, skel->maps.drop_counts}) {
    size_t value = bpf_map__value_size(map);
    if (bpf_map__type(map) == BPF_MAP_TYPE_PERCPU_ARRAY) value = (value + 7) / 8 * 8 * std::max(ncpu, 1);
    const std::vector<char> zeros(value);
    for (uint32_t key = 0; key < bpf_map__max_entries(map); key++) {
      if (bpf_map_update_elem(bpf_map__fd(map), &key, zeros.data(), BPF_ANY) != 0) {
        *error = std::string("writing map ") + bpf_map__name(map) + ": " + Errno(errno);
        return 0;
      }
      bytes += value;
    }
  }
  // The ring: imds_prefault_ring reserves and discards a page per record
  // until the ring is full; consuming skips the discarded records and
  // frees it. Done when the producer has passed the ring's end once.
  const int ring_fd = bpf_map__fd(skel->maps.events);
  const size_t ring = bpf_map__max_entries(skel->maps.events);
  const long page = sysconf(_SC_PAGESIZE);
  void* producer = mmap(nullptr, page, PROT_READ, MAP_SHARED, ring_fd, page);
  ring_buffer* reader = ring_buffer__new(ring_fd, [](void*, void*, size_t) { return 0; }, nullptr, nullptr);
  if (producer == MAP_FAILED || !reader) {
    *error = "mapping the ring buffer: " + Errno(errno);
    if (producer != MAP_FAILED) munmap(producer, page);
    ring_buffer__free(reader);
    return 0;
  }
  char packet[64] = {};
  LIBBPF_OPTS(bpf_test_run_opts, run, .data_in = packet, .data_size_in = sizeof(packet), .repeat = 1);
  const auto* producer_pos = static_cast<const volatile uint64_t*>(producer);
  const int prog_fd = bpf_program__fd(skel->progs.imds_prefault_ring);
  // each run writes IMDS_PREFAULT_PAGES_PER_RUN pages, or all but one of a smaller ring
  for (size_t runs = ring / IMDS_PREFAULT_RECORD + 2; *producer_pos < ring && runs > 0; runs--) {
    if (bpf_prog_test_run_opts(prog_fd, &run) != 0) {
      *error = "running imds_prefault_ring: " + Errno(errno);
      break;
    }
    ring_buffer__consume(reader);
  }
  const uint64_t written = *producer_pos;
  ring_buffer__free(reader);
  munmap(producer, page);
  if (written < ring) {
    if (error->empty()) *error = "the ring was written only to " + std::to_string(written) + " bytes";
    return 0;
  }
  return bytes + ring;
}

// The rodata both instances of the object share, and the ring's size.
void Configure(imdswatch_bpf* skel, const ProbeOptions& options, uint32_t ring) {
  auto* rodata = skel->rodata;
  for (size_t i = 0; i < options.endpoints.size(); i++) {
    const Endpoint& ep = options.endpoints[i];
    auto& slot = rodata->endpoints[i];
    std::memcpy(slot.addr, ep.addr, sizeof(slot.addr));
    slot.port = htons(ep.port);
    slot.family = static_cast<__u16>(ep.family);
  }
  rodata->nr_endpoints = static_cast<__u32>(options.endpoints.size());
  FillFilter(options.endpoints, const_cast<imds_filter*>(&rodata->filter));
  // batched: the reader is woken early only when a quarter of the ring waits
  rodata->wakeup_bytes = options.delivery == Delivery::kPerRecord ? 0 : ring / 4;
  bpf_map__set_max_entries(skel->maps.events, ring);
}

// The attached filters, one per hook (imdswatch.bpf.c, "the attached
// programs"). Every endpoint on port 80 (the defaults, ECS, EKS Pod
// Identity): the ones whose other-traffic exit compares the port with an
// immediate; otherwise the *_any ones, which compare it with the watched
// ports. kfree_skb's filter tests the drop reason where its tracepoint
// passes one (tp_btf, 5.17+), and before that the caller's address (raw_tp).
struct Filters {
  bpf_program* connect4;
  bpf_program* connect6;
  bpf_program* sockops;
  bpf_program* egress;
  bpf_program* ingress;
  bpf_program* kfree;  // null: none

  std::vector<bpf_program*> All() const {
    std::vector<bpf_program*> all = {connect4, connect6, sockops, egress, ingress};
    if (kfree) all.push_back(kfree);
    return all;
  }
};

// How kfree_skb is hooked: not at all (--forwarding-drops=false), by the
// BTF tracepoint with its drop reason (5.17+), or by the raw one.
enum class KfreeHook { kNone, kReason, kCaller };

struct FilterChoice {
  bool port80;  // every endpoint is on port 80
  KfreeHook kfree;
};

Filters PickFilters(imdswatch_bpf* skel, FilterChoice choice) {
  auto& p = skel->progs;
  const bool port80 = choice.port80;
  bpf_program* kfree = choice.kfree == KfreeHook::kReason   ? p.imds_kfree_skb
                       : choice.kfree == KfreeHook::kCaller ? p.imds_kfree_raw
                                                            : nullptr;
  return {port80 ? p.imds_connect4 : p.imds_connect4_any, port80 ? p.imds_connect6 : p.imds_connect6_any,
          port80 ? p.imds_sockops : p.imds_sockops_any,   port80 ? p.imds_egress : p.imds_egress_any,
          port80 ? p.imds_ingress : p.imds_ingress_any,   kfree};
}

bool IsFilter(imdswatch_bpf* skel, const bpf_program* prog) {
  for (bool port80 : {true, false})
    for (KfreeHook kfree : {KfreeHook::kReason, KfreeHook::kCaller})
      for (const bpf_program* filter : PickFilters(skel, {port80, kfree}).All())
        if (prog == filter) return true;
  return false;
}

// The ranges the raw_tp filter passes (IMDS_FWD*_PLACEHOLDER): the code of
// ip_forward and ip6_forward. Nothing where either is not found (hidden
// addresses, ipv6 a module not loaded yet, more parts than ranges).
std::optional<std::array<CodeRange, IMDS_FWD_RANGES>> ForwardingCode() {
  std::ifstream kallsyms("/proc/kallsyms");
  const auto code = FunctionCode(kallsyms, {"ip_forward", "ip6_forward"});
  std::vector<CodeRange> parts;
  for (const auto& [name, found] : code) parts.insert(parts.end(), found.begin(), found.end());
  std::array<CodeRange, IMDS_FWD_RANGES> ranges{};
  if (code.size() == 2 && parts.size() <= ranges.size()) {
    std::copy(parts.begin(), parts.end(), ranges.begin());  // from range 0: the filter stops at an empty range 2
    spdlog::info("raw_tp/kfree_skb: only drops called from ip_forward and ip6_forward ({} code ranges) are read",
                 parts.size());
    return ranges;
  }
  spdlog::warn(
      "raw_tp/kfree_skb: ip_forward and ip6_forward not both found in /proc/kallsyms, or in more than {} parts: "
      "every dropped packet's headers will be read (addresses read as zeros without CAP_SYSLOG unless "
      "kptr_restrict=0 and perf_event_paranoid<=1; the DaemonSet grants it with the component "
      "deploy/components/kernel-before-5.17)",
      ranges.size());
  return std::nullopt;
}

// How many pages of code the attached filters' JIT images touch: 1 when
// they were placed together (the kernel packs images first-fit, so a free
// gap left by another program may take one of them).
int FilterCodePages(const Filters& f) {
  std::vector<uint64_t> pages;
  const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  for (const bpf_program* prog : f.All()) {
    uint64_t addr = 0;
    uint32_t lens = 0;
    bpf_prog_info info = {};
    uint32_t len = sizeof(info);
    info.nr_jited_ksyms = 1;
    info.jited_ksyms = reinterpret_cast<uintptr_t>(&addr);
    info.nr_jited_func_lens = 1;
    info.jited_func_lens = reinterpret_cast<uintptr_t>(&lens);
    if (bpf_obj_get_info_by_fd(bpf_program__fd(prog), &info, &len) != 0 || addr == 0) return -1;
    for (uint64_t p = addr / page; p <= (addr + std::max(lens, 1u) - 1) / page; p++)
      if (std::find(pages.begin(), pages.end(), p) == pages.end()) pages.push_back(p);
  }
  return static_cast<int>(pages.size());
}


std::string LoadError(int err) {
  return "loading BPF programs failed: " + Errno(err) +
         (err == -EPERM ? " (missing privileges: CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN are needed)" : "");
}

imdswatch_bpf* OpenConfigured(const ProbeOptions& options, uint32_t ring, std::string* error) {
  imdswatch_bpf* skel = imdswatch_bpf::open();
  if (!skel) {
    *error = "opening the BPF object failed: " + Errno(errno);
    return nullptr;
  }
  Configure(skel, options, ring);
  return skel;
}

// Points `to`'s maps at `from`'s (but for each object's own rodata).
int ReuseMaps(imdswatch_bpf* from, imdswatch_bpf* to) {
  bpf_map* map;
  bpf_object__for_each_map(map, to->obj) {
    if (bpf_map__is_internal(map)) continue;
    const int err = bpf_map__reuse_fd(map, bpf_object__find_map_fd_by_name(from->obj, bpf_map__name(map)));
    if (err) return err;
  }
  return 0;
}

// One instance of the object with only the filters to load, their
// immediates written into their code: the watched addresses' bits
// (IMDS_ADDR_BITS_PLACEHOLDER in imdswatch.bpf.c) in the per-packet and
// per-connect ones, the forwarding code's ranges in raw_tp kfree_skb's.
imdswatch_bpf* OpenFilters(const ProbeOptions& options, uint32_t ring, FilterChoice choice,
                           const std::array<CodeRange, IMDS_FWD_RANGES>& forwarding, std::string* error) {
  imdswatch_bpf* skel = OpenConfigured(options, ring, error);
  if (!skel) return nullptr;
  bpf_program* prog;
  bpf_object__for_each_program(prog, skel->obj) bpf_program__set_autoload(prog, false);
  const std::vector<std::pair<uint64_t, uint64_t>> addr_bits = {
      {IMDS_ADDR_BITS_PLACEHOLDER, WatchedAddrBits(options.endpoints)}};
  const std::vector<std::pair<uint64_t, uint64_t>> forwarding_code = ForwardingImmediates(forwarding);
  const Filters f = PickFilters(skel, choice);
  for (bpf_program* filter : f.All()) {
    bpf_program__set_autoload(filter, true);
    if (filter == skel->progs.imds_kfree_skb) continue;  // the drop reason needs no immediate
    if (!WriteImmediates(filter, filter == skel->progs.imds_kfree_raw ? forwarding_code : addr_bits)) {
      *error = std::string("writing immediates into ") + bpf_program__name(filter) +
               ": a placeholder is not there (a build of the BPF object that does not match this loader?)";
      imdswatch_bpf::destroy(skel);
      return nullptr;
    }
  }
  return skel;
}

// The filters, loaded, with every map. Where their code straddles a page
// (first-fit placement put one into a gap, or at the end of a page), each
// copy is kept while another is loaded, so the gaps it took are not offered
// again; the copy on the fewest pages stays, the others are freed.
imdswatch_bpf* LoadFilters(const ProbeOptions& options, uint32_t ring, FilterChoice choice,
                           const std::array<CodeRange, IMDS_FWD_RANGES>& forwarding, std::string* error) {
  constexpr int kTries = 6;
  std::vector<std::pair<int, imdswatch_bpf*>> copies;  // pages, copy
  while (copies.size() < kTries && (copies.empty() || copies.back().first != 1)) {
    std::string copy_error;
    imdswatch_bpf* skel = OpenFilters(options, ring, choice, forwarding, &copy_error);
    int err = !skel ? -ENOENT : copies.empty() ? 0 : ReuseMaps(copies.front().second, skel);
    if (!err) err = imdswatch_bpf::load(skel);
    if (err) {
      if (skel) imdswatch_bpf::destroy(skel);
      if (copies.empty()) *error = skel ? LoadError(err) : copy_error;
      break;  // another copy only helps the placement: keep the first
    }
    const int pages = FilterCodePages(PickFilters(skel, choice));
    copies.emplace_back(pages > 0 ? pages : INT_MAX, skel);
  }
  if (copies.empty()) return nullptr;
  // the first of the fewest pages; every copy shares the first's maps
  auto best = std::min_element(copies.begin(), copies.end(),
                               [](const auto& a, const auto& b) { return a.first < b.first; });
  for (auto& copy : copies)
    if (copy.second != best->second) imdswatch_bpf::destroy(copy.second);
  if (best->first == INT_MAX)
    spdlog::info("the attached filters' code placement is unknown (no JIT addresses)");
  else
    spdlog::info("the attached filters' code is on {} page(s) (copy {} of {})", best->first,
                 best - copies.begin() + 1, copies.size());
  return best->second;
}

}  // namespace

std::unique_ptr<Probes> Probes::Load(const ProbeOptions& options, std::string* error) {
  libbpf_set_print(LibbpfLog);
  if (options.endpoints.empty() || options.endpoints.size() > IMDS_MAX_ENDPOINTS) {
    *error = "between 1 and " + std::to_string(IMDS_MAX_ENDPOINTS) + " endpoints can be watched";
    return nullptr;
  }
  // The object is loaded twice: the filters alone first, so the kernel
  // places their code together, then the work behind them, which shares
  // the filters' maps.
  std::unique_ptr<Probes> probes(new Probes());
  // a ring buffer must be a power of two pages
  uint32_t ring = 4096;
  while (ring < options.ringbuf_bytes) ring <<= 1;
  const KfreeHook kfree = !options.watch_forwarding                           ? KfreeHook::kNone
                          : !options.forwarding_raw_tp && KfreeSkbHasReason() ? KfreeHook::kReason
                                                                              : KfreeHook::kCaller;
  const FilterChoice choice = {
      std::all_of(options.endpoints.begin(), options.endpoints.end(), [](const Endpoint& ep) { return ep.port == 80; }),
      kfree};
  std::array<CodeRange, IMDS_FWD_RANGES> forwarding{};
  bool every_drop = false;
  if (kfree == KfreeHook::kCaller) {
    const auto code = ForwardingCode();
    every_drop = !code;
    // without the code's ranges, one range of every address: the work then
    // reads each drop's headers, as it did unfiltered
    if (code)
      forwarding = *code;
    else
      forwarding[0] = {0, UINT64_MAX};
  }
  probes->filters_ = LoadFilters(options, ring, choice, forwarding, error);
  if (!probes->filters_) return nullptr;
  const Filters filters = PickFilters(probes->filters_, choice);
  probes->skel_ = OpenConfigured(options, ring, error);
  if (!probes->skel_) return nullptr;
  // The work: everything but the filters, loaded, never attached (tail-call
  // targets); of kfree_skb's, only the one behind the chosen filter.
  auto* progs = &probes->skel_->progs;
  bpf_program* prog;
  bpf_object__for_each_program(prog, probes->skel_->obj) {
    bpf_program__set_autoload(prog, !IsFilter(probes->skel_, prog));
    bpf_program__set_autoattach(prog, false);
  }
  // the connect and sockops work that swap a slot's word with BPF_CMPXCHG, where the kernel has it
  const bool cmpxchg = !options.plain_store_claim && KernelHasCmpxchg();
  if (options.plain_store_claim)
    spdlog::info("connection slots are claimed with a plain store (--connections.plain-store)");
  else if (!cmpxchg)
    spdlog::warn(
        "BPF_CMPXCHG not taken (kernels before 5.12 refuse it): connects on two CPUs at once may, rarely, take one "
        "connection slot, or a close beside an eviction give it back; a connection is then lost after its "
        "connect");
  probes->modes_.push_back({"connection_claim", cmpxchg ? "cmpxchg" : "plain_store"});
  probes->closes_once_ = cmpxchg;
  // sockops reads its socket's shutdown bits (a half-close is not a close) where the kernel lets it
  const bool half_close = libbpf_probe_bpf_helper(BPF_PROG_TYPE_SOCK_OPS, BPF_FUNC_skc_to_tcp_sock, nullptr) == 1;
  if (!half_close)
    spdlog::warn(
        "sockops may not read its socket here (bpf_skc_to_tcp_sock: kernels 5.10+, CAP_PERFMON): a client's "
        "half-close (shutdown(SHUT_WR)) ends its exchange, and the response it still reads is not counted");
  probes->skel_->rodata->half_close_followed = half_close;
  probes->modes_.push_back({"half_close", half_close ? "followed" : "ends_exchange"});
  bpf_program__set_autoload(progs->imds_connect4_work, cmpxchg);
  bpf_program__set_autoload(progs->imds_connect6_work, cmpxchg);
  bpf_program__set_autoload(progs->imds_connect4_work_store, !cmpxchg);
  bpf_program__set_autoload(progs->imds_connect6_work_store, !cmpxchg);
  bpf_program__set_autoload(progs->imds_sockops_work, cmpxchg);
  bpf_program__set_autoload(progs->imds_sockops_work_store, !cmpxchg);
  bpf_program__set_autoload(progs->imds_kfree_skb_work, kfree == KfreeHook::kReason);
  bpf_program__set_autoload(progs->imds_kfree_raw_work, kfree == KfreeHook::kCaller);
  const char* kfree_hook = kfree == KfreeHook::kReason ? "tp_btf/kfree_skb" : "raw_tp/kfree_skb";
  int err = ReuseMaps(probes->filters_, probes->skel_);
  if (!err) err = imdswatch_bpf::load(probes->skel_);
  if (err) {
    *error = LoadError(err);
    return nullptr;
  }
  // key 0: each filter's work (WORK_SLOT), a segment's next window (IMDS_STEP_NEXT)
  auto* maps = &probes->skel_->maps;
  const struct {
    bpf_map* slot;
    bpf_program* prog;
  } tail_calls[] = {
      {maps->connect4_work, cmpxchg ? progs->imds_connect4_work : progs->imds_connect4_work_store},
      {maps->connect6_work, cmpxchg ? progs->imds_connect6_work : progs->imds_connect6_work_store},
      {maps->sockops_work, cmpxchg ? progs->imds_sockops_work : progs->imds_sockops_work_store},
      {maps->egress_work, progs->imds_egress_work},
      {maps->ingress_work, progs->imds_ingress_work},
      {maps->next_egress_window, progs->imds_egress_more},
      {maps->next_ingress_window, progs->imds_ingress_more},
      {maps->kfree_work, kfree == KfreeHook::kReason ? progs->imds_kfree_skb_work : nullptr},
      {maps->kfree_raw_work, kfree == KfreeHook::kCaller ? progs->imds_kfree_raw_work : nullptr},
  };
  for (const auto& call : tail_calls) {
    if (!call.prog) continue;  // the other kfree_skb hook, or none
    const uint32_t key = 0;
    const int prog_fd = bpf_program__fd(call.prog);
    if (bpf_map_update_elem(bpf_map__fd(call.slot), &key, &prog_fd, BPF_ANY) != 0) {
      *error = std::string("filling the program array ") + bpf_map__name(call.slot) + ": " + Errno(errno);
      return nullptr;
    }
  }
  // an optimisation only: without it the first calls pay the first writes
  std::string prefault_error;
  const auto prefault_start = std::chrono::steady_clock::now();
  const size_t prefaulted = PrefaultMaps(probes->skel_, &prefault_error);
  const auto prefault_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - prefault_start);
  if (prefaulted)
    spdlog::info("wrote {} KiB of map memory ahead of the hooks in {:.1f} ms", prefaulted / 1024, prefault_ms.count());
  else
    spdlog::warn("maps not written ahead ({}): the first metadata calls will cost more", prefault_error);
  probes->cgroup_fd_ = open(options.cgroup_root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (probes->cgroup_fd_ < 0) {
    *error = "opening cgroup root " + options.cgroup_root + ": " + Errno(errno);
    return nullptr;
  }
  // The cgroup programs are required: without any one of them a metric would
  // be wrong. The forwarding-drop tracepoint only adds proof to a diagnosis.
  const struct {
    bpf_program* prog;
    const char* hook;
    bool cgroup;
    bool required;
  } table[] = {
      {filters.connect4, "cgroup/connect4", true, true},
      {filters.connect6, "cgroup/connect6", true, true},
      {filters.sockops, "sockops", true, true},
      {filters.egress, "cgroup_skb/egress", true, true},
      {filters.ingress, "cgroup_skb/ingress", true, true},
      {filters.kfree, kfree_hook, false, false},
  };
  for (const auto& entry : table) {
    if (!entry.cgroup && !options.watch_forwarding) continue;
    bpf_link* link = entry.cgroup ? bpf_program__attach_cgroup(entry.prog, probes->cgroup_fd_)
                                  : bpf_program__attach(entry.prog);
    if (!link && !entry.required) {
      spdlog::warn("{} not attached ({}): hop-limit diagnoses will be inferred, not proven", entry.hook,
                   Errno(errno));
      probes->modes_.push_back({"forwarding_drops", "not_attached"});
      continue;
    }
    if (!link) {
      *error = std::string("attaching ") + entry.hook + " to " + options.cgroup_root + " failed: " + Errno(errno);
      return nullptr;  // the destructor detaches what was attached
    }
    probes->links_.push_back(link);
    probes->attached_.push_back(std::string(entry.hook) + ":" + bpf_program__name(entry.prog));
    if (!entry.cgroup)
      probes->modes_.push_back({"forwarding_drops", kfree == KfreeHook::kReason ? "tp_btf"
                                                    : every_drop                ? "raw_tp_every_drop"
                                                                                : "raw_tp_forwarding_code"});
  }
  if (!options.watch_forwarding) probes->modes_.push_back({"forwarding_drops", "off"});
  return probes;
}

void Probes::Detach() {
  for (auto it = links_.rbegin(); it != links_.rend(); ++it) bpf_link__destroy(*it);
  links_.clear();
  attached_.clear();
}

Probes::~Probes() {
  Detach();
  if (skel_) imdswatch_bpf::destroy(skel_);
  if (filters_) imdswatch_bpf::destroy(filters_);
  if (cgroup_fd_ >= 0) close(cgroup_fd_);
}

int Probes::ringbuf_fd() const { return bpf_map__fd(skel_->maps.events); }

void Probes::MarkCgroupKnown(uint64_t cgroup_id) {
  // direct-mapped: this id evicts whichever shared its slot; that one's next connect wakes the agent again
  const uint32_t slot = imds_known_slot(cgroup_id);
  bpf_map__update_elem(skel_->maps.known_cgroups, &slot, sizeof(slot), &cgroup_id, sizeof(cgroup_id), BPF_ANY);
}

std::array<uint64_t, IMDS_DROP__COUNT> Probes::DropCounts() const {
  std::array<uint64_t, IMDS_DROP__COUNT> totals{};
  int ncpu = libbpf_num_possible_cpus();
  if (ncpu <= 0) return totals;
  std::vector<uint64_t> per_cpu(ncpu);
  int fd = bpf_map__fd(skel_->maps.drop_counts);
  for (uint32_t reason = 0; reason < IMDS_DROP__COUNT; reason++) {
    if (bpf_map_lookup_elem(fd, &reason, per_cpu.data()) != 0) continue;
    for (uint64_t v : per_cpu) totals[reason] += v;
  }
  return totals;
}

}  // namespace imdswatch
