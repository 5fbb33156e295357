#include "imdswatch/endpoint.h"

#include <arpa/inet.h>
#include <sys/socket.h>

#include <charconv>
#include <cstring>

namespace imdswatch {

std::string Endpoint::ToString() const {
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(family, addr, buf, sizeof(buf));
  if (family == AF_INET6) return "[" + std::string(buf) + "]:" + std::to_string(port);
  return std::string(buf) + ":" + std::to_string(port);
}

std::optional<Endpoint> ParseEndpoint(std::string_view text, std::string* error) {
  Endpoint ep;
  std::string host;
  std::string_view port_text;
  if (!text.empty() && text.front() == '[') {
    auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      *error = "expected [IPV6]:PORT";
      return std::nullopt;
    }
    host = std::string(text.substr(1, close - 1));
    port_text = text.substr(close + 2);
    ep.family = AF_INET6;
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string_view::npos) {
      *error = "expected ADDR:PORT";
      return std::nullopt;
    }
    host = std::string(text.substr(0, colon));
    port_text = text.substr(colon + 1);
    ep.family = AF_INET;
  }
  if (inet_pton(ep.family, host.c_str(), ep.addr) != 1) {
    *error = "'" + host + "' is not an IP address";
    return std::nullopt;
  }
  unsigned port = 0;
  auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc() || end != port_text.data() + port_text.size() || port == 0 || port > 65535) {
    *error = "'" + std::string(port_text) + "' is not a port (1-65535)";
    return std::nullopt;
  }
  ep.port = static_cast<uint16_t>(port);
  return ep;
}

std::vector<Endpoint> DefaultEndpoints() {
  std::string unused;
  return {*ParseEndpoint("169.254.169.254:80", &unused), *ParseEndpoint("[fd00:ec2::254]:80", &unused)};
}

}  // namespace imdswatch
