// Metadata endpoints the kernel side watches: parsed from "--endpoint"
// values such as 169.254.169.254:80 or [fd00:ec2::254]:80.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace imdswatch {

struct Endpoint {
  int family = 0;             // AF_INET or AF_INET6
  uint8_t addr[16] = {};      // network byte order; IPv4 in the first 4 bytes
  uint16_t port = 0;          // host byte order
  std::string ToString() const;
};

// Parses "ADDR:PORT" or "[V6ADDR]:PORT"; nullopt with a reason in *error otherwise.
std::optional<Endpoint> ParseEndpoint(std::string_view text, std::string* error);

// 169.254.169.254:80 and [fd00:ec2::254]:80.
std::vector<Endpoint> DefaultEndpoints();

}  // namespace imdswatch
