// Where kernel functions' code lies, read from /proc/kallsyms. The raw_tp
// kfree_skb filter (kernels before 5.17) tells a forwarding drop from the
// node's other drops by the address kfree_skb was called from.
#pragma once

#include <cstdint>
#include <istream>
#include <map>
#include <string>
#include <vector>

namespace imdswatch {

struct CodeRange {
  uint64_t start = 0;
  uint64_t size = 0;
};

// For each of `names` that the table has: the code of the function and of
// the parts a compiler split off it ("ip_forward.cold", "ip_forward.part.0"),
// each from its address to the next text symbol's. A name is missing when
// the table lacks it, or when addresses read as zero (kptr_restrict, or a
// reader without CAP_SYSLOG).
std::map<std::string, std::vector<CodeRange>> FunctionCode(std::istream& kallsyms,
                                                           const std::vector<std::string>& names);

}  // namespace imdswatch
