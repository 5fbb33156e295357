#include "imdswatch/doctor.h"

#include <nlohmann/json.hpp>

#include <string_view>

namespace imdswatch {

namespace {

using nlohmann::json;

std::string StringField(const json& object, const char* name) {
  auto it = object.find(name);
  if (it == object.end() || !it->is_string()) return {};
  return it->get<std::string>();
}

std::string_view Title(std::string_view kind) {
  if (kind == diagnosis::kHopLimit) return "IMDSv2 token replies are lost (hop limit too low)";
  if (kind == diagnosis::kRefreshStorm) return "credentials are refetched far more often than they expire";
  if (kind == diagnosis::kThrottled) return "the metadata service throttles or cannot be reached";
  if (kind == diagnosis::kImdsV1) return "IMDSv1 is still in use";
  if (kind == diagnosis::kSlow) return "time lost waiting on metadata calls";
  return "metadata problem";
}

std::string Heading(const Workload& w) {
  std::string out;
  if (w.pod.empty()) {
    out = w.workload.empty() ? "(unknown workload)" : w.workload;
  } else {
    out = w.namespace_name.empty() ? w.pod : w.namespace_name + "/" + w.pod;
  }
  if (!w.container.empty()) out += " (" + w.container + ")";
  return out;
}

}  // namespace

std::vector<Finding> ParseFindingsJson(const std::string& text, std::string* error) {
  if (error) error->clear();
  auto fail = [&](const std::string& why) {
    if (error) *error = why;
    return std::vector<Finding>{};
  };
  json doc = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return fail("findings: not valid JSON");
  if (doc.is_object()) {
    auto it = doc.find("findings");
    if (it == doc.end()) return fail("findings: object without a \"findings\" array");
    json inner = std::move(*it);
    doc = std::move(inner);
  }
  if (!doc.is_array()) return fail("findings: expected a JSON array");
  std::vector<Finding> out;
  out.reserve(doc.size());
  for (size_t i = 0; i < doc.size(); i++) {
    const json& item = doc[i];
    if (!item.is_object()) return fail("findings: element " + std::to_string(i) + " is not an object");
    Finding f;
    f.who.namespace_name = StringField(item, "namespace");
    f.who.workload = StringField(item, "workload");
    f.who.pod = StringField(item, "pod");
    f.who.container = StringField(item, "container");
    f.kind = StringField(item, "kind");
    f.client = StringField(item, "client");
    f.evidence = StringField(item, "evidence");
    f.cause = StringField(item, "cause");
    f.fix = StringField(item, "fix");
    if (auto it = item.find("numbers"); it != item.end() && it->is_object())
      for (const auto& [name, value] : it->items())
        if (value.is_number()) f.numbers[name] = value.get<double>();
    out.push_back(std::move(f));
  }
  return out;
}

std::string FormatFindings(const std::vector<Finding>& findings, bool json_output) {
  if (json_output) return FindingsJson(findings) + "\n";
  if (findings.empty()) return "No metadata-service problems found.\n";
  std::string out;
  for (const Finding& f : findings) {
    if (!out.empty()) out += "\n";
    out += Heading(f.who) + " \u2014 " + f.kind + ": " + std::string(Title(f.kind)) + "\n";
    out += "  Evidence: " + f.evidence + "\n";
    out += "  Cause: " + f.cause + "\n";
    out += "  Fix: " + f.fix + "\n";
  }
  return out;
}

int DoctorExitCode(const std::vector<Finding>& findings) { return findings.empty() ? 0 : 1; }

}  // namespace imdswatch
