// Request classification (include/imdswatch/classify.h) on any method, path
// and User-Agent: the path comes from the kernel's parser (any bytes a
// client sends, cut to IMDS_PATH_MAX), the User-Agent likewise.
//
// Input: [flags][method (short string)][path (short string)][User-Agent...]
// Invariants:
//  - ClassifyUserAgent: absent is unknown, present never is; ASCII case does
//    not matter;
//  - ClassifyCall: the token call is a PUT; a query string or fragment, and
//    doubled slashes, change nothing;
//  - RoleFromPath: at most kMaxRoleLength printable bytes, and only for
//    paths ClassifyCall names credentials;
//  - every result has a non-empty label string.
#include <cstdint>
#include <string>

#include "fuzz_common.h"
#include "imdswatch/classify.h"

using namespace imdswatch;
using imdswatch::fuzz::Input;
using imdswatch::fuzz::Printable;

namespace {

std::string Upper(std::string s) {
  for (char& c : s)
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  return s;
}

std::string DoubleSlashes(const std::string& s) {
  std::string out;
  for (char c : s) {
    out += c;
    if (c == '/') out += '/';
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Input in(data, size);
  const uint8_t flags = in.Byte();
  static const char* kMethods[] = {"GET", "PUT", "HEAD", "POST"};
  std::string method = (flags & 4) ? in.Short(8) : kMethods[flags & 3];
  const std::string path = in.Short();
  const std::string ua = in.Rest();
  const bool present = flags & 8;

  const Client client = ClassifyUserAgent(ua, present);
  FUZZ_CHECK(present || client == Client::kUnknown, "absent User-Agent classified");
  FUZZ_CHECK(!present || client != Client::kUnknown, "present User-Agent classified as absent");
  FUZZ_CHECK(!ToString(client).empty(), "empty client label");
  FUZZ_CHECK(ClassifyUserAgent(Upper(ua), present) == client, "case changed the client of %s",
             Printable(ua).c_str());

  const Call call = ClassifyCall(method, path);
  FUZZ_CHECK(!ToString(call).empty(), "empty call label");
  FUZZ_CHECK(call != Call::kToken || method == "PUT", "token call by %s", Printable(method).c_str());
  if (path.find_first_of("?#") == std::string::npos) {
    FUZZ_CHECK(ClassifyCall(method, path + "?x=1#f") == call, "a query string changed the call of %s",
               Printable(path).c_str());
  }
  if (!path.empty() && path[0] == '/') {
    FUZZ_CHECK(ClassifyCall(method, DoubleSlashes(path)) == call, "doubled slashes changed the call of %s",
               Printable(path).c_str());
    FUZZ_CHECK(RoleFromPath(DoubleSlashes(path)) == RoleFromPath(path), "doubled slashes changed the role");
  }

  const std::string role = RoleFromPath(path);
  FUZZ_CHECK(role.size() <= kMaxRoleLength, "role of %zu bytes", role.size());
  for (char c : role) FUZZ_CHECK(c >= 0x21 && c <= 0x7e, "role byte 0x%02x", static_cast<uint8_t>(c));
  FUZZ_CHECK(role.empty() || ClassifyCall("GET", path) == Call::kCredentials, "role %s from a %s path",
             Printable(role).c_str(), std::string(ToString(ClassifyCall("GET", path))).c_str());

  const Version version = ClassifyVersion(call, flags & 16);
  FUZZ_CHECK(!ToString(version).empty(), "empty version label");
  return 0;
}
