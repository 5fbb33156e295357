// ParseEndpoint (include/imdswatch/endpoint.h): the --endpoint flag's value.
//
// Input: the text.
// Invariants: a result or a non-empty reason, never both; a result has a
// family, a port 1-65535, and prints to text that parses back to itself.
#include <sys/socket.h>

#include <cstdint>
#include <cstring>
#include <string>

#include "fuzz_common.h"
#include "imdswatch/endpoint.h"

using imdswatch::ParseEndpoint;
using imdswatch::fuzz::Printable;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  std::string error;
  const auto ep = ParseEndpoint(text, &error);
  if (!ep) {
    FUZZ_CHECK(!error.empty(), "refused %s without a reason", Printable(text).c_str());
    return 0;
  }
  FUZZ_CHECK(ep->family == AF_INET || ep->family == AF_INET6, "family %d", ep->family);
  FUZZ_CHECK(ep->port >= 1, "port 0 from %s", Printable(text).c_str());
  if (ep->family == AF_INET)
    for (int i = 4; i < 16; i++) FUZZ_CHECK(ep->addr[i] == 0, "IPv4 address with bytes past 4");
  const std::string printed = ep->ToString();
  std::string again_error;
  const auto again = ParseEndpoint(printed, &again_error);
  FUZZ_CHECK(again && again->family == ep->family && again->port == ep->port &&
                 std::memcmp(again->addr, ep->addr, sizeof(ep->addr)) == 0,
             "%s printed as %s, which parses %s", Printable(text).c_str(), printed.c_str(),
             again ? "differently" : again_error.c_str());
  return 0;
}
