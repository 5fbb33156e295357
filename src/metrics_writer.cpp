#include "imdswatch/metrics_writer.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <system_error>

namespace imdswatch {

namespace {

bool ValidMetricName(std::string_view name) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); i++) {
    const char c = name[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
    if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return false;
  }
  return true;
}

// HELP text: \ → \\, line feed → \n (quotes stay as they are).
void AppendHelp(std::string& out, std::string_view help) {
  for (char c : help) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
}

std::string_view TypeName(MetricType type) {
  switch (type) {
    case MetricType::kCounter: return "counter";
    case MetricType::kGauge: return "gauge";
    case MetricType::kHistogram: return "histogram";
  }
  return "untyped";
}

}  // namespace

void AppendLabelValue(std::string& out, std::string_view value) {
  size_t start = 0;
  for (size_t i = 0; i < value.size(); i++) {
    const char c = value[i];
    if (c != '\\' && c != '"' && c != '\n') continue;
    out.append(value.data() + start, i - start);
    out += '\\';
    out += c == '\n' ? 'n' : c;
    start = i + 1;
  }
  out.append(value.data() + start, value.size() - start);
}

std::string LabelText(std::initializer_list<MetricLabel> labels) {
  std::string out;
  for (const MetricLabel& l : labels) {
    if (!out.empty()) out += ',';
    out.append(l.name);
    out += "=\"";
    AppendLabelValue(out, l.value);
    out += '"';
  }
  return out;
}

void AppendNumber(std::string& out, double value) {
  if (std::isnan(value)) {
    out += "NaN";
    return;
  }
  if (std::isinf(value)) {
    out += value < 0 ? "-Inf" : "+Inf";
    return;
  }
  char buf[32];
  std::to_chars_result r;
  if (value == std::trunc(value) && std::fabs(value) < 1e15)
    r = std::to_chars(buf, buf + sizeof buf, static_cast<int64_t>(value));  // "3", not "3e+00"; -0 is "0"
  else if (std::fabs(value) >= 1e-4 && std::fabs(value) < 1e15)
    r = std::to_chars(buf, buf + sizeof buf, value, std::chars_format::fixed);  // "0.0005", as Go's clients write it
  else
    r = std::to_chars(buf, buf + sizeof buf, value);  // shortest round trip: "5e-05"
  out.append(buf, r.ptr);
}

void AppendNumber(std::string& out, uint64_t value) {
  char buf[24];
  const auto r = std::to_chars(buf, buf + sizeof buf, value);
  out.append(buf, r.ptr);
}

HistogramBounds::HistogramBounds(std::span<const double> bounds) {
  le_.reserve(bounds.size() + 1);
  for (double b : bounds) {
    std::string s;
    AppendNumber(s, b);
    le_.push_back(std::move(s));
  }
  le_.push_back("+Inf");
}

MetricsWriter::MetricsWriter() = default;

MetricsWriter::MetricsWriter(Sink sink, size_t flush_bytes) : sink_(std::move(sink)), flush_bytes_(flush_bytes) {
  // a line can pass the threshold by its length: leave room for one
  buf_.reserve(flush_bytes_ + 4096);
}

void MetricsWriter::Family(std::string_view name, std::string_view help, MetricType type) {
  if (!ValidMetricName(name)) throw std::logic_error("invalid metric name: " + std::string(name));
  if (std::find(names_.begin(), names_.end(), name) != names_.end())
    throw std::logic_error("metric family written twice: " + std::string(name));
  names_.emplace_back(name);
  name_.assign(name);
  if (!help.empty()) {
    buf_ += "# HELP ";
    buf_ += name;
    buf_ += ' ';
    AppendHelp(buf_, help);
    buf_ += '\n';
  }
  buf_ += "# TYPE ";
  buf_ += name;
  buf_ += ' ';
  buf_ += TypeName(type);
  EndLine();
}

void MetricsWriter::OpenSample(std::string_view suffix, std::string_view prefix,
                               std::initializer_list<MetricLabel> labels) {
  buf_ += name_;
  buf_ += suffix;
  if (!prefix.empty() || labels.size() > 0) {
    buf_ += '{';
    buf_ += prefix;
    bool first = prefix.empty();
    for (const MetricLabel& l : labels) {
      if (!first) buf_ += ',';
      first = false;
      buf_ += l.name;
      buf_ += "=\"";
      AppendLabelValue(buf_, l.value);
      buf_ += '"';
    }
    buf_ += '}';
  }
  buf_ += ' ';
}

void MetricsWriter::EndLine() {
  buf_ += '\n';
  if (sink_ && buf_.size() >= flush_bytes_) Flush();
}

void MetricsWriter::Sample(std::string_view prefix, std::initializer_list<MetricLabel> labels, double value) {
  OpenSample({}, prefix, labels);
  AppendNumber(buf_, value);
  EndLine();
}

void MetricsWriter::Sample(std::string_view prefix, std::initializer_list<MetricLabel> labels, uint64_t value) {
  OpenSample({}, prefix, labels);
  AppendNumber(buf_, value);
  EndLine();
}

void MetricsWriter::Histogram(std::string_view prefix, std::initializer_list<MetricLabel> labels,
                              const HistogramBounds& bounds, std::span<const uint64_t> counts, uint64_t count,
                              double sum) {
  // `name_bucket{labels,le="` once; each bucket line appends its bound and count to it
  std::swap(head_, buf_);
  buf_.clear();
  OpenSample("_bucket", prefix, labels);
  buf_.pop_back();  // ' '
  if (buf_.back() == '}') {
    buf_.back() = ',';
  } else {
    buf_ += '{';
  }
  buf_ += "le=\"";
  std::swap(head_, buf_);

  uint64_t cumulative = 0;
  for (size_t i = 0; i < bounds.buckets(); i++) {
    if (i < counts.size()) cumulative += counts[i];
    buf_ += head_;
    buf_ += bounds.le(i);
    buf_ += "\"} ";
    AppendNumber(buf_, cumulative);
    EndLine();
  }
  OpenSample("_sum", prefix, labels);
  AppendNumber(buf_, sum);
  EndLine();
  OpenSample("_count", prefix, labels);
  AppendNumber(buf_, count);
  EndLine();
}

bool MetricsWriter::Flush() {
  if (!sink_) return ok_;
  if (ok_ && !buf_.empty()) ok_ = sink_(buf_);
  bytes_ += buf_.size();
  buf_.clear();
  return ok_;
}

std::string MetricsWriter::Take() {
  std::string out = std::move(buf_);
  buf_.clear();
  return out;
}

namespace {

void WriteAll(const MetricsSources& sources, MetricsWriter& out) {
  for (const auto& weak : sources)
    if (auto source = weak.lock()) source->WriteMetrics(out);
}

}  // namespace

std::string RenderMetrics(const MetricsSources& sources) {
  MetricsWriter out;
  WriteAll(sources, out);
  return out.Take();
}

bool RenderMetrics(const MetricsSources& sources, const MetricsWriter::Sink& sink) {
  MetricsWriter out(sink);
  WriteAll(sources, out);
  return out.Flush();
}

}  // namespace imdswatch
