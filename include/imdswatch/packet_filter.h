// What the kernel's filters know of the watched endpoints, prepared by the
// loader before load: the distinct ports and addresses (.rodata), and the
// addresses' bits, written into the per-packet programs' code as an immediate.
#pragma once

#include <linux/bpf.h>

#include <cstdint>
#include <vector>

#include "imdswatch.h"
#include "imdswatch/endpoint.h"

namespace imdswatch {

// Distinct ports and addresses per family, in the order first seen.
void FillFilter(const std::vector<Endpoint>& endpoints, imds_filter* filter);

// One bit (imds_addr_bit) per watched address as a packet's peer can show
// it: v4, v4-mapped (a dual-stack socket), v6.
uint64_t WatchedAddrBits(const std::vector<Endpoint>& endpoints);

// Writes value over every ld_imm64 of placeholder (a plain constant, not a
// map or BTF reference); returns how many it wrote.
int WriteImm64(std::vector<bpf_insn>& insns, uint64_t placeholder, uint64_t value);

}  // namespace imdswatch
