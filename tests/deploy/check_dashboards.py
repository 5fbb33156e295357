#!/usr/bin/python3
"""Grafana dashboards (dashboards/*.json): importable (valid JSON, uid, title, schemaVersion, a datasource
variable and namespace/workload/pod variables from label_values), unique panel ids, no overlapping panels,
every query (panels and variables) uses only metrics the agent exports and labels those metrics have
(tests/deploy/exported_metrics.txt, itself checked against README.md), and every query parses as PromQL
(promtool). CTest: deploy_dashboards."""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import deploylib as d  # noqa: E402

EXPECTED = {
    "imdswatch-fleet-overview.json": "imdswatch-fleet",
    "imdswatch-workload-drill-down.json": "imdswatch-workload",
    "imdswatch-agent-health.json": "imdswatch-agent",
}
# Dashboards about pods need the pod variables; the agent health dashboard is about agents (job/instance):
# the agent's own metrics have no namespace/workload/pod labels.
POD_VARIABLES = {"imdswatch-fleet", "imdswatch-workload"}
PANEL_TYPES = {"row", "timeseries", "stat", "table", "bargauge", "gauge", "text"}


def placeholder_values(dashboard):
    """A value for every variable, for syntax and name checks."""
    values = {}
    for v in dashboard["templating"]["list"]:
        values[v["name"]] = ["x"] if v.get("multi") else "x"
    values["topn"] = "10"
    return values


def legend_labels(legend):
    return set(re.findall(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}", legend or ""))


class DashboardsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.exported = d.load_exported()
        cls.dashboards = d.load_dashboards()

    def test_the_three_dashboards_exist(self):
        self.assertEqual(set(self.dashboards), set(EXPECTED))
        for name, uid in EXPECTED.items():
            self.assertEqual(self.dashboards[name]["uid"], uid)

    def test_valid_json_as_written(self):
        for name in EXPECTED:
            with open(os.path.join(d.DASHBOARDS, name)) as f:
                json.loads(f.read())

    def test_importable(self):
        uids = set()
        for name, db in self.dashboards.items():
            with self.subTest(dashboard=name):
                self.assertIsInstance(db.get("schemaVersion"), int)
                self.assertGreaterEqual(db["schemaVersion"], 36)
                self.assertTrue(db.get("title"))
                self.assertRegex(db.get("uid", ""), r"^[a-zA-Z0-9_-]{1,40}$")
                self.assertNotIn(db["uid"], uids)
                uids.add(db["uid"])
                self.assertIsNone(db.get("id"), "an exported dashboard carries no database id")
                self.assertIn("templating", db)
                self.assertIn("time", db)

    def test_datasource_is_a_variable(self):
        for name, db in self.dashboards.items():
            with self.subTest(dashboard=name):
                ds = [v for v in db["templating"]["list"] if v["type"] == "datasource"]
                self.assertEqual(len(ds), 1)
                self.assertEqual(ds[0]["name"], "datasource")
                self.assertEqual(ds[0]["query"], "prometheus")
                for v in db["templating"]["list"]:
                    if v["type"] == "query":
                        self.assertEqual(v["datasource"], {"type": "prometheus", "uid": "${datasource}"})
                for p in d.panels_of(db):
                    if p["type"] == "row":
                        continue
                    self.assertEqual(p.get("datasource"), {"type": "prometheus", "uid": "${datasource}"}, p["title"])
                    for t in p.get("targets", []):
                        self.assertEqual(t.get("datasource"), {"type": "prometheus", "uid": "${datasource}"})

    def test_pod_variables_come_from_label_values(self):
        for name, db in self.dashboards.items():
            variables = {v["name"]: v for v in db["templating"]["list"]}
            wanted = ("namespace", "workload", "pod") if db["uid"] in POD_VARIABLES else ("job", "instance")
            for var in wanted:
                with self.subTest(dashboard=name, variable=var):
                    self.assertIn(var, variables)
                    self.assertEqual(variables[var]["type"], "query")
                    selector, label = d.parse_label_values(d.variable_query(variables[var]))
                    self.assertEqual(label, var)

    def test_variable_queries_use_exported_metrics_and_labels(self):
        for name, db in self.dashboards.items():
            defined = set()
            for v in db["templating"]["list"]:
                if v["type"] == "query":
                    with self.subTest(dashboard=name, variable=v["name"]):
                        selector, label = d.parse_label_values(d.variable_query(v))
                        for ref in re.findall(r"\$\{?([A-Za-z0-9_]+)", selector):
                            self.assertIn(ref, defined, f"${ref} used before it is defined")
                        expr = d.grafana_substitute(selector, placeholder_values(db))
                        self.assertEqual(d.check_promql(expr, self.exported), [])
                        (metric,) = d.metrics_of(expr)
                        self.assertIn(label, self.exported.labels_of(metric))
                defined.add(v["name"])

    def test_panel_ids_are_unique_and_panels_do_not_overlap(self):
        for name, db in self.dashboards.items():
            with self.subTest(dashboard=name):
                ids = [p["id"] for p in d.panels_of(db)]
                self.assertEqual(len(ids), len(set(ids)), f"duplicate panel ids in {name}")
                boxes = []
                for p in d.panels_of(db):
                    g = p["gridPos"]
                    self.assertLessEqual(g["x"] + g["w"], 24, p["title"])
                    for (x, y, w, h, title) in boxes:
                        overlap = g["x"] < x + w and x < g["x"] + g["w"] and g["y"] < y + h and y < g["y"] + g["h"]
                        self.assertFalse(overlap, f"{p['title']!r} overlaps {title!r}")
                    boxes.append((g["x"], g["y"], g["w"], g["h"], p["title"]))

    def test_panels(self):
        for name, db in self.dashboards.items():
            variables = {v["name"] for v in db["templating"]["list"]}
            for p in d.panels_of(db):
                with self.subTest(dashboard=name, panel=p["title"]):
                    self.assertIn(p["type"], PANEL_TYPES)
                    if p["type"] == "row":
                        continue
                    targets = p.get("targets", [])
                    self.assertTrue(targets, "a panel without a query")
                    refs = [t["refId"] for t in targets]
                    self.assertEqual(len(refs), len(set(refs)))
                    for t in targets:
                        expr = t["expr"]
                        for ref in re.findall(r"\$\{?([A-Za-z0-9_]+)", expr):
                            self.assertTrue(ref in variables or ref in d.GRAFANA_BUILTINS, f"undefined ${ref}")
                        concrete = d.grafana_substitute(expr, placeholder_values(db))
                        self.assertEqual(d.check_promql(concrete, self.exported), [], expr)
                        refs_ = d.promql_refs(concrete)
                        available = set(refs_["grouping"])
                        if not available:
                            for m in d.metrics_of(concrete):
                                available |= self.exported.labels_of(m)
                        legend = t.get("legendFormat", "")
                        self.assertLessEqual(legend_labels(legend), available, f"legend {legend!r}")

    def test_links_point_at_existing_dashboards(self):
        uids = {db["uid"] for db in self.dashboards.values()}
        for name, db in self.dashboards.items():
            for p in d.panels_of(db):
                for link in p.get("fieldConfig", {}).get("defaults", {}).get("links", []):
                    m = re.match(r"^/d/([^/?]+)", link["url"])
                    self.assertTrue(m and m.group(1) in uids, link["url"])

    def test_queries_parse(self):
        """Every query, variables substituted, through Prometheus's own parser (promtool check rules)."""
        promtool = shutil.which("promtool")
        self.assertIsNotNone(promtool, "promtool missing: scripts/install-deps.sh installs Debian's prometheus")
        rules = []
        for name, db in self.dashboards.items():
            for p in d.panels_of(db):
                for t in p.get("targets", []):
                    rules.append({"record": f"check:{db['uid'].replace('-', '_')}:{p['id']}:{t['refId']}",
                                  "expr": d.grafana_substitute(t["expr"], placeholder_values(db))})
        with tempfile.NamedTemporaryFile("w", suffix=".yml") as f:
            yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}, f)
            f.flush()
            out = subprocess.run([promtool, "check", "rules", f.name], capture_output=True, text=True)
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.assertIn(f"SUCCESS: {len(rules)} rules found", out.stdout)


class ExportedListTest(unittest.TestCase):
    """tests/deploy/exported_metrics.txt against README.md's metric tables."""

    def test_matches_readme(self):
        exported = d.load_exported()
        readme = d.readme_metrics()
        for name, fam in exported.families.items():
            if fam.kind == "scrape":
                continue
            with self.subTest(metric=name):
                if name in readme and readme[name] is not None:
                    self.assertEqual(set(fam.labels), readme[name], "labels differ from README.md")
                elif name not in readme:
                    self.assertIsNotNone(fam.pending, f"{name} is neither in README.md nor marked pending")
        for name, labels in readme.items():
            with self.subTest(readme_metric=name):
                self.assertIn(name, exported.families, "README.md documents it; add it to exported_metrics.txt")

    def test_readme_parser_sees_the_tables(self):
        readme = d.readme_metrics()
        self.assertEqual(readme["imds_requests_total"],
                         {"namespace", "workload", "pod", "container", "call", "version", "outcome", "code", "client"})
        self.assertEqual(readme["imdswatch_events_lost_total"], {"reason"})
        self.assertIsNone(readme["imdswatch_kube_api_up"])
        self.assertEqual(readme["imds_connections_total"], {"namespace", "workload", "pod", "container", "outcome"})


if __name__ == "__main__":
    unittest.main(verbosity=2)
