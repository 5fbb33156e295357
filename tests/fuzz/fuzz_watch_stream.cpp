// A Kubernetes watch stream as the agent reads it: LineSplitter cuts the
// chunked body into lines, ApplyWatchEvent applies each to a PodStore and
// moves the resourceVersion (include/imdswatch/kube_client.h).
//
// Input: [line limit][cut seed x4][stream bytes]
// Invariants:
//  - lines never hold '\n'; with no over-long line, there is one line per
//    '\n' and the unfinished tail is what stays buffered;
//  - chunking changes nothing: the whole stream and a 5-way split give the
//    same lines and statuses;
//  - ApplyWatchEvent never throws; the resourceVersion only ever moves to a
//    non-empty value; an applied pod with a uid is then in the store, a
//    deleted one is not.
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "fuzz_common.h"
#include "imdswatch/kube_client.h"
#include "unit/http_parse_harness.h"

using namespace imdswatch;
using imdswatch::fuzz::Input;
using imdswatch::fuzz::Printable;

namespace {

struct Split {
  std::vector<std::string> lines;
  bool too_long = false;
  size_t buffered = 0;
};

Split Lines(size_t max_line, const std::vector<std::string>& chunks) {
  Split out;
  LineSplitter splitter(max_line);
  for (const auto& chunk : chunks) {
    auto status = splitter.Feed(chunk, [&](std::string_view line) {
      FUZZ_CHECK(line.find('\n') == std::string_view::npos, "line with a newline");
      FUZZ_CHECK(line.size() <= max_line, "line of %zu bytes past the limit %zu", line.size(), max_line);
      out.lines.emplace_back(line);
      return true;
    });
    if (status == LineSplitter::Status::kLineTooLong) out.too_long = true;
    FUZZ_CHECK(status != LineSplitter::Status::kStopped, "stopped without being asked");
  }
  out.buffered = splitter.buffered();
  return out;
}

std::string UidOf(std::string_view line) {
  auto j = nlohmann::json::parse(line.begin(), line.end(), nullptr, false);
  if (!j.is_object() || !j.contains("object") || !j["object"].is_object()) return "";
  const auto& object = j["object"];
  if (!object.contains("metadata") || !object["metadata"].is_object()) return "";
  const auto& metadata = object["metadata"];
  if (!metadata.contains("uid") || !metadata["uid"].is_string()) return "";
  return metadata["uid"].get<std::string>();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Input in(data, size);
  const uint8_t limit = in.Byte();
  const size_t max_line = limit == 0 ? (64u << 20) : limit * 8u;
  uint16_t seeds[4];
  for (auto& s : seeds) s = in.U16();
  const std::string stream = in.Rest();

  const Split whole = Lines(max_line, {stream});
  std::vector<size_t> cuts;
  for (uint16_t s : seeds) cuts.push_back(stream.empty() ? 0 : s % stream.size());
  std::sort(cuts.begin(), cuts.end());
  const Split chunked = Lines(max_line, imdswatch::testing::SplitAt(stream, cuts));

  if (!whole.too_long && !chunked.too_long) {
    FUZZ_CHECK(whole.lines == chunked.lines, "chunking changed the lines (%zu vs %zu)", whole.lines.size(),
               chunked.lines.size());
    const size_t newlines = std::count(stream.begin(), stream.end(), '\n');
    FUZZ_CHECK(whole.lines.size() == newlines, "%zu lines for %zu newlines", whole.lines.size(), newlines);
    const size_t tail = stream.size() - (stream.rfind('\n') == std::string::npos ? 0 : stream.rfind('\n') + 1);
    FUZZ_CHECK(whole.buffered == tail && chunked.buffered == tail, "buffered %zu/%zu, tail %zu", whole.buffered,
               chunked.buffered, tail);
  }

  // Stopping early: the rest of the chunk is dropped, nothing more is emitted.
  {
    LineSplitter splitter;
    size_t seen = 0;
    auto status = splitter.Feed(stream, [&](std::string_view) { return ++seen < 2; });
    FUZZ_CHECK(seen <= 2, "lines emitted after a stop");
    FUZZ_CHECK((seen == 2) == (status == LineSplitter::Status::kStopped), "stop status %d after %zu lines",
               static_cast<int>(status), seen);
  }

  PodStore store;
  std::string rv = "1";
  for (const auto& line : whole.lines) {
    const std::string before = rv;
    const WatchEventResult result = ApplyWatchEvent(line, store, rv);
    FUZZ_CHECK(!rv.empty(), "resourceVersion emptied by %s", Printable(line).c_str());
    if (result != WatchEventResult::kApplied && result != WatchEventResult::kDeleted &&
        result != WatchEventResult::kBookmark)
      FUZZ_CHECK(rv == before, "resourceVersion moved by an event that was not applied");
    const std::string uid = UidOf(line);
    if (result == WatchEventResult::kApplied && !uid.empty())
      FUZZ_CHECK(store.Lookup(uid).has_value(), "applied pod %s missing", Printable(uid).c_str());
    if (result == WatchEventResult::kDeleted)
      FUZZ_CHECK(!store.Lookup(uid).has_value() || store.Lookup(uid)->uid != uid, "deleted pod %s still there",
                 Printable(uid).c_str());
  }
  return 0;
}
