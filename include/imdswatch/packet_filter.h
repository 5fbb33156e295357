// What the kernel's filters know, prepared by the loader before load: the
// watched endpoints' distinct ports and addresses (.rodata), the addresses'
// bits, written into the per-packet programs' code as an immediate, and the
// forwarding paths' code ranges, written into raw_tp kfree_skb's.
#pragma once

#include <linux/bpf.h>

#include <array>
#include <cstdint>
#include <utility>
#include <vector>

#include "imdswatch.h"
#include "imdswatch/endpoint.h"
#include "imdswatch/kernel_symbols.h"

struct bpf_program;

namespace imdswatch {

// Distinct ports and addresses per family, in the order first seen.
void FillFilter(const std::vector<Endpoint>& endpoints, imds_filter* filter);

// One bit (imds_addr_bit) per watched address as a packet's peer can show
// it: v4, v4-mapped (a dual-stack socket), v6.
uint64_t WatchedAddrBits(const std::vector<Endpoint>& endpoints);

// Writes value over every ld_imm64 of placeholder (a plain constant, not a
// map or BTF reference); returns how many it wrote.
int WriteImm64(std::vector<bpf_insn>& insns, uint64_t placeholder, uint64_t value);

// Writes each value over its placeholder (WriteImm64) in prog's code, before
// load; false if one is missing.
bool WriteImmediates(bpf_program* prog, const std::vector<std::pair<uint64_t, uint64_t>>& placeholder_values);

// (placeholder, value) of each IMDS_FWD*_PLACEHOLDER for these ranges. The
// filter stops at an empty range 2, so used ranges come first.
std::vector<std::pair<uint64_t, uint64_t>> ForwardingImmediates(const std::array<CodeRange, IMDS_FWD_RANGES>& ranges);

}  // namespace imdswatch
