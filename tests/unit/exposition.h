// Test helper: reads /metrics text (the Prometheus text format, 0.0.4) back
// into prometheus-cpp's MetricFamily structs, strictly -- a sample before its
// family's TYPE line, a family split in two, a repeated label set, a malformed
// line or a histogram whose buckets are not cumulative with le ascending and
// +Inf last throws -- so every test that reads metrics also checks the writer.
#pragma once

#include <prometheus/metric_family.h>

#include <map>
#include <string>
#include <vector>

#include "imdswatch/metrics_writer.h"

namespace imdswatch::exposition {

using Labels = std::map<std::string, std::string>;

std::vector<prometheus::MetricFamily> ParseExposition(const std::string& text);

// What one source writes to /metrics, as text and parsed.
std::string Render(const MetricsSource& source);
std::vector<prometheus::MetricFamily> Scrape(const MetricsSource& source);

const prometheus::MetricFamily& Family(const std::vector<prometheus::MetricFamily>& families, const std::string& name);
Labels LabelsOf(const prometheus::ClientMetric& m);
// The series of a family whose labels include all of `want`.
std::vector<const prometheus::ClientMetric*> Find(const prometheus::MetricFamily& family, const Labels& want);
// The one series that matches `want`; throws when there are none or several.
const prometheus::ClientMetric& One(const prometheus::MetricFamily& family, const Labels& want);
double CounterSum(const prometheus::MetricFamily& family, const Labels& want = {});

}  // namespace imdswatch::exposition
