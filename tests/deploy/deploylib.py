"""Shared helpers of the deploy/dashboard/rules tests (Debian's /usr/bin/python3 + python3-yaml).

- REPO and friends: where things are.
- load_exported(): tests/deploy/exported_metrics.txt, the one list of metrics and labels queries may use.
- readme_metrics(): the metric families and labels README.md documents.
- promql_refs(): metric names, matcher labels and grouping labels a PromQL expression uses.
- grafana_substitute(): a dashboard query with its $variables replaced, as Grafana would send it.
- render_kustomize(): the manifests of a kustomize directory (the subset of kustomize the base uses),
  cross-checked against `kubectl kustomize` where kubectl exists.
"""
import copy
import json
import os
import re
import shutil
import subprocess

import yaml

REPO = os.path.realpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
DEPLOY = os.path.join(REPO, "deploy")
DASHBOARDS = os.path.join(REPO, "dashboards")
RULES_FILE = os.path.join(DEPLOY, "rules", "imdswatch.rules.yml")
PROMETHEUS_RULE = os.path.join(DEPLOY, "prometheusrule.yaml")
RUNBOOK = os.path.join(REPO, "docs", "runbook.md")
EXPORTED = os.path.join(REPO, "tests", "deploy", "exported_metrics.txt")
RULE_TESTS = os.path.join(REPO, "tests", "deploy", "rules")


def binary_dir():
    """The CMake build directory whose imdswatch is under test (IMDSWATCH_BINARY_DIR, else build/)."""
    return os.environ.get("IMDSWATCH_BINARY_DIR") or os.path.join(REPO, "build")


def agent_binary():
    return os.path.join(binary_dir(), "imdswatch")


# ---------------------------------------------------------------------------------------------------------
# The list of exported metrics


class Family:
    def __init__(self, name, kind, labels, pending):
        self.name, self.kind, self.labels, self.pending = name, kind, frozenset(labels), pending

    def series_names(self):
        """{series name: its labels}: a histogram is three series names."""
        if self.kind == "histogram":
            return {
                self.name + "_bucket": self.labels | {"le"},
                self.name + "_sum": self.labels,
                self.name + "_count": self.labels,
            }
        return {self.name: self.labels}


class Exported:
    def __init__(self, families, target_labels):
        self.families = families  # name -> Family
        self.target_labels = frozenset(target_labels)
        self.series = {}  # series name -> (Family, labels)
        for fam in families.values():
            for series, labels in fam.series_names().items():
                self.series[series] = (fam, labels)

    def labels_of(self, series):
        fam, labels = self.series[series]
        return labels | self.target_labels


def load_exported(path=EXPORTED):
    families, target = {}, set()
    with open(path) as f:
        for lineno, raw in enumerate(f, 1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            parts = line.split()
            if parts[0] == "@target":
                target.update(parts[1].split(","))
                continue
            if len(parts) not in (3, 4):
                raise ValueError(f"{path}:{lineno}: want '<family> <type> <labels> [pending=why]': {raw!r}")
            name, kind, labels = parts[:3]
            pending = None
            if len(parts) == 4:
                if not parts[3].startswith("pending="):
                    raise ValueError(f"{path}:{lineno}: 4th column must be pending=<why>")
                pending = parts[3][len("pending="):]
            if kind not in ("counter", "gauge", "histogram", "scrape"):
                raise ValueError(f"{path}:{lineno}: unknown type {kind}")
            if name in families:
                raise ValueError(f"{path}:{lineno}: {name} listed twice")
            families[name] = Family(name, kind, [] if labels == "-" else labels.split(","), pending)
    return Exported(families, target)


def readme_metrics(path=os.path.join(REPO, "README.md")):
    """{family: set(labels) or None} from README.md's "## Metrics" section: the table rows (labels column,
    parenthesised value lists dropped) and the `name{label,...}` mentions of the self-health paragraph; a
    metric named without braces there has labels None (README does not say)."""
    with open(path) as f:
        text = f.read()
    m = re.search(r"^## Metrics\s*$(.*?)(?=^## )", text, re.S | re.M)
    if not m:
        raise ValueError("README.md has no '## Metrics' section")
    section = m.group(1)
    found = {}
    for row in re.finditer(r"^\|\s*`([a-z_:][a-z0-9_:]*)`[^|]*\|\s*([^|]*)\|\s*$", section, re.M):
        column = re.sub(r"\([^)]*\)", "", row.group(2))
        labels = {l.strip() for l in column.split(",") if l.strip()}
        found[row.group(1)] = labels
    for mention in re.finditer(r"`([a-z_:][a-z0-9_:]*)(?:\{([a-z_,]*)\})?`", section):
        name = mention.group(1)
        if name in found or "_" not in name:
            continue
        if not (name.startswith("imds") or name.startswith("process_")):
            continue
        found[name] = None if mention.group(2) is None else set(filter(None, mention.group(2).split(",")))
    return found


# ---------------------------------------------------------------------------------------------------------
# PromQL

AGGREGATIONS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk",
                "topk", "quantile"}
FUNCTIONS = {
    "abs", "absent", "absent_over_time", "ceil", "changes", "clamp", "clamp_max", "clamp_min", "day_of_month",
    "day_of_week", "day_of_year", "days_in_month", "delta", "deriv", "exp", "floor", "histogram_quantile",
    "holt_winters", "hour", "idelta", "increase", "irate", "ln", "log2", "log10", "minute", "month",
    "predict_linear", "rate", "resets", "round", "scalar", "sgn", "sort", "sort_desc", "sqrt", "time",
    "timestamp", "vector", "year", "avg_over_time", "min_over_time", "max_over_time", "sum_over_time",
    "count_over_time", "quantile_over_time", "stddev_over_time", "stdvar_over_time", "last_over_time",
    "present_over_time", "acos", "acosh", "asin", "asinh", "atan", "atanh", "cos", "cosh", "sin", "sinh", "tan",
    "tanh", "deg", "rad", "pi",
}
# label_replace/label_join take label names inside strings: not supported by the checks, so not allowed.
UNSUPPORTED = {"label_replace", "label_join"}
GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
KEYWORDS = {"bool", "and", "or", "unless", "offset", "atan2", "inf", "nan"}

_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<range>\[[^\]]*\])
  | (?P<var>\$\{[^}]*\}|\$[A-Za-z_][A-Za-z0-9_]*)
  | (?P<duration>\d+(?:ms|[smhdwy])(?:\d+(?:ms|[smhdwy]))*)
  | (?P<number>0x[0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<op>=~|!~|!=|==|<=|>=|[-+*/%^<>=(){},@])
""", re.X)


class PromQLError(ValueError):
    pass


def _tokens(expr):
    pos, out = 0, []
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if not m:
            raise PromQLError(f"cannot tokenize at {expr[pos:pos + 20]!r}")
        pos = m.end()
        kind = m.lastgroup
        if kind != "ws":
            out.append((kind, m.group()))
    return out


def promql_refs(expr):
    """What an expression uses: {"selectors": [(metric, {labels in matchers})], "grouping": {labels in
    by/without/on/ignoring/group_left/group_right}}. Raises PromQLError on constructs the checks do not
    understand (label_replace, selectors without a metric name, unknown functions)."""
    toks = _tokens(expr)
    selectors, grouping = [], set()
    i = 0

    def label_list(j):
        # toks[j] == "(": read ident (, ident)* ")"
        names = []
        j += 1
        while j < len(toks) and toks[j][1] != ")":
            if toks[j][0] == "ident":
                names.append(toks[j][1])
            elif toks[j][1] != ",":
                raise PromQLError(f"unexpected {toks[j][1]!r} in a label list of {expr!r}")
            j += 1
        return names, j + 1

    def matchers(j):
        # toks[j] == "{": label op string (, label op string)* "}"
        labels = set()
        j += 1
        while j < len(toks) and toks[j][1] != "}":
            kind, text = toks[j]
            if kind == "ident":
                if j + 2 >= len(toks) or toks[j + 1][1] not in ("=", "!=", "=~", "!~") or toks[j + 2][0] != "string":
                    raise PromQLError(f"bad matcher after {text!r} in {expr!r}")
                labels.add(text)
                j += 3
            elif text == ",":
                j += 1
            else:
                raise PromQLError(f"unexpected {text!r} in matchers of {expr!r}")
        return labels, j + 1

    while i < len(toks):
        kind, text = toks[i]
        nxt = toks[i + 1][1] if i + 1 < len(toks) else None
        if kind == "ident":
            low = text.lower()
            if text in UNSUPPORTED:
                raise PromQLError(f"{text} is not allowed in dashboards/rules (the checks cannot see its labels)")
            if low in GROUPING:
                if nxt == "(":
                    names, i = label_list(i + 1)
                    grouping.update(names)
                    continue
                i += 1
                continue
            if low in KEYWORDS:
                i += 1
                continue
            if text in AGGREGATIONS or text in FUNCTIONS:
                if nxt not in ("(", "by", "without"):
                    raise PromQLError(f"{text} used as a metric name in {expr!r}")
                i += 1
                continue
            if nxt == "(":
                raise PromQLError(f"unknown function {text} in {expr!r}")
            labels = set()
            i += 1
            if nxt == "{":
                labels, i = matchers(i)
            selectors.append((text, labels))
            continue
        if text == "{":
            raise PromQLError(f"selector without a metric name in {expr!r}")
        i += 1
    return {"selectors": selectors, "grouping": grouping}


def check_promql(expr, exported, extra_labels=()):
    """Problems with an expression's metric and label names against the exported list ([] when none)."""
    try:
        refs = promql_refs(expr)
    except PromQLError as e:
        return [str(e)]
    problems, available = [], set(extra_labels)
    if not refs["selectors"]:
        problems.append(f"no metric in {expr!r}")
    for metric, labels in refs["selectors"]:
        if metric not in exported.series:
            problems.append(f"{metric} is not a metric the agent exports (tests/deploy/exported_metrics.txt)")
            continue
        allowed = exported.labels_of(metric) | {"__name__"}
        available |= allowed
        for label in sorted(labels - allowed):
            problems.append(f"{metric} has no label {label!r}")
    if not problems:
        for label in sorted(refs["grouping"] - available):
            problems.append(f"grouping label {label!r} is on none of the metrics of {expr!r}")
    return problems


def metrics_of(expr):
    return {m for m, _ in promql_refs(expr)["selectors"]}


# ---------------------------------------------------------------------------------------------------------
# Grafana

# What the e2e test and the syntax check substitute for Grafana's built-in variables.
GRAFANA_BUILTINS = {
    "__rate_interval": "1m",
    "__interval": "5s",
    "__interval_ms": "5000",
    "__range": "5m",
    "__range_s": "300",
    "__range_ms": "300000",
}


def grafana_substitute(expr, values):
    """Replaces $var, ${var} and ${var:format} with values[var] (a list for multi-value variables, rendered
    as Grafana renders them in PromQL: one value as is, several as (a|b), regex-escaped)."""

    def render(name, fmt):
        if name in GRAFANA_BUILTINS:
            return GRAFANA_BUILTINS[name]
        if name not in values:
            raise KeyError(f"no value for ${name}")
        v = values[name]
        if isinstance(v, (list, tuple)):
            if len(v) == 1:
                return v[0] if v[0] == ".*" else re.escape(v[0]) if fmt == "regex" else v[0]
            return "(" + "|".join(re.escape(x) for x in v) + ")"
        return v

    def repl(m):
        name = m.group(1) or m.group(3)
        fmt = m.group(2)
        return render(name, fmt)

    return re.sub(r"\$\{([A-Za-z0-9_]+)(?::([a-z]+))?\}|\$([A-Za-z0-9_]+)", repl, expr)


def load_dashboards():
    out = {}
    for name in sorted(os.listdir(DASHBOARDS)):
        if name.endswith(".json"):
            with open(os.path.join(DASHBOARDS, name)) as f:
                out[name] = json.load(f)
    return out


def panels_of(dashboard):
    """Every panel, rows' nested panels included."""
    for p in dashboard.get("panels", []):
        yield p
        for q in p.get("panels", []) or []:
            yield q


def variable_query(var):
    q = var.get("query")
    if isinstance(q, dict):
        q = q.get("query")
    return q or var.get("definition")


_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(.*?)\s*,\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)\s*$", re.S)


def parse_label_values(query):
    """label_values(selector, label) -> (selector, label)."""
    m = _LABEL_VALUES.match(query or "")
    if not m:
        raise ValueError(f"not a label_values(selector, label) query: {query!r}")
    return m.group(1), m.group(2)


# ---------------------------------------------------------------------------------------------------------
# kustomize

NAMESPACED = {"ServiceAccount", "DaemonSet", "Service", "ServiceMonitor", "PrometheusRule", "ConfigMap",
              "Deployment", "Role", "RoleBinding", "Secret"}


def load_yaml_docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def _json_patch(doc, ops):
    for op in ops:
        if op["op"] != "add":
            raise ValueError(f"unsupported JSON patch op {op['op']}")
        parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].lstrip("/").split("/")]
        target = doc
        for p in parts[:-1]:
            target = target[int(p)] if isinstance(target, list) else target[p]
        last = parts[-1]
        if isinstance(target, list):
            if last == "-":
                target.append(copy.deepcopy(op["value"]))
            else:
                target.insert(int(last), copy.deepcopy(op["value"]))
        else:
            target[last] = copy.deepcopy(op["value"])


def _apply_component(docs, directory):
    (k,) = load_yaml_docs(os.path.join(directory, "kustomization.yaml"))
    if k.get("kind") != "Component":
        raise ValueError(f"{directory} is not a kustomize Component")
    unknown = set(k) - {"apiVersion", "kind", "patches"}
    if unknown:
        raise ValueError(f"{directory}: kustomization fields the renderer does not know: {sorted(unknown)}")
    for patch in k.get("patches", []):
        target = patch["target"]
        ops = yaml.safe_load(patch["patch"])
        hits = [d for d in docs if d["kind"] == target["kind"] and d["metadata"]["name"] == target["name"]]
        if not hits:
            raise ValueError(f"{directory}: patch target {target} matches nothing")
        for d in hits:
            _json_patch(d, ops)


def render_kustomize_python(directory, components=()):
    """The base's kustomization as kustomize builds it, for the fields the base uses: resources, namespace,
    labels (metadata only), images and components with JSON6902 patches. Unknown fields are an error, so
    the renderer cannot silently diverge from kustomize."""
    (k,) = load_yaml_docs(os.path.join(directory, "kustomization.yaml"))
    unknown = set(k) - {"apiVersion", "kind", "namespace", "labels", "resources", "images", "components"}
    if unknown:
        raise ValueError(f"kustomization fields the renderer does not know: {sorted(unknown)}")
    docs = []
    for res in k.get("resources", []):
        docs.extend(load_yaml_docs(os.path.join(directory, res)))
    for comp in list(k.get("components", [])) + list(components):
        _apply_component(docs, os.path.join(directory, comp))
    ns = k.get("namespace")
    for d in docs:
        md = d.setdefault("metadata", {})
        if ns and d["kind"] in NAMESPACED:
            md["namespace"] = ns
        if ns and d["kind"] in ("ClusterRoleBinding", "RoleBinding"):
            for s in d.get("subjects", []):
                if s.get("kind") == "ServiceAccount":
                    s["namespace"] = ns
        for entry in k.get("labels", []):
            if entry.get("includeSelectors") or entry.get("includeTemplates"):
                raise ValueError("labels with includeSelectors/includeTemplates are not rendered")
            md.setdefault("labels", {}).update(entry["pairs"])
    for img in k.get("images", []):
        for d in docs:
            spec = d.get("spec", {}).get("template", {}).get("spec", {})
            for c in spec.get("containers", []) + spec.get("initContainers", []):
                name, _, tag = c["image"].partition(":")
                if name == img["name"]:
                    c["image"] = img.get("newName", name) + ":" + str(img.get("newTag", tag or "latest"))
    return docs


def kubectl_kustomize(directory):
    """`kubectl kustomize` output, or None when kubectl is not installed."""
    kubectl = shutil.which("kubectl")
    if not kubectl:
        return None
    out = subprocess.run([kubectl, "kustomize", directory], capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {directory} failed: {out.stderr}")
    return [d for d in yaml.safe_load_all(out.stdout) if d is not None]


def by_kind_name(docs):
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def find(docs, kind, name=None):
    hits = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    if len(hits) != 1:
        raise AssertionError(f"want exactly one {kind} {name or ''}, found {len(hits)}")
    return hits[0]


# ---------------------------------------------------------------------------------------------------------
# Docs


def github_anchor(heading):
    """The anchor GitHub gives a Markdown heading."""
    a = heading.strip().lower()
    a = re.sub(r"[^\w\- ]", "", a)
    return a.replace(" ", "-")


def runbook_anchors(path=RUNBOOK):
    anchors = set()
    with open(path) as f:
        for line in f:
            m = re.match(r"^#{1,6}\s+(.*)$", line)
            if m:
                anchors.add(github_anchor(m.group(1)))
    return anchors


def agent_help():
    out = subprocess.run([agent_binary(), "--help"], capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        raise RuntimeError(f"imdswatch --help failed: {out.stderr}")
    return out.stdout


def help_flags(help_text):
    return set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9.-]*)", help_text))
