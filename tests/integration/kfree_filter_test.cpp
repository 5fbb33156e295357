// raw_tp kfree_skb's filter (kernels before 5.17), loaded with chosen code
// ranges and test-run on chosen caller addresses: every range counts, an
// empty range 2 ends the test, and one range of every address lets all through.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "imdswatch.h"  // before the skeleton, which names its types
#include "imdswatch.skel.h"
#include "imdswatch/packet_filter.h"
#include "integration/harness.h"

namespace imdswatch {
namespace {

constexpr int kTurnedAway = 1;  // the filter's own exit (2: its tail call failed)
constexpr int kToTheWork = 0;   // the work's exit on a test run's null skb

class RawDropFilter : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why = testing::KernelTestsUnavailable();
    if (why.empty()) return;
    if (std::getenv("CI") && std::string(std::getenv("CI")) == "true") FAIL() << "cannot run in CI: " << why;
    GTEST_SKIP() << why;
  }

  void TearDown() override { imdswatch_bpf::destroy(skel_); }

  // The filter and its work alone, the ranges written in, the slot filled.
  void Load(const std::array<CodeRange, IMDS_FWD_RANGES>& ranges) {
    skel_ = imdswatch_bpf::open();
    ASSERT_NE(skel_, nullptr);
    bpf_program* prog;
    bpf_object__for_each_program(prog, skel_->obj) bpf_program__set_autoload(prog, false);
    bpf_program* filter = skel_->progs.imds_kfree_raw;
    bpf_program__set_autoload(filter, true);
    bpf_program__set_autoload(skel_->progs.imds_kfree_raw_work, true);
    ASSERT_TRUE(WriteImmediates(filter, ForwardingImmediates(ranges)));  // each placeholder found and written
    ASSERT_EQ(imdswatch_bpf::load(skel_), 0);
    const uint32_t key = 0;
    const int work = bpf_program__fd(skel_->progs.imds_kfree_raw_work);
    ASSERT_EQ(bpf_map_update_elem(bpf_map__fd(skel_->maps.kfree_raw_work), &key, &work, BPF_ANY), 0);
  }

  // The filter's return for a drop called from `location` (no skb).
  int Run(uint64_t location) {
    uint64_t args[2] = {0, location};
    LIBBPF_OPTS(bpf_test_run_opts, opts, .ctx_in = args, .ctx_size_in = sizeof(args));
    EXPECT_EQ(bpf_prog_test_run_opts(bpf_program__fd(skel_->progs.imds_kfree_raw), &opts), 0);
    return static_cast<int>(opts.retval);
  }

  imdswatch_bpf* skel_ = nullptr;
};

TEST_F(RawDropFilter, OnlyCallersInsideTheTwoRangesReachTheWork) {
  Load({{{0xffffffff82001000, 0x100}, {0xffffffffc0a00000, 0x200}, {}, {}}});
  EXPECT_EQ(Run(0xffffffff82001000), kToTheWork);  // the first byte
  EXPECT_EQ(Run(0xffffffff820010ff), kToTheWork);  // the last
  EXPECT_EQ(Run(0xffffffffc0a001f0), kToTheWork);  // a module's function
  EXPECT_EQ(Run(0xffffffff82000fff), kTurnedAway);
  EXPECT_EQ(Run(0xffffffff82001100), kTurnedAway);
  EXPECT_EQ(Run(0xffffffffc0a00200), kTurnedAway);
  EXPECT_EQ(Run(0), kTurnedAway);
}

TEST_F(RawDropFilter, SplitOffPartsInRangesTwoAndThreeReachTheWork) {
  Load({{{0xffffffff82001000, 0x100},
         {0xffffffff82100000, 0x100},
         {0xffffffff81200300, 0x80},
         {0xffffffff81200400, 0x40}}});
  EXPECT_EQ(Run(0xffffffff81200310), kToTheWork);  // ip_forward.cold, say
  EXPECT_EQ(Run(0xffffffff8120043f), kToTheWork);
  EXPECT_EQ(Run(0xffffffff81200380), kTurnedAway);
  EXPECT_EQ(Run(0xffffffff81200440), kTurnedAway);
}

// The loader fills ranges from 0; a range 3 behind an empty range 2 is never
// looked at, which is what keeps most kernels' drops at two ranges' compares.
TEST_F(RawDropFilter, AnEmptyRangeTwoEndsTheTest) {
  Load({{{0xffffffff82001000, 0x100}, {0xffffffff82100000, 0x100}, {}, {0xffffffff81200400, 0x40}}});
  EXPECT_EQ(Run(0xffffffff81200410), kTurnedAway);
}

TEST_F(RawDropFilter, OneRangeOfEveryAddressLetsEveryDropThrough) {
  Load({{{0, UINT64_MAX}, {}, {}, {}}});  // the loader's choice when the addresses are hidden
  for (uint64_t location : {0ull, 0xffffffff81000000ull, 0xffffffffc0a00000ull})
    EXPECT_EQ(Run(location), kToTheWork) << std::hex << location;
}

}  // namespace
}  // namespace imdswatch
