#include "imdswatch/metrics_writer.h"

#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "exposition.h"

namespace imdswatch {
namespace {

std::string Number(double v) {
  std::string s;
  AppendNumber(s, v);
  return s;
}

TEST(MetricsWriter, NumbersReadBackExactly) {
  EXPECT_EQ(Number(3), "3");
  EXPECT_EQ(Number(-0.0), "0");
  EXPECT_EQ(Number(0.1), "0.1");
  EXPECT_EQ(Number(0.0005), "0.0005");
  EXPECT_EQ(Number(1e15), "1e+15");
  EXPECT_EQ(Number(0.00005), "5e-05");
  EXPECT_EQ(Number(1234567.25), "1234567.25");
  EXPECT_EQ(Number(NAN), "NaN");
  EXPECT_EQ(Number(INFINITY), "+Inf");
  EXPECT_EQ(Number(-INFINITY), "-Inf");
  for (double v : {1.0 / 3, 123456.789, 2.5e-9, 9007199254740993.0, std::numeric_limits<double>::max()})
    EXPECT_EQ(std::stod(Number(v)), v) << Number(v);
  std::string s;
  AppendNumber(s, std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(s, "18446744073709551615");
}

TEST(MetricsWriter, EscapesLabelValuesAndHelp) {
  MetricsWriter out;
  out.Family("x_total", "a \\ help\nline \"quoted\"", MetricType::kCounter);
  out.Sample(LabelText({{"pod", "a\"b\\c\nd"}}), {{"call", "token"}}, uint64_t{2});
  const std::string text = out.Take();
  EXPECT_EQ(text,
            "# HELP x_total a \\\\ help\\nline \"quoted\"\n"
            "# TYPE x_total counter\n"
            "x_total{pod=\"a\\\"b\\\\c\\nd\",call=\"token\"} 2\n");
  const auto families = exposition::ParseExposition(text);
  EXPECT_EQ(exposition::LabelsOf(families.at(0).metric.at(0)).at("pod"), "a\"b\\c\nd");
}

TEST(MetricsWriter, SampleWithoutLabels) {
  MetricsWriter out;
  out.Family("up", "", MetricType::kGauge);
  out.Sample({}, {}, 1.0);
  EXPECT_EQ(out.Take(), "# TYPE up gauge\nup 1\n");
}

TEST(MetricsWriter, HistogramIsCumulativeWithInf) {
  const std::array<double, 3> bounds = {0.5, 1, 2.5};
  const HistogramBounds le(bounds);
  const std::array<uint64_t, 4> counts = {1, 0, 2, 3};  // per bucket; the last is above 2.5
  MetricsWriter out;
  out.Family("d_seconds", "durations", MetricType::kHistogram);
  out.Histogram(LabelText({{"pod", "p"}}), {{"call", "c"}}, le, counts, 6, 12.25);
  out.Histogram({}, {}, le, counts, 6, 12.25);
  const std::string text = out.Take();
  EXPECT_NE(text.find("d_seconds_bucket{pod=\"p\",call=\"c\",le=\"0.5\"} 1\n"
                      "d_seconds_bucket{pod=\"p\",call=\"c\",le=\"1\"} 1\n"
                      "d_seconds_bucket{pod=\"p\",call=\"c\",le=\"2.5\"} 3\n"
                      "d_seconds_bucket{pod=\"p\",call=\"c\",le=\"+Inf\"} 6\n"
                      "d_seconds_sum{pod=\"p\",call=\"c\"} 12.25\n"
                      "d_seconds_count{pod=\"p\",call=\"c\"} 6\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("d_seconds_bucket{le=\"0.5\"} 1\n"), std::string::npos) << text;
  const auto families = exposition::ParseExposition(text);
  ASSERT_EQ(families.at(0).metric.size(), 2u);
  EXPECT_EQ(families[0].metric[0].histogram.bucket.at(2).cumulative_count, 3u);
}

TEST(MetricsWriter, RefusesAFamilyTwiceAndBadNames) {
  MetricsWriter out;
  out.Family("a_total", "", MetricType::kCounter);
  out.Family("b_total", "", MetricType::kCounter);
  EXPECT_THROW(out.Family("a_total", "", MetricType::kCounter), std::logic_error);
  EXPECT_THROW(out.Family("0bad", "", MetricType::kCounter), std::logic_error);
  EXPECT_THROW(out.Family("bad-name", "", MetricType::kCounter), std::logic_error);
}

// With a sink, the text arrives in pieces of about flush_bytes, in order, and whole lines.
TEST(MetricsWriter, StreamsInPiecesToTheSink) {
  std::vector<std::string> pieces;
  MetricsWriter out([&](std::string_view text) { pieces.emplace_back(text); return true; }, 1024);
  MetricsWriter whole;
  for (MetricsWriter* w : {&out, &whole}) {
    w->Family("n_total", "", MetricType::kCounter);
    for (uint64_t i = 0; i < 500; i++) w->Sample(LabelText({{"pod", "pod-" + std::to_string(i)}}), {}, i);
  }
  EXPECT_TRUE(out.Flush());
  const std::string expected = whole.Take();
  ASSERT_GT(pieces.size(), 5u);
  std::string joined;
  for (const std::string& p : pieces) {
    EXPECT_LT(p.size(), 1024u + 4096u);
    EXPECT_EQ(p.back(), '\n');
    joined += p;
  }
  EXPECT_EQ(joined, expected);
  EXPECT_EQ(out.bytes(), expected.size());
}

// A client that goes away: the sink refuses, the rest is dropped, ok() says so.
TEST(MetricsWriter, StopsWhenTheSinkRefuses) {
  int calls = 0;
  MetricsWriter out([&](std::string_view) { return ++calls < 2; }, 256);
  out.Family("n_total", "", MetricType::kCounter);
  for (uint64_t i = 0; i < 200; i++) out.Sample(LabelText({{"pod", "p" + std::to_string(i)}}), {}, i);
  EXPECT_FALSE(out.Flush());
  EXPECT_FALSE(out.ok());
  EXPECT_EQ(calls, 2);  // nothing more was offered after the refusal
}

class TwoFamilies : public MetricsSource {
 public:
  void WriteMetrics(MetricsWriter& out) const override {
    out.Family("one_total", "", MetricType::kCounter);
    out.Sample({}, {}, uint64_t{1});
    out.Family("two", "", MetricType::kGauge);
    out.Sample({}, {{"k", "v"}}, 2.5);
  }
};

TEST(MetricsWriter, RenderSkipsSourcesThatAreGone) {
  auto kept = std::make_shared<TwoFamilies>();
  MetricsSources sources;
  {
    auto gone = std::make_shared<TwoFamilies>();
    sources = {gone, kept};
  }
  const std::string text = RenderMetrics(sources);
  EXPECT_EQ(text, "# TYPE one_total counter\none_total 1\n# TYPE two gauge\ntwo{k=\"v\"} 2.5\n");
  std::string streamed;
  EXPECT_TRUE(RenderMetrics(sources, [&](std::string_view t) { streamed += t; return true; }));
  EXPECT_EQ(streamed, text);
}

}  // namespace
}  // namespace imdswatch
