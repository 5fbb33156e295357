#include "imdswatch/packet_filter.h"

#include <arpa/inet.h>
#include <bpf/libbpf.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>

namespace imdswatch {

void FillFilter(const std::vector<Endpoint>& endpoints, imds_filter* f) {
  *f = {};
  for (const Endpoint& ep : endpoints) {
    const uint16_t port = htons(ep.port);
    if (std::find(f->ports, f->ports + f->nr_ports, port) == f->ports + f->nr_ports) f->ports[f->nr_ports++] = port;
    if (ep.family == AF_INET) {
      uint32_t a;
      std::memcpy(&a, ep.addr, sizeof(a));
      if (std::find(f->v4, f->v4 + f->nr_v4, a) == f->v4 + f->nr_v4) f->v4[f->nr_v4++] = a;
    } else {
      bool seen = false;
      for (uint32_t i = 0; i < f->nr_v6; i++) seen = seen || std::memcmp(f->v6[i], ep.addr, 16) == 0;
      if (!seen) std::memcpy(f->v6[f->nr_v6++], ep.addr, 16);
    }
  }
}

uint64_t WatchedAddrBits(const std::vector<Endpoint>& endpoints) {
  uint64_t bits = 0;
  for (const Endpoint& ep : endpoints) {
    uint32_t w[4];
    std::memcpy(w, ep.addr, sizeof(w));
    if (ep.family == AF_INET) {
      bits |= 1ull << imds_addr_bit(w[0]);
      bits |= 1ull << imds_addr_bit(w[0] ^ htonl(0xffff));  // ::ffff:a.b.c.d folded
    } else {
      bits |= 1ull << imds_addr_bit(w[0] ^ w[1] ^ w[2] ^ w[3]);
    }
  }
  return bits;
}

int WriteImm64(std::vector<bpf_insn>& insns, uint64_t placeholder, uint64_t value) {
  int written = 0;
  for (size_t i = 0; i + 1 < insns.size(); i++) {
    bpf_insn& lo = insns[i];
    if (lo.code != (BPF_LD | BPF_IMM | BPF_DW)) continue;
    bpf_insn& hi = insns[i + 1];
    const uint64_t imm = static_cast<uint32_t>(lo.imm) | static_cast<uint64_t>(static_cast<uint32_t>(hi.imm)) << 32;
    if (lo.src_reg == 0 && imm == placeholder) {
      lo.imm = static_cast<int32_t>(static_cast<uint32_t>(value));
      hi.imm = static_cast<int32_t>(static_cast<uint32_t>(value >> 32));
      written++;
    }
    i++;  // an ld_imm64 is two instructions
  }
  return written;
}

bool WriteImmediates(bpf_program* prog, const std::vector<std::pair<uint64_t, uint64_t>>& placeholder_values) {
  const bpf_insn* code = bpf_program__insns(prog);
  std::vector<bpf_insn> insns(code, code + bpf_program__insn_cnt(prog));
  // every copy: a compiler may duplicate the block that holds one
  for (const auto& [placeholder, value] : placeholder_values)
    if (WriteImm64(insns, placeholder, value) < 1) return false;
  return bpf_program__set_insns(prog, insns.data(), insns.size()) == 0;
}

std::vector<std::pair<uint64_t, uint64_t>> ForwardingImmediates(const std::array<CodeRange, IMDS_FWD_RANGES>& r) {
  return {{IMDS_FWD0_START_PLACEHOLDER, r[0].start}, {IMDS_FWD0_SIZE_PLACEHOLDER, r[0].size},
          {IMDS_FWD1_START_PLACEHOLDER, r[1].start}, {IMDS_FWD1_SIZE_PLACEHOLDER, r[1].size},
          {IMDS_FWD2_START_PLACEHOLDER, r[2].start}, {IMDS_FWD2_SIZE_PLACEHOLDER, r[2].size},
          {IMDS_FWD3_START_PLACEHOLDER, r[3].start}, {IMDS_FWD3_SIZE_PLACEHOLDER, r[3].size}};
}

}  // namespace imdswatch
