// The vocabulary of the product: what a metadata call is, how it ended, and
// who made it. These strings are label values of the exported metrics: keep
// them stable.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace imdswatch {

enum class Call : uint8_t { kToken, kCredentialsList, kCredentials, kMetadata, kDynamic, kUserData, kOther };
enum class Version : uint8_t { kV1, kV2 };
enum class Outcome : uint8_t { kOk, kError, kThrottled, kTimeout, kReset };
enum class ConnOutcome : uint8_t { kEstablished, kRefused, kTimeout, kReset };
enum class Client : uint8_t {
  kBotocore,
  kAwsCli,
  kJavaV1,
  kJavaV2,
  kGoV1,
  kGoV2,
  kJsV2,
  kJsV3,
  kRuby,
  kPhp,
  kDotnet,
  kCpp,
  kCurl,
  kOther,
  kUnknown,  // no User-Agent header at all
};

std::string_view ToString(Call call);
std::string_view ToString(Version version);
std::string_view ToString(Outcome outcome);
std::string_view ToString(ConnOutcome outcome);
std::string_view ToString(Client client);

// Pod identity as exported in labels. Empty namespace/pod/container for
// processes outside any pod; workload then names the process as well as the
// node can (container name, systemd unit, or process name).
struct Workload {
  std::string namespace_name;
  std::string workload;
  std::string pod;
  std::string container;

  bool operator==(const Workload& other) const {
    return namespace_name == other.namespace_name && workload == other.workload && pod == other.pod &&
           container == other.container;
  }
  bool operator<(const Workload& other) const;
};

// One finished metadata request, as the aggregator records it.
struct CallSample {
  Call call = Call::kOther;
  Version version = Version::kV1;
  Client client = Client::kUnknown;
  Outcome outcome = Outcome::kOk;
  uint16_t status = 0;         // HTTP status; 0 when no response arrived
  double duration_seconds = 0;  // request start to response end (or to giving up)
  double ttfb_seconds = 0;      // request start to first response byte; 0 when none
};

// Outcome from an HTTP status: 2xx/3xx ok, 429/503 throttled, other error.
Outcome OutcomeForStatus(uint16_t status);

}  // namespace imdswatch
