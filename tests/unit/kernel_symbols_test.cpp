// The forwarding paths' code as the raw_tp kfree_skb filter gets it: each
// function and its split-off parts, ending where the next text symbol starts.
#include "imdswatch/kernel_symbols.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

namespace imdswatch {
namespace {

// A slice of a real table (6.18, unsorted as modules make it), plus parts a
// compiler could have split off.
const char* kTable =
    "ffffffff8204c780 T ip_forward\n"
    "ffffffff8204cf00 t ip_forward_finish\n"
    "ffffffff8204c000 T ip_forward_options\n"
    "ffffffff8204c600 D ip_forward_data\n"  // not text: no end of a function
    "ffffffff81200300 t ip_forward.cold\n"
    "ffffffff81200380 t calibrate_delay.cold\n"
    "ffffffffc0a01000 t ip6_forward\t[ipv6]\n"
    "ffffffffc0a01b40 t ip6_forward_finish\t[ipv6]\n"
    "ffffffff8204c780 T ip_forward_alias\n";  // an alias at the same address ends nothing

TEST(KernelSymbols, EachFunctionAndItsPartsEndWhereTheNextTextSymbolStarts) {
  std::istringstream table(kTable);
  const auto code = FunctionCode(table, {"ip_forward", "ip6_forward"});
  ASSERT_EQ(code.size(), 2u);
  const auto& v4 = code.at("ip_forward");
  ASSERT_EQ(v4.size(), 2u);
  EXPECT_EQ(v4[0].start, 0xffffffff8204c780ull);
  EXPECT_EQ(v4[0].size, 0x780u);  // up to ip_forward_finish; ip_forward_data is not text
  EXPECT_EQ(v4[1].start, 0xffffffff81200300ull);
  EXPECT_EQ(v4[1].size, 0x80u);
  const auto& v6 = code.at("ip6_forward");
  ASSERT_EQ(v6.size(), 1u);
  EXPECT_EQ(v6[0].start, 0xffffffffc0a01000ull);  // a module's symbol
  EXPECT_EQ(v6[0].size, 0xb40u);
}

TEST(KernelSymbols, APrefixOfAnotherNameIsNotAPart) {
  std::istringstream table(
      "ffffffff8204c000 T ip_forward_options\nffffffff8204c100 T ip_forwarded\n"
      "ffffffff8204c200 T ip_forward.part.0\nffffffff8204c300 T next\n");
  const auto code = FunctionCode(table, {"ip_forward"});
  ASSERT_EQ(code.count("ip_forward"), 1u);
  ASSERT_EQ(code.at("ip_forward").size(), 1u);
  EXPECT_EQ(code.at("ip_forward")[0].start, 0xffffffff8204c200ull);
  EXPECT_EQ(code.at("ip_forward")[0].size, 0x100u);
}

TEST(KernelSymbols, HiddenAddressesAndTheLastSymbolGiveNothing) {
  // what a reader without CAP_SYSLOG sees under kptr_restrict
  std::istringstream hidden("0000000000000000 T ip_forward\n0000000000000000 T ip_forward_finish\n");
  EXPECT_TRUE(FunctionCode(hidden, {"ip_forward"}).empty());
  std::istringstream last("ffffffff8204c000 T other\nffffffff8204c780 T ip_forward\n");
  EXPECT_TRUE(FunctionCode(last, {"ip_forward"}).empty());
  std::istringstream junk("not a table\nzz T ip_forward\n\nffffffff8204c780 T\n");
  EXPECT_TRUE(FunctionCode(junk, {"ip_forward"}).empty());
}

// The running kernel's own table: the loader's source (root reads addresses).
TEST(KernelSymbols, ThisKernelHasBothForwardingFunctions) {
  std::ifstream kallsyms("/proc/kallsyms");
  const auto code = FunctionCode(kallsyms, {"ip_forward", "ip6_forward"});
  if (code.empty()) GTEST_SKIP() << "addresses hidden from this reader";
  ASSERT_EQ(code.size(), 2u);
  for (const auto& [name, parts] : code)
    for (const CodeRange& part : parts) {
      EXPECT_GT(part.size, 0u) << name;
      EXPECT_LT(part.size, 64u * 1024) << name;  // a function, not a section
    }
}

}  // namespace
}  // namespace imdswatch
