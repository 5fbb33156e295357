#include "imdswatch/classify.h"

#include <array>

namespace imdswatch {

namespace {

// The first few segments of a request target, with empty segments (from
// duplicate or trailing slashes) skipped. Views into the caller's string.
struct Segments {
  static constexpr size_t kKept = 6;
  std::array<std::string_view, kKept> seg;
  size_t count = 0;  // all non-empty segments, including those not kept

  std::string_view operator[](size_t i) const { return i < kKept && i < count ? seg[i] : std::string_view(); }
};

char Lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

// `lower` must be lower case.
bool EqualsNoCase(std::string_view s, std::string_view lower) {
  if (s.size() != lower.size()) return false;
  for (size_t i = 0; i < s.size(); i++)
    if (Lower(s[i]) != lower[i]) return false;
  return true;
}

bool StartsWithNoCase(std::string_view s, std::string_view lower) {
  return s.size() >= lower.size() && EqualsNoCase(s.substr(0, lower.size()), lower);
}

// Path of a request target: no scheme and authority, no query, no fragment.
std::string_view PathOf(std::string_view target) {
  for (std::string_view scheme : {std::string_view("http://"), std::string_view("https://")}) {
    if (StartsWithNoCase(target, scheme)) {
      target.remove_prefix(scheme.size());
      const size_t slash = target.find('/');
      target = slash == std::string_view::npos ? std::string_view() : target.substr(slash);
      break;
    }
  }
  const size_t end = target.find_first_of("?#");
  return end == std::string_view::npos ? target : target.substr(0, end);
}

Segments Split(std::string_view target) {
  Segments out;
  const std::string_view path = PathOf(target);
  size_t i = 0;
  while (i < path.size()) {
    if (path[i] == '/') {
      i++;
      continue;
    }
    size_t end = path.find('/', i);
    if (end == std::string_view::npos) end = path.size();
    if (out.count < Segments::kKept) out.seg[out.count] = path.substr(i, end - i);
    out.count++;
    i = end;
  }
  return out;
}

// "latest", or a dated API version ("2021-03-23") or "1.0".
bool IsApiVersion(std::string_view seg) {
  if (seg == "latest") return true;
  if (seg.empty() || seg[0] < '0' || seg[0] > '9') return false;
  for (char c : seg)
    if (!((c >= '0' && c <= '9') || c == '-' || c == '.')) return false;
  return true;
}

bool IsImdsCredentials(const Segments& s) {
  return s.count >= 5 && IsApiVersion(s[0]) && s[1] == "meta-data" && s[2] == "iam" &&
         s[3] == "security-credentials";
}

// Major version number at the start of a product version ("2.20.162" -> 2);
// -1 when it does not start with a digit.
int Major(std::string_view version) {
  int major = -1;
  for (char c : version) {
    if (c < '0' || c > '9') break;
    major = (major < 0 ? 0 : major * 10) + (c - '0');
    if (major > 1000) break;
  }
  return major;
}

// An SDK product decides at once; a leading curl/ only counts when no SDK
// product follows (PHP's Guzzle puts "curl/" after "aws-sdk-php/").
enum Rank { kNoMatch = 0, kTool = 1, kSdk = 2 };

struct Match {
  Client client = Client::kOther;
  Rank rank = kNoMatch;
};

Match MatchProduct(std::string_view product, std::string_view version, bool first) {
  // aws-cli v1 appends "botocore/<v>" after its own product: the first SDK product wins
  if (EqualsNoCase(product, "aws-cli")) return {Client::kAwsCli, kSdk};
  if (EqualsNoCase(product, "botocore") || EqualsNoCase(product, "boto3")) return {Client::kBotocore, kSdk};
  if (EqualsNoCase(product, "aws-sdk-java")) {
    // v1 fills in "unknown-version" when its version file is missing
    const int major = Major(version);
    return {major == 1 || major < 0 ? Client::kJavaV1 : Client::kJavaV2, kSdk};
  }
  if (EqualsNoCase(product, "aws-sdk-go")) return {Client::kGoV1, kSdk};
  if (EqualsNoCase(product, "aws-sdk-go-v2")) return {Client::kGoV2, kSdk};
  // "aws-sdk-nodejs-v3-@aws-sdk/client-s3/3.0.0" (early v3), "aws-sdk-js-v3..."
  if (StartsWithNoCase(product, "aws-sdk-nodejs-v3") || StartsWithNoCase(product, "aws-sdk-js-v3"))
    return {Client::kJsV3, kSdk};
  if (EqualsNoCase(product, "aws-sdk-nodejs")) return {Client::kJsV2, kSdk};
  if (EqualsNoCase(product, "aws-sdk-js")) return {Major(version) == 2 ? Client::kJsV2 : Client::kJsV3, kSdk};
  if (StartsWithNoCase(product, "aws-sdk-ruby")) return {Client::kRuby, kSdk};  // ruby2, ruby3
  if (EqualsNoCase(product, "aws-sdk-php")) return {Client::kPhp, kSdk};
  if (StartsWithNoCase(product, "aws-sdk-dotnet")) return {Client::kDotnet, kSdk};  // -coreclr, -45, -core
  if (EqualsNoCase(product, "aws-sdk-cpp")) return {Client::kCpp, kSdk};
  if (first && EqualsNoCase(product, "curl")) return {Client::kCurl, kTool};
  return {};
}

bool IsSeparator(char c) {
  switch (c) {
    case ' ': case '\t': case ',': case ';': case '(': case ')': case '[': case ']': return true;
  }
  return false;
}

}  // namespace

Call ClassifyCall(std::string_view method, std::string_view path) {
  const Segments s = Split(path);
  if (s.count == 0) return Call::kOther;
  if (IsApiVersion(s[0])) {
    const std::string_view area = s[1];
    if (area == "api") return s.count == 3 && s[2] == "token" && method == "PUT" ? Call::kToken : Call::kOther;
    if (area == "meta-data") {
      if (s.count >= 4 && s[2] == "iam" && s[3] == "security-credentials")
        return s.count == 4 ? Call::kCredentialsList : Call::kCredentials;
      return Call::kMetadata;
    }
    if (area == "dynamic") return Call::kDynamic;
    if (area == "user-data") return Call::kUserData;
    return Call::kOther;
  }
  // Container credential endpoints: ECS (169.254.170.2, AWS_CONTAINER_CREDENTIALS_RELATIVE_URI)
  // and the EKS Pod Identity Agent (169.254.170.23).
  if (s[0] == "v2" && s[1] == "credentials" && s.count == 3) return Call::kCredentials;
  if (s[0] == "v1" && s[1] == "credentials" && s.count == 2) return Call::kCredentials;
  return Call::kOther;
}

std::string RoleFromPath(std::string_view path) {
  const Segments s = Split(path);
  if (!IsImdsCredentials(s)) return {};
  const std::string_view role = s[4].substr(0, kMaxRoleLength);
  std::string out(role);
  for (char& c : out)
    if (c < 0x21 || c > 0x7e) c = '_';
  return out;
}

Version ClassifyVersion(Call call, bool has_token_header) {
  return call == Call::kToken || has_token_header ? Version::kV2 : Version::kV1;
}

Client ClassifyUserAgent(std::string_view ua, bool present) {
  if (!present) return Client::kUnknown;
  Match best;
  bool first = true;
  size_t i = 0;
  while (i < ua.size()) {
    if (IsSeparator(ua[i])) {
      i++;
      continue;
    }
    size_t end = i;
    while (end < ua.size() && !IsSeparator(ua[end])) end++;
    const std::string_view token = ua.substr(i, end - i);
    const size_t slash = token.find('/');
    // a product without "/version" may be a cut-off longer name ("aws-sdk-go" of "aws-sdk-go-v2")
    if (slash != std::string_view::npos) {
      const Match m = MatchProduct(token.substr(0, slash), token.substr(slash + 1), first);
      if (m.rank == kSdk) return m.client;
      if (m.rank > best.rank) best = m;
    }
    first = false;
    i = end;
  }
  return best.client;
}

}  // namespace imdswatch
