#include "imdswatch/self_health.h"

namespace imdswatch {

void SelfHealth::Add(std::string name, std::string help, Kind kind, Provider provider) {
  std::lock_guard<std::mutex> lock(mu_);
  entries_.push_back({std::move(name), std::move(help), kind, std::move(provider)});
}

void SelfHealth::WriteMetrics(MetricsWriter& out) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::string labels;
  for (const Entry& entry : entries_) {
    out.Family(entry.name, entry.help, entry.kind == Kind::kCounter ? MetricType::kCounter : MetricType::kGauge);
    for (const LabelledValue& sample : entry.provider()) {
      labels.clear();
      for (const auto& [name, value] : sample.labels) {
        if (!labels.empty()) labels += ',';
        labels += name;
        labels += "=\"";
        AppendLabelValue(labels, value);
        labels += '"';
      }
      out.Sample(labels, {}, sample.value);
    }
  }
}

}  // namespace imdswatch
