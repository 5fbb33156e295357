#!/usr/bin/python3
"""Alert rules: deploy/rules/imdswatch.rules.yml and deploy/prometheusrule.yaml hold the same groups; every
alert has a summary, a description naming the pod and the fix, a runbook_url to an existing section of
docs/runbook.md and a promtool unit test (tests/deploy/rules/<Alert>.test.yml) that makes it fire and keeps it
silent for a healthy pod; every expression uses only exported metrics and labels.

    check_rules.py            run the checks (CTest: deploy_rules_consistency)
    check_rules.py --write    regenerate deploy/prometheusrule.yaml from the rules file
"""
import os
import re
import sys
import unittest

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import deploylib as d  # noqa: E402

HEADER = """\
# GENERATED from deploy/rules/imdswatch.rules.yml by tests/deploy/check_rules.py --write: edit the rules
# file, then regenerate (a test fails when the two differ).
# Prometheus Operator: your Prometheus must select this object (its ruleSelector, e.g. a "release" label
# for kube-prometheus-stack: add it in an overlay).
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: imdswatch
  namespace: imdswatch
  labels:
    app.kubernetes.io/name: imdswatch
spec:
"""


def generated_prometheus_rule():
    with open(d.RULES_FILE) as f:
        lines = f.read().splitlines()
    start = next(i for i, l in enumerate(lines) if l.startswith("groups:"))
    body = "\n".join(("  " + l) if l else l for l in lines[start:])
    return HEADER + body + "\n"


def alerts():
    with open(d.RULES_FILE) as f:
        doc = yaml.safe_load(f)
    return [r for g in doc["groups"] for r in g["rules"] if "alert" in r]


class RulesTest(unittest.TestCase):
    def test_prometheus_rule_holds_the_rules_file(self):
        with open(d.RULES_FILE) as f:
            plain = yaml.safe_load(f)
        (pr,) = d.load_yaml_docs(d.PROMETHEUS_RULE)
        self.assertEqual(pr["kind"], "PrometheusRule")
        self.assertEqual(pr["apiVersion"], "monitoring.coreos.com/v1")
        self.assertEqual(pr["spec"], plain, "deploy/prometheusrule.yaml differs from the rules file: run "
                         "tests/deploy/check_rules.py --write")
        with open(d.PROMETHEUS_RULE) as f:
            self.assertEqual(f.read(), generated_prometheus_rule(),
                             "deploy/prometheusrule.yaml is not the generated text: run check_rules.py --write")

    def test_prometheus_rule_is_in_the_kustomize_base(self):
        docs = d.render_kustomize_python(d.DEPLOY)
        pr = d.find(docs, "PrometheusRule", "imdswatch")
        with open(d.RULES_FILE) as f:
            self.assertEqual(pr["spec"], yaml.safe_load(f))

    def test_the_alerts_the_issue_asks_for_exist(self):
        names = {a["alert"] for a in alerts()}
        self.assertEqual(names, {
            "ImdsHopLimitFallback", "ImdsCredentialRefreshStorm", "ImdsThrottled", "ImdsV1InUse", "ImdsTimeLost",
            "ImdswatchEventsLost", "ImdswatchAgentDown", "ImdswatchAgentAbsent", "ImdswatchNotReady"})

    def test_every_alert_is_documented(self):
        anchors = d.runbook_anchors()
        for a in alerts():
            with self.subTest(alert=a["alert"]):
                ann = a.get("annotations", {})
                self.assertTrue(ann.get("summary"), "summary missing")
                desc = ann.get("description", "")
                self.assertIn("Fix:", desc, "the description must say how to fix it")
                url = ann.get("runbook_url", "")
                m = re.fullmatch(r"docs/runbook\.md#([a-z0-9-]+)", url)
                self.assertTrue(m, f"runbook_url {url!r} is not docs/runbook.md#<section>")
                self.assertIn(m.group(1), anchors, f"docs/runbook.md has no section #{m.group(1)}")
                self.assertEqual(m.group(1), a["alert"].lower(), "one runbook section per alert, named after it")
                self.assertIn(a["labels"].get("severity"), ("info", "warning", "critical"))

    def test_workload_alerts_name_the_pod(self):
        for a in alerts():
            if not a["alert"].startswith("Imds") or a["alert"].startswith("Imdswatch"):
                continue
            with self.subTest(alert=a["alert"]):
                desc = a["annotations"]["description"]
                for label in ("namespace", "pod", "container", "workload"):
                    self.assertIn("$labels." + label, desc)
                # the expression keeps the labels the description needs
                grouping = d.promql_refs(a["expr"])["grouping"]
                self.assertTrue({"namespace", "workload", "pod", "container"} <= grouping, grouping)

    def test_expressions_use_exported_metrics_and_labels(self):
        exported = d.load_exported()
        for a in alerts():
            with self.subTest(alert=a["alert"]):
                self.assertEqual(d.check_promql(a["expr"], exported), [])
                for text in a["annotations"].values():
                    for q in re.findall(r'printf "((?:[^"\\]|\\.)*)"', text):
                        q = q.replace('\\"', '"')
                        q = re.sub(r"%q", '"x"', q)
                        self.assertEqual(d.check_promql(q, exported), [], q)
                for label in re.findall(r"\$labels\.([a-z_]+)", str(a["annotations"])):
                    self.assertIn(label, d.promql_refs(a["expr"])["grouping"] | _selector_labels(a["expr"], exported),
                                  f"annotation uses $labels.{label}, which the expression drops")

    def test_every_alert_has_a_unit_test_that_fires_and_one_that_stays_silent(self):
        for a in alerts():
            name = a["alert"]
            with self.subTest(alert=name):
                path = os.path.join(d.RULE_TESTS, name + ".test.yml")
                self.assertTrue(os.path.exists(path), f"missing {path}")
                with open(path) as f:
                    t = yaml.safe_load(f)
                self.assertEqual([os.path.normpath(os.path.join(d.RULE_TESTS, r)) for r in t["rule_files"]],
                                 [d.RULES_FILE])
                fires = silent = False
                for group in t["tests"]:
                    for case in group.get("alert_rule_test", []):
                        if case["alertname"] != name:
                            continue
                        if case.get("exp_alerts"):
                            fires = True
                        else:
                            silent = True
                self.assertTrue(fires, "no case where the alert fires")
                self.assertTrue(silent, "no case where the alert stays silent")

    def test_no_stray_unit_tests(self):
        names = {a["alert"] for a in alerts()}
        for f in os.listdir(d.RULE_TESTS):
            if f.endswith(".test.yml"):
                self.assertIn(f[: -len(".test.yml")], names, f"{f} tests no alert")


def _selector_labels(expr, exported):
    """Labels an expression without aggregation keeps: those of its metrics."""
    out = set()
    for metric in d.metrics_of(expr):
        if metric in exported.series:
            out |= exported.labels_of(metric)
    refs = d.promql_refs(expr)
    if refs["grouping"]:
        return set()
    return out


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        with open(d.PROMETHEUS_RULE, "w") as f:
            f.write(generated_prometheus_rule())
        print("wrote", d.PROMETHEUS_RULE)
        sys.exit(0)
    unittest.main(verbosity=2)
