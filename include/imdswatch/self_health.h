// imdswatch's own health as metrics: nothing the agent loses or cannot
// attribute is silent. Values are read from their owners at scrape time, as
// ebpf_exporter reads maps, so the hot paths only bump counters.
#pragma once

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace imdswatch {

// One labelled value of a self-health metric.
struct LabelledValue {
  std::map<std::string, std::string> labels;
  double value;
};

class SelfHealth : public prometheus::Collectable {
 public:
  enum class Kind { kCounter, kGauge };
  using Provider = std::function<std::vector<LabelledValue>()>;

  // Registers a metric whose samples come from provider at every scrape.
  void Add(std::string name, std::string help, Kind kind, Provider provider);
  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  struct Entry {
    std::string name;
    std::string help;
    Kind kind;
    Provider provider;
  };
  std::vector<Entry> entries_;
};

}  // namespace imdswatch
