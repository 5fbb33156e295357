// ParseExpiration (include/imdswatch/diagnoser.h): the credentials'
// "Expiration" value, up to IMDS_EXPIRY_MAX bytes the metadata service (or
// anything answering in its place) chooses.
//
// Input: the text.
// Invariants:
//  - no undefined behaviour (UBSan: overflowing time arithmetic included);
//  - trailing bytes are refused;
//  - "Z" and "+00:00" mean the same; a canonical "YYYY-MM-DDTHH:MM:SSZ" of a
//    year 1970-2200 formats back to itself.
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <string>

#include "fuzz_common.h"
#include "imdswatch/diagnoser.h"

using imdswatch::ParseExpiration;
using imdswatch::fuzz::Printable;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  const auto parsed = ParseExpiration(text);
  if (!parsed) return 0;

  FUZZ_CHECK(!ParseExpiration(text + "x"), "trailing byte accepted after %s", Printable(text).c_str());
  if (!text.empty() && text.size() <= 59 && (text.back() == 'Z' || text.back() == 'z')) {  // 64 bytes at most
    const auto offset = ParseExpiration(text.substr(0, text.size() - 1) + "+00:00");
    FUZZ_CHECK(offset && *offset == *parsed, "Z and +00:00 differ for %s", Printable(text).c_str());
  }

  // canonical: digits everywhere but "-" at 4 and 7, "T" at 10, ":" at 13 and 16, "Z" at 19
  bool canonical = text.size() == 20;
  for (size_t i = 0; canonical && i < text.size(); i++) {
    const char want = i == 4 || i == 7 ? '-' : i == 10 ? 'T' : i == 13 || i == 16 ? ':' : i == 19 ? 'Z' : '0';
    canonical = want == '0' ? (text[i] >= '0' && text[i] <= '9') : text[i] == want;
  }
  if (canonical) {
    const int year = std::stoi(text.substr(0, 4)), second = std::stoi(text.substr(17, 2));
    if (year >= 1970 && year <= 2200 && second < 60) {
      const std::time_t t = std::chrono::system_clock::to_time_t(*parsed);
      std::tm tm{};
      gmtime_r(&t, &tm);
      char back[32];
      std::strftime(back, sizeof(back), "%Y-%m-%dT%H:%M:%SZ", &tm);
      FUZZ_CHECK(text == back, "%s parsed as %s", Printable(text).c_str(), back);
    }
  }
  return 0;
}
