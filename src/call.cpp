#include "imdswatch/call.h"

#include <tuple>

namespace imdswatch {

std::string_view ToString(Call call) {
  switch (call) {
    case Call::kToken: return "token";
    case Call::kCredentialsList: return "credentials_list";
    case Call::kCredentials: return "credentials";
    case Call::kMetadata: return "metadata";
    case Call::kDynamic: return "dynamic";
    case Call::kUserData: return "user_data";
    case Call::kOther: break;
  }
  return "other";
}

std::string_view ToString(Version version) { return version == Version::kV2 ? "v2" : "v1"; }

std::string_view ToString(Outcome outcome) {
  switch (outcome) {
    case Outcome::kOk: return "ok";
    case Outcome::kError: return "error";
    case Outcome::kThrottled: return "throttled";
    case Outcome::kTimeout: return "timeout";
    case Outcome::kReset: return "reset";
  }
  return "error";
}

std::string_view ToString(ConnOutcome outcome) {
  switch (outcome) {
    case ConnOutcome::kEstablished: return "established";
    case ConnOutcome::kRefused: return "refused";
    case ConnOutcome::kTimeout: return "timeout";
    case ConnOutcome::kReset: return "reset";
  }
  return "reset";
}

std::string_view ToString(Client client) {
  switch (client) {
    case Client::kBotocore: return "botocore";
    case Client::kAwsCli: return "aws-cli";
    case Client::kJavaV1: return "aws-sdk-java-v1";
    case Client::kJavaV2: return "aws-sdk-java-v2";
    case Client::kGoV1: return "aws-sdk-go";
    case Client::kGoV2: return "aws-sdk-go-v2";
    case Client::kJsV2: return "aws-sdk-js-v2";
    case Client::kJsV3: return "aws-sdk-js-v3";
    case Client::kRuby: return "aws-sdk-ruby";
    case Client::kPhp: return "aws-sdk-php";
    case Client::kDotnet: return "aws-sdk-dotnet";
    case Client::kCpp: return "aws-sdk-cpp";
    case Client::kCurl: return "curl";
    case Client::kOther: return "other";
    case Client::kUnknown: break;
  }
  return "unknown";
}

bool Workload::operator<(const Workload& other) const {
  return std::tie(namespace_name, workload, pod, container) <
         std::tie(other.namespace_name, other.workload, other.pod, other.container);
}

Outcome OutcomeForStatus(uint16_t status) {
  if (status == 429 || status == 503) return Outcome::kThrottled;
  if (status >= 200 && status < 400) return Outcome::kOk;
  return Outcome::kError;
}

}  // namespace imdswatch
