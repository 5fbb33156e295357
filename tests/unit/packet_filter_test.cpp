// The filters' view of the endpoints: every watched address passes the
// per-packet bit test however its socket shows it, most others stop there,
// and the bits land in the program's code where the placeholder was.
#include "imdswatch/packet_filter.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <bpf/libbpf.h>

#include <cstring>
#include <set>
#include <string>

#include "imdswatch.skel.h"

namespace imdswatch {
namespace {

Endpoint Parse(const char* text) {
  std::string error;
  auto ep = ParseEndpoint(text, &error);
  EXPECT_TRUE(ep) << text << ": " << error;
  return ep.value_or(Endpoint{});
}

// The per-packet test of imdswatch.bpf.c (skb_addr_maybe): a peer's address
// folded as __sk_buff shows it, v4 as is, v6 (v4-mapped too) words xored.
bool Passes(uint64_t bits, int family, const uint8_t addr[16]) {
  uint32_t w[4];
  std::memcpy(w, addr, sizeof(w));
  const uint32_t folded = family == AF_INET ? w[0] : w[0] ^ w[1] ^ w[2] ^ w[3];
  return (bits >> imds_addr_bit(folded)) & 1;
}

TEST(PacketFilter, EveryWatchedAddressPassesHoweverItsSocketShowsIt) {
  const std::vector<Endpoint> eps = {Parse("169.254.169.254:80"), Parse("[fd00:ec2::254]:80"),
                                     Parse("169.254.170.2:80"), Parse("169.254.170.23:80"),
                                     Parse("[fd00:ec2::23]:80"), Parse("127.0.0.2:80")};
  const uint64_t bits = WatchedAddrBits(eps);
  for (const Endpoint& ep : eps) {
    EXPECT_TRUE(Passes(bits, ep.family, ep.addr)) << ep.ToString();
    if (ep.family != AF_INET) continue;
    uint8_t mapped[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};  // ::ffff:a.b.c.d, a dual-stack socket
    std::memcpy(mapped + 12, ep.addr, 4);
    EXPECT_TRUE(Passes(bits, AF_INET6, mapped)) << "v4-mapped " << ep.ToString();
  }
}

TEST(PacketFilter, MostOtherPeersStopAtTheBit) {
  const uint64_t bits = WatchedAddrBits(DefaultEndpoints());
  EXPECT_EQ(__builtin_popcountll(bits), 3);  // v4, v4-mapped, v6
  // 100,000 other v4 peers and as many v6 ones, spread like real addresses
  // (a linear congruential walk): about 3 in 64 may pass, to the exact test
  int passed = 0, total = 0;
  uint32_t x = 12345;
  for (int i = 0; i < 100000; i++) {
    x = x * 1664525u + 1013904223u;
    uint8_t v4[16] = {};
    std::memcpy(v4, &x, 4);
    passed += Passes(bits, AF_INET, v4);
    uint8_t v6[16] = {0x20, 0x01, 0x0d, 0xb8};
    std::memcpy(v6 + 12, &x, 4);
    passed += Passes(bits, AF_INET6, v6);
    total += 2;
  }
  EXPECT_LT(passed, total / 10) << passed << " of " << total;
  EXPECT_FALSE(Passes(bits, AF_INET, Parse("127.0.0.1:80").addr));
}

TEST(PacketFilter, FillFilterKeepsDistinctPortsAndAddresses) {
  imds_filter f;
  FillFilter({Parse("169.254.169.254:80"), Parse("169.254.169.254:8080"), Parse("[fd00:ec2::254]:80"),
              Parse("[fd00:ec2::254]:80"), Parse("169.254.170.2:80")},
             &f);
  EXPECT_EQ(f.nr_ports, 2u);
  EXPECT_EQ(f.ports[0], htons(80));
  EXPECT_EQ(f.ports[1], htons(8080));
  EXPECT_EQ(f.nr_v4, 2u);
  EXPECT_EQ(f.v4[1], inet_addr("169.254.170.2"));
  EXPECT_EQ(f.nr_v6, 1u);
}

bpf_insn Imm64Lo(uint8_t dst, uint8_t src, uint64_t v) {
  bpf_insn i{};
  i.code = BPF_LD | BPF_IMM | BPF_DW;
  i.dst_reg = dst;
  i.src_reg = src;
  i.imm = static_cast<int32_t>(static_cast<uint32_t>(v));
  return i;
}

bpf_insn Imm64Hi(uint64_t v) {
  bpf_insn i{};
  i.imm = static_cast<int32_t>(static_cast<uint32_t>(v >> 32));
  return i;
}

uint64_t Imm64(const std::vector<bpf_insn>& insns, size_t at) {
  return static_cast<uint32_t>(insns[at].imm) | static_cast<uint64_t>(static_cast<uint32_t>(insns[at + 1].imm)) << 32;
}

TEST(PacketFilter, WriteImm64ReplacesThePlaceholderAndNothingElse) {
  const uint64_t ph = IMDS_ADDR_BITS_PLACEHOLDER, other = 0x1122334455667788ull;
  bpf_insn mov{};
  mov.code = BPF_ALU64 | BPF_MOV | BPF_K;
  mov.imm = static_cast<int32_t>(static_cast<uint32_t>(ph));  // the low half as a plain immediate
  bpf_insn exit{};
  exit.code = BPF_JMP | BPF_EXIT;
  std::vector<bpf_insn> insns = {mov,
                                 Imm64Lo(1, 0, other), Imm64Hi(other),
                                 Imm64Lo(2, BPF_PSEUDO_MAP_VALUE, ph), Imm64Hi(ph),  // a map reference
                                 Imm64Lo(3, 0, ph), Imm64Hi(ph),
                                 exit};
  const std::vector<bpf_insn> before = insns;
  ASSERT_EQ(WriteImm64(insns, ph, 0x82010010000008ull), 1);
  EXPECT_EQ(Imm64(insns, 5), 0x82010010000008ull);
  EXPECT_EQ(insns[5].dst_reg, 3);
  for (size_t i : {0, 1, 2, 3, 4, 7}) EXPECT_EQ(std::memcmp(&insns[i], &before[i], sizeof(bpf_insn)), 0) << i;
  EXPECT_EQ(WriteImm64(insns, ph, 1), 0);  // written once, gone
}

// The object the agent ships: each attached filter carries the placeholder
// (or the loader refuses to start), and no other program does.
TEST(PacketFilter, ThePerPacketProgramsOfTheObjectCarryThePlaceholder) {
  imdswatch_bpf* skel = imdswatch_bpf::open();  // parses the object; nothing is loaded
  ASSERT_NE(skel, nullptr);
  const std::set<std::string> per_packet = {
      "imds_connect4", "imds_connect6", "imds_connect4_any", "imds_connect6_any", "imds_sockops",
      "imds_sockops_any", "imds_egress", "imds_ingress", "imds_egress_any", "imds_ingress_any"};
  size_t seen = 0;
  bpf_program* prog;
  bpf_object__for_each_program(prog, skel->obj) {
    const bpf_insn* code = bpf_program__insns(prog);
    std::vector<bpf_insn> insns(code, code + bpf_program__insn_cnt(prog));
    const int copies = WriteImm64(insns, IMDS_ADDR_BITS_PLACEHOLDER, 0);
    const std::string name = bpf_program__name(prog);
    if (per_packet.count(name)) {
      EXPECT_GE(copies, 1) << name;
      seen++;
    } else {
      EXPECT_EQ(copies, 0) << name;
    }
  }
  EXPECT_EQ(seen, per_packet.size());
  imdswatch_bpf::destroy(skel);
}

// raw_tp kfree_skb's filter carries each of the forwarding code's range
// placeholders, and no other program carries any.
TEST(PacketFilter, TheRawDropFilterCarriesTheForwardingRangesPlaceholders) {
  imdswatch_bpf* skel = imdswatch_bpf::open();
  ASSERT_NE(skel, nullptr);
  const uint64_t placeholders[] = {
      IMDS_FWD0_START_PLACEHOLDER, IMDS_FWD0_SIZE_PLACEHOLDER, IMDS_FWD1_START_PLACEHOLDER, IMDS_FWD1_SIZE_PLACEHOLDER,
      IMDS_FWD2_START_PLACEHOLDER, IMDS_FWD2_SIZE_PLACEHOLDER, IMDS_FWD3_START_PLACEHOLDER, IMDS_FWD3_SIZE_PLACEHOLDER};
  bpf_program* prog;
  bpf_object__for_each_program(prog, skel->obj) {
    const bpf_insn* code = bpf_program__insns(prog);
    std::vector<bpf_insn> insns(code, code + bpf_program__insn_cnt(prog));
    const std::string name = bpf_program__name(prog);
    for (uint64_t placeholder : placeholders) {
      const int copies = WriteImm64(insns, placeholder, 0);
      if (name == "imds_kfree_raw")
        EXPECT_GE(copies, 1) << std::hex << placeholder;
      else
        EXPECT_EQ(copies, 0) << name;
    }
  }
  imdswatch_bpf::destroy(skel);
}

}  // namespace
}  // namespace imdswatch
