// imdswatch's own health as metrics: nothing the agent loses or cannot
// attribute is silent. Values are read from their owners at scrape time, as
// ebpf_exporter reads maps, so the hot paths only bump counters.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "imdswatch/metrics_writer.h"

namespace imdswatch {

// One labelled value of a self-health metric.
struct LabelledValue {
  std::map<std::string, std::string> labels;
  double value;
};

class SelfHealth : public MetricsSource {
 public:
  enum class Kind { kCounter, kGauge };
  using Provider = std::function<std::vector<LabelledValue>()>;

  // Registers a metric whose samples come from provider at every scrape
  // (the agent registers them while the HTTP server already serves).
  void Add(std::string name, std::string help, Kind kind, Provider provider);
  // The metrics in the order added, each sample's labels ordered by name.
  void WriteMetrics(MetricsWriter& out) const override;

 private:
  struct Entry {
    std::string name;
    std::string help;
    Kind kind;
    Provider provider;
  };
  mutable std::mutex mu_;  // entries_; providers run with it held
  std::vector<Entry> entries_;
};

}  // namespace imdswatch
