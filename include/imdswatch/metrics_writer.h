// /metrics in the Prometheus text exposition format (0.0.4), written straight
// from the agent's aggregated state: no intermediate metric objects, numbers
// through std::to_chars, label sets escaped once per workload and cached by
// their owners (ExportedLabels in series_owner.h). The text goes to one
// string (tests, the benchmark) or is handed to a sink in pieces of about
// 64 KiB (the HTTP server streams them), so a scrape holds one piece, not the
// whole text, however many containers the node runs.
//
// Format: a family is "# HELP name help", "# TYPE name type", then every
// series of that family; Family() starts one, and the samples written until the
// next Family() belong to it, so families are contiguous by construction (a
// name started twice throws std::logic_error). Label values escape \ " and
// line feed, HELP text \ and line feed. A histogram series is its _bucket lines
// (cumulative, le ascending, the last le="+Inf"), then _sum, then _count.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace imdswatch {

enum class MetricType { kCounter, kGauge, kHistogram };

// One label of a sample; the value is escaped when written.
struct MetricLabel {
  std::string_view name;
  std::string_view value;
};

// Appends `value` escaped for a label value (\ → \\, " → \", line feed → \n).
void AppendLabelValue(std::string& out, std::string_view value);
// `name="value",...` (escaped): the text callers cache per label set and hand
// to MetricsWriter as a sample's leading labels.
std::string LabelText(std::initializer_list<MetricLabel> labels);
// The shortest text that reads back as the same double, fixed-point from 1e-4 up (0.0005, as
// client_golang writes it); integral values below
// 1e15 without a fraction or exponent; NaN, +Inf, -Inf.
void AppendNumber(std::string& out, double value);
void AppendNumber(std::string& out, uint64_t value);

// A histogram's upper bounds with their `le` texts, formatted once; +Inf follows.
class HistogramBounds {
 public:
  explicit HistogramBounds(std::span<const double> bounds);
  size_t buckets() const { return le_.size(); }  // the bounds and +Inf
  std::string_view le(size_t i) const { return le_[i]; }

 private:
  std::vector<std::string> le_;
};

class MetricsWriter {
 public:
  // Receives the text in order; returns false when it cannot take more (the
  // client went away): the writer then drops the rest and ok() is false.
  using Sink = std::function<bool(std::string_view text)>;
  static constexpr size_t kFlushBytes = 64 * 1024;

  MetricsWriter();  // the text accumulates; Take() returns it
  explicit MetricsWriter(Sink sink, size_t flush_bytes = kFlushBytes);
  MetricsWriter(const MetricsWriter&) = delete;
  MetricsWriter& operator=(const MetricsWriter&) = delete;

  // Starts family `name`: its HELP and TYPE lines. An empty help writes no HELP line.
  void Family(std::string_view name, std::string_view help, MetricType type);

  // A counter or gauge sample of the current family:
  //   name{prefix,labels...} value
  // `prefix` is label text as LabelText makes it ("" for none).
  void Sample(std::string_view prefix, std::initializer_list<MetricLabel> labels, double value);
  void Sample(std::string_view prefix, std::initializer_list<MetricLabel> labels, uint64_t value);

  // A histogram series of the current family: counts[i] is bucket i's own
  // count (not cumulative), bounds.buckets() of them, the last one +Inf's.
  void Histogram(std::string_view prefix, std::initializer_list<MetricLabel> labels, const HistogramBounds& bounds,
                 std::span<const uint64_t> counts, uint64_t count, double sum);

  // Hands what is buffered to the sink (a no-op without one). False once the sink has refused.
  bool Flush();
  bool ok() const { return ok_; }
  // The text written (without a sink), leaving the writer empty.
  std::string Take();
  size_t bytes() const { return bytes_ + buf_.size(); }  // written so far, flushed or not

 private:
  void OpenSample(std::string_view suffix, std::string_view prefix, std::initializer_list<MetricLabel> labels);
  void EndLine();

  Sink sink_;
  size_t flush_bytes_ = 0;
  std::string buf_;
  std::string name_;                // the current family
  std::vector<std::string> names_;  // families started, to refuse a second start
  std::string head_;                // scratch: a histogram series' `name_bucket{labels,le="`
  size_t bytes_ = 0;                // handed to the sink
  bool ok_ = true;
};

// What /metrics shows: each source writes its families whole.
class MetricsSource {
 public:
  virtual ~MetricsSource() = default;
  virtual void WriteMetrics(MetricsWriter& out) const = 0;
};

using MetricsSources = std::vector<std::weak_ptr<const MetricsSource>>;

// Every live source, in order, as one text (tests, the benchmark).
std::string RenderMetrics(const MetricsSources& sources);
// The same text handed to sink in pieces of about MetricsWriter::kFlushBytes
// (the HTTP server). False when the sink refused a piece.
bool RenderMetrics(const MetricsSources& sources, const MetricsWriter::Sink& sink);

}  // namespace imdswatch
