#include "exposition.h"

#include <cmath>
#include <set>
#include <stdexcept>
#include <string_view>

namespace imdswatch::exposition {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

namespace {

[[noreturn]] void Fail(size_t line_no, const std::string& why, std::string_view line) {
  throw std::runtime_error("exposition line " + std::to_string(line_no) + ": " + why + ": " + std::string(line));
}

double ParseValue(std::string_view text, size_t line_no, std::string_view line) {
  if (text == "+Inf") return INFINITY;
  if (text == "-Inf") return -INFINITY;
  if (text == "NaN") return NAN;
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(std::string(text), &used);
  } catch (const std::exception&) {
    Fail(line_no, "bad value", line);
  }
  if (used != text.size()) Fail(line_no, "bad value", line);
  return v;
}

struct Sample {
  std::string name;
  std::vector<ClientMetric::Label> labels;
  double value;
};

// name{a="x",b="y"} value
Sample ParseSample(std::string_view line, size_t line_no) {
  Sample s;
  size_t i = 0;
  while (i < line.size() && line[i] != '{' && line[i] != ' ') i++;
  s.name = std::string(line.substr(0, i));
  if (s.name.empty()) Fail(line_no, "no metric name", line);
  if (i < line.size() && line[i] == '{') {
    i++;
    while (i < line.size() && line[i] != '}') {
      const size_t eq = line.find("=\"", i);
      if (eq == std::string_view::npos) Fail(line_no, "label without =\"", line);
      ClientMetric::Label label;
      label.name = std::string(line.substr(i, eq - i));
      i = eq + 2;
      for (;; i++) {
        if (i >= line.size()) Fail(line_no, "unterminated label value", line);
        const char c = line[i];
        if (c == '"') break;
        if (c == '\\') {
          if (++i >= line.size()) Fail(line_no, "dangling escape", line);
          const char e = line[i];
          if (e == 'n') label.value += '\n';
          else if (e == '\\' || e == '"') label.value += e;
          else Fail(line_no, "bad escape", line);
        } else {
          label.value += c;
        }
      }
      i++;  // the closing quote
      s.labels.push_back(std::move(label));
      if (i < line.size() && line[i] == ',') i++;
    }
    if (i >= line.size()) Fail(line_no, "unterminated label set", line);
    i++;  // '}'
  }
  if (i >= line.size() || line[i] != ' ') Fail(line_no, "no space before the value", line);
  s.value = ParseValue(line.substr(i + 1), line_no, line);
  return s;
}

MetricType TypeOf(std::string_view name, size_t line_no, std::string_view line) {
  if (name == "counter") return MetricType::Counter;
  if (name == "gauge") return MetricType::Gauge;
  if (name == "histogram") return MetricType::Histogram;
  Fail(line_no, "unknown type", line);
}

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// A histogram sample's labels without `le`, and its le value (or "").
std::pair<std::vector<ClientMetric::Label>, std::string> SplitLe(std::vector<ClientMetric::Label> labels) {
  std::string le;
  for (auto it = labels.begin(); it != labels.end(); ++it) {
    if (it->name == "le") {
      le = it->value;
      labels.erase(it);
      break;
    }
  }
  return {std::move(labels), le};
}

ClientMetric& HistogramSeries(MetricFamily& family, const std::vector<ClientMetric::Label>& labels) {
  if (family.metric.empty() || family.metric.back().label != labels) {
    family.metric.emplace_back();
    family.metric.back().label = labels;
  }
  return family.metric.back();
}

void CheckFamily(const MetricFamily& family) {
  std::set<std::vector<ClientMetric::Label>> seen;
  for (const ClientMetric& m : family.metric) {
    if (!seen.insert(m.label).second) throw std::runtime_error(family.name + " repeats a label set");
    if (family.type != MetricType::Histogram) continue;
    const auto& b = m.histogram.bucket;
    if (b.empty() || !std::isinf(b.back().upper_bound))
      throw std::runtime_error(family.name + ": a histogram series without its +Inf bucket");
    for (size_t i = 1; i < b.size(); i++) {
      if (!(b[i].upper_bound > b[i - 1].upper_bound)) throw std::runtime_error(family.name + ": le not ascending");
      if (b[i].cumulative_count < b[i - 1].cumulative_count)
        throw std::runtime_error(family.name + ": buckets not cumulative");
    }
    if (b.back().cumulative_count != m.histogram.sample_count)
      throw std::runtime_error(family.name + ": +Inf bucket differs from _count");
  }
}

}  // namespace

std::vector<MetricFamily> ParseExposition(const std::string& text) {
  std::vector<MetricFamily> families;
  std::set<std::string> names;
  bool typed = false;
  size_t line_no = 0;
  size_t start = 0;
  if (!text.empty() && text.back() != '\n') throw std::runtime_error("exposition does not end with a line feed");
  while (start < text.size()) {
    const size_t end = text.find('\n', start);
    const std::string_view line(text.data() + start, end - start);
    start = end + 1;
    line_no++;
    if (line.rfind("# HELP ", 0) == 0) {
      const std::string_view rest = line.substr(7);
      const std::string name(rest.substr(0, rest.find(' ')));
      if (!names.insert(name).second) Fail(line_no, "family started twice", line);
      families.emplace_back();
      families.back().name = name;
      families.back().help = std::string(rest.substr(std::min(rest.size(), name.size() + 1)));
      typed = false;
      continue;
    }
    if (line.rfind("# TYPE ", 0) == 0) {
      const std::string_view rest = line.substr(7);
      const size_t space = rest.find(' ');
      if (space == std::string_view::npos) Fail(line_no, "TYPE without a type", line);
      const std::string name(rest.substr(0, space));
      if (families.empty() || families.back().name != name || typed) {
        if (!names.insert(name).second) Fail(line_no, "family started twice", line);
        families.emplace_back();
        families.back().name = name;
      }
      families.back().type = TypeOf(rest.substr(space + 1), line_no, line);
      typed = true;
      continue;
    }
    if (line.empty() || line[0] == '#') Fail(line_no, "unexpected line", line);
    if (families.empty() || !typed) Fail(line_no, "sample before its family's TYPE", line);
    MetricFamily& family = families.back();
    Sample s = ParseSample(line, line_no);
    if (family.type != MetricType::Histogram) {
      if (s.name != family.name) Fail(line_no, "sample outside its family", line);
      ClientMetric m;
      m.label = std::move(s.labels);
      if (family.type == MetricType::Counter) m.counter.value = s.value;
      else m.gauge.value = s.value;
      family.metric.push_back(std::move(m));
      continue;
    }
    auto [labels, le] = SplitLe(std::move(s.labels));
    if (s.name == family.name + "_bucket") {
      if (le.empty()) Fail(line_no, "bucket without le", line);
      ClientMetric& m = HistogramSeries(family, labels);
      if (m.histogram.sample_count != 0 || m.histogram.sample_sum != 0) Fail(line_no, "bucket after _sum", line);
      prometheus::ClientMetric::Bucket b;
      b.upper_bound = ParseValue(le, line_no, line);
      b.cumulative_count = static_cast<uint64_t>(s.value);
      m.histogram.bucket.push_back(b);
    } else if (s.name == family.name + "_sum" || s.name == family.name + "_count") {
      if (family.metric.empty() || family.metric.back().label != labels)
        Fail(line_no, "_sum/_count apart from their buckets", line);
      if (EndsWith(s.name, "_sum")) family.metric.back().histogram.sample_sum = s.value;
      else family.metric.back().histogram.sample_count = static_cast<uint64_t>(s.value);
    } else {
      Fail(line_no, "sample outside its family", line);
    }
  }
  for (const MetricFamily& f : families) CheckFamily(f);
  return families;
}

std::string Render(const MetricsSource& source) {
  MetricsWriter out;
  source.WriteMetrics(out);
  return out.Take();
}

std::vector<MetricFamily> Scrape(const MetricsSource& source) { return ParseExposition(Render(source)); }

const MetricFamily& Family(const std::vector<MetricFamily>& families, const std::string& name) {
  for (const auto& f : families)
    if (f.name == name) return f;
  throw std::runtime_error("no family " + name);
}

Labels LabelsOf(const ClientMetric& m) {
  Labels out;
  for (const auto& l : m.label) out[l.name] = l.value;
  return out;
}

std::vector<const ClientMetric*> Find(const MetricFamily& family, const Labels& want) {
  std::vector<const ClientMetric*> out;
  for (const auto& m : family.metric) {
    const Labels have = LabelsOf(m);
    bool match = true;
    for (const auto& [k, v] : want) {
      auto it = have.find(k);
      if (it == have.end() || it->second != v) match = false;
    }
    if (match) out.push_back(&m);
  }
  return out;
}

const ClientMetric& One(const MetricFamily& family, const Labels& want) {
  const auto found = Find(family, want);
  if (found.size() != 1)
    throw std::runtime_error(family.name + ": " + std::to_string(found.size()) + " series match, want 1");
  return *found[0];
}

double CounterSum(const MetricFamily& family, const Labels& want) {
  double sum = 0;
  for (const auto* m : Find(family, want)) sum += m->counter.value;
  return sum;
}

}  // namespace imdswatch::exposition
