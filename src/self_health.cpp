#include "imdswatch/self_health.h"

namespace imdswatch {

void SelfHealth::Add(std::string name, std::string help, Kind kind, Provider provider) {
  entries_.push_back({std::move(name), std::move(help), kind, std::move(provider)});
}

std::vector<prometheus::MetricFamily> SelfHealth::Collect() const {
  std::vector<prometheus::MetricFamily> families;
  families.reserve(entries_.size());
  for (const Entry& entry : entries_) {
    prometheus::MetricFamily family;
    family.name = entry.name;
    family.help = entry.help;
    family.type = entry.kind == Kind::kCounter ? prometheus::MetricType::Counter : prometheus::MetricType::Gauge;
    for (const LabelledValue& sample : entry.provider()) {
      prometheus::ClientMetric metric;
      for (const auto& [name, value] : sample.labels) metric.label.push_back({name, value});
      if (entry.kind == Kind::kCounter)
        metric.counter.value = sample.value;
      else
        metric.gauge.value = sample.value;
      family.metric.push_back(std::move(metric));
    }
    families.push_back(std::move(family));
  }
  return families;
}

}  // namespace imdswatch
