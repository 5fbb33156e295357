#include "imdswatch/kernel_symbols.h"

#include <algorithm>
#include <sstream>

namespace imdswatch {

namespace {

bool IsText(char type) { return type == 't' || type == 'T'; }

// "ip_forward" and "ip_forward.cold.12" are parts of ip_forward.
bool IsPartOf(const std::string& symbol, const std::string& function) {
  return symbol.compare(0, function.size(), function) == 0 &&
         (symbol.size() == function.size() || symbol[function.size()] == '.');
}

}  // namespace

std::map<std::string, std::vector<CodeRange>> FunctionCode(std::istream& kallsyms,
                                                           const std::vector<std::string>& names) {
  std::vector<uint64_t> text;                           // every text symbol's address: where a function ends
  std::vector<std::pair<std::string, uint64_t>> parts;  // requested name, start
  std::string line;
  while (std::getline(kallsyms, line)) {
    std::istringstream fields(line);
    std::string addr, type, symbol;
    if (!(fields >> addr >> type >> symbol) || type.size() != 1 || !IsText(type[0])) continue;
    uint64_t start = 0;
    try {
      start = std::stoull(addr, nullptr, 16);
    } catch (const std::exception&) {
      continue;
    }
    if (start == 0) continue;  // hidden addresses
    text.push_back(start);
    for (const std::string& name : names)
      if (IsPartOf(symbol, name)) parts.emplace_back(name, start);
  }
  std::sort(text.begin(), text.end());
  std::map<std::string, std::vector<CodeRange>> code;
  for (const auto& [name, start] : parts) {
    auto next = std::upper_bound(text.begin(), text.end(), start);
    if (next == text.end()) continue;  // the last symbol: its end is unknown
    code[name].push_back({start, *next - start});
  }
  return code;
}

}  // namespace imdswatch
