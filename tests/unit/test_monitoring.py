"""deploy/monitoring, checked offline: the alert rules pass `promtool check rules` and their unit tests
(tests/data/monitoring/alerts_test.yaml, `promtool test rules`), the PrometheusRule holds exactly the
rules of alerts.yaml, every metric the rules and the Grafana dashboard query is one the code exports (so a
renamed metric cannot leave a silent alert or an empty panel behind), the dashboard is well formed, the
PodMonitor scrapes the metrics port of every component in every stack, and the kustomization renders
into resources that validate: the ConfigMap against the Kubernetes schemas, the PodMonitor and the
PrometheusRule against the prometheus-operator's CRDs (tests/data/prometheus-operator/).

Helpers and constants come from tests/unit/test_deploy.py; promtool comes from scripts/get_promtool.sh
(.tools/promtool). A check whose tool is missing is skipped and says which.

`python -m tests.unit.test_monitoring --write` rewrites deploy/monitoring/prometheusrule.yaml from
alerts.yaml.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from functools import cache

import pytest
import yaml

from tests.unit.test_deploy import (
    DOCS,
    K8S_VERSION,
    METRICS_PORTS,
    NO_SCHEMAS,
    ROOT,
    VARIANTS,
    _kustomization_files,
    _rendered,
    _workloads,
    crd_validator,
    render,
)

MONITORING = ROOT / "deploy" / "monitoring"
ALERTS = MONITORING / "alerts.yaml"
RULE = MONITORING / "prometheusrule.yaml"
DASHBOARD = MONITORING / "harpagon.json"
ALERTS_TEST = ROOT / "tests" / "data" / "monitoring" / "alerts_test.yaml"
README = ROOT / "README.md"
#: scripts/get_promtool.sh puts it here.
PROMTOOL = ROOT / ".tools" / "promtool"
NO_PROMTOOL = "promtool not found: run scripts/get_promtool.sh"
CRD_DIR = ROOT / "tests" / "data" / "prometheus-operator"
CRDS = {("monitoring.coreos.com/v1", kind): CRD_DIR / f"monitoring.coreos.com_{kind.lower()}s.yaml"
        for kind in ("PodMonitor", "PrometheusRule")}
SEVERITIES = {"critical", "warning"}
#: What the dashboard's panels query through: its `datasource` variable.
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
#: Grafana 12's dashboard schema (Grafana migrates older ones on load, not newer ones).
SCHEMA_VERSION = 41
#: Exported families the dashboard may leave out: the frames' cumulative latency, which the latency
#: histogram shows better.
NOT_ON_THE_DASHBOARD = {"nv_inference_request_duration_us"}
#: The alerts promtool's unit tests must show firing and not firing (all of alerts.yaml's, in fact).
MUST_TEST = {"HarpagonPromiseNotKept", "HarpagonAppsRefused", "HarpagonWorkerEvicted", "HarpagonFleetShort"}
RULE_HEADER = """\
# Generated from alerts.yaml (the same groups) by `.venv/bin/python -m tests.unit.test_monitoring --write`:
# edit alerts.yaml, then regenerate; tests/unit/test_monitoring.py fails while the two differ.
# For the prometheus-operator: a Prometheus whose ruleSelector selects it loads these rules (with
# kube-prometheus-stack, label it `release: <your release>` or set
# prometheus.prometheusSpec.ruleSelectorNilUsesHelmValues=false). docs/deploy.md, "Monitoring".
"""


# --- helpers --------------------------------------------------------------------------------


def _groups() -> list[dict]:
    return yaml.safe_load(ALERTS.read_text())["groups"]


def _rules(kind: str) -> list[dict]:
    """The alerting (`alert`) or recording (`record`) rules of alerts.yaml."""
    return [r for g in _groups() for r in g["rules"] if kind in r]


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (PromQL) as literal blocks, the way alerts.yaml writes them."""


def _string(dumper: yaml.SafeDumper, value: str):
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _string)


def prometheus_rule(groups: list[dict]) -> str:
    """The PrometheusRule text that wraps `groups` (what prometheusrule.yaml must hold)."""
    doc = {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
           "metadata": {"name": "harpagon", "labels": {"app.kubernetes.io/name": "harpagon"}},
           "spec": {"groups": groups}}
    return RULE_HEADER + yaml.dump(doc, Dumper=_Dumper, sort_keys=False, width=110, allow_unicode=True)


def _promtool() -> str:
    if not PROMTOOL.exists():
        pytest.skip(NO_PROMTOOL)
    return str(PROMTOOL)


def _monitoring() -> tuple[dict, ...]:
    return render(MONITORING)


def _one(kind: str) -> dict:
    (doc,) = [d for d in _monitoring() if d["kind"] == kind]
    return doc


def _python_patterns(schema):
    """The schema with Go (RE2) patterns that set a flag mid-expression, `^(?i)(abort|warn)?$`, written as
    Python's `re` wants them (flags first): the same language."""
    if isinstance(schema, list):
        return [_python_patterns(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _python_patterns(v) for k, v in schema.items()}
    pattern = out.get("pattern")
    if isinstance(pattern, str) and "(?i)" in pattern[1:]:
        out["pattern"] = "(?i)" + pattern.replace("(?i)", "")
    return out


def _crd_validator(api_version: str, kind: str):
    """The CRD's schema, closed to fields it does not declare, its Go patterns as Python reads them."""
    return crd_validator(CRDS[(api_version, kind)], api_version, kind, _python_patterns)


def _crd_errors(doc: dict) -> list[str]:
    validator = _crd_validator(doc["apiVersion"], doc["kind"])
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))]


# --- PromQL: which metrics an expression reads -----------------------------------------------

#: Words of PromQL that are no metric: binary and set operators, vector matching, modifiers, numbers.
KEYWORDS = {"and", "or", "unless", "atan2", "bool", "by", "without", "on", "ignoring", "group_left",
            "group_right", "offset", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects. Strings, label matchers (`{...}`), ranges and
    subqueries (`[...]`), the label lists of by/without/on/ignoring/group_left/group_right and Grafana's
    `$variables` go first; of the identifiers left, a function or aggregation is one followed by `(`, and a
    duration or number's letters (`10m`, `1e6`) follow a digit."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    text = re.sub(r"\{[^{}]*\}", " ", text)
    text = re.sub(r"\[[^\[\]]*\]", " ", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", " ", text)
    text = re.sub(r"\$\{?\w+\}?", " ", text)
    names = set()
    for m in re.finditer(r"(?<![\w.:$])([A-Za-z_:][\w:]*)(\s*\()?", text):
        name, call = m.groups()
        if not call and name.lower() not in KEYWORDS:
            names.add(name)
    return names


def _variable_expr(query) -> str | None:
    """The PromQL of a Grafana query variable: EXPR of `label_values(EXPR, label)`, None for
    `label_values(label)`."""
    text = query["query"] if isinstance(query, dict) else query
    m = re.fullmatch(r"\s*label_values\((.*),\s*\w+\s*\)\s*", text, re.DOTALL)
    if m:
        return m.group(1)
    assert not text.strip().startswith(("query_result", "metrics(")), f"variable query {text!r}: not checked"
    return None if re.fullmatch(r"\s*label_values\(\s*\w+\s*\)\s*", text) else text


def _dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def _dashboard_exprs(dashboard: dict) -> list[tuple[str, str]]:
    """(where, PromQL) of every query of the dashboard: panels' targets, annotations, variables."""
    out = []
    for p in dashboard["panels"]:
        out += [(f"panel {p['title']!r} {t['refId']}", t["expr"]) for t in p.get("targets", [])]
    out += [(f"annotation {a['name']!r}", a["expr"]) for a in dashboard["annotations"]["list"] if "expr" in a]
    for v in dashboard["templating"]["list"]:
        if v["type"] == "query" and (expr := _variable_expr(v["query"])) is not None:
            out.append((f"variable {v['name']!r}", expr))
    return out


def _sample_names(family) -> set[str]:
    """The names a scraper sees for a family: Triton's counters as Triton names them (no `_total`), other
    counters with `_total`, histograms as `_bucket`, `_sum` and `_count` (`_created` is disabled)."""
    from harpagon.runtime.metrics import TRITON_COUNTERS

    name = family.name
    if family.type == "counter":
        return {name if name in TRITON_COUNTERS else f"{name}_total"}
    if family.type == "histogram":
        return {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    if family.type == "summary":
        return {name, f"{name}_sum", f"{name}_count"}
    if family.type == "info":
        return {f"{name}_info"}
    return {name}


def _exposed_types(text: str) -> set[str]:
    """The same, read from the `# TYPE` lines of a real exposition."""
    out = set()
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE):
        out |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"} if kind == "histogram" else {name}
    return out


@cache
def exported() -> dict[str, frozenset[str]]:
    """Metric family -> the sample names it exports, for every component's registry (as the components
    build it: their metrics, the certificate expiry collector, the standard process collectors) and
    Prometheus's own `up`."""
    from prometheus_client import CollectorRegistry

    from harpagon.runtime.metrics import (
        ControllerMetrics,
        FrontendMetrics,
        WorkerMetrics,
        exposition,
        standard_collectors,
    )
    from harpagon.runtime.wire.certmetrics import CertificateExpiry

    families: dict[str, frozenset[str]] = {"up": frozenset({"up"})}
    for role, metrics in (("frontend", FrontendMetrics), ("worker", WorkerMetrics),
                          ("controller", ControllerMetrics)):
        registry = CollectorRegistry()
        metrics(registry)
        registry.register(CertificateExpiry(role, ROOT / "no-such-tls-dir"))
        standard_collectors(registry)
        derived: set[str] = set()
        for family in registry.collect():
            families[family.name] = frozenset(_sample_names(family))
            derived |= families[family.name]
        seen = _exposed_types(exposition(registry.collect()).decode())
        assert derived == seen, f"{role}: derived {sorted(derived ^ seen)} unlike the exposition's"
    return families


def _known(recorded: bool) -> set[str]:
    names = {n for samples in exported().values() for n in samples}
    return names | {r["record"] for r in _rules("record")} if recorded else names


# --- alert rules ----------------------------------------------------------------------------


def test_promtool_checks_the_rules():
    out = subprocess.run([_promtool(), "check", "rules", str(ALERTS)], check=False, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_promtool_unit_tests_of_the_alerts_pass():
    out = subprocess.run([_promtool(), "test", "rules", str(ALERTS_TEST)], check=False, capture_output=True,
                         text=True, timeout=120, cwd=ALERTS_TEST.parent)
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_alert_is_tested_firing_and_not_firing():
    """An alert tested only where it fires would pass if it always fired; only where it is quiet, if it
    never did."""
    tests = yaml.safe_load(ALERTS_TEST.read_text())
    assert (ALERTS_TEST.parent / tests["rule_files"][0]).resolve() == ALERTS
    firing, quiet = set(), set()
    for t in tests["tests"]:
        for check in t.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    alerts = {r["alert"] for r in _rules("alert")}
    assert MUST_TEST <= alerts
    assert alerts - firing == set(), "alerts never shown firing"
    assert alerts - quiet == set(), "alerts never shown quiet"
    assert (firing | quiet) - alerts == set(), "tests of alerts that do not exist"


def test_every_alert_has_a_severity_a_summary_and_a_description_and_is_documented():
    text = DOCS.read_text()
    heading = re.search(r"^## (?:\d+\. )?Monitoring$", text, re.MULTILINE)
    assert heading, "docs/deploy.md has no Monitoring section"
    section = text[heading.end():].split("\n## ", 1)[0]
    names = [r["alert"] for r in _rules("alert")]
    assert len(names) == len(set(names)), "two alerts of one name"
    for r in _rules("alert"):
        where = r["alert"]
        assert re.fullmatch(r"Harpagon[A-Z]\w+", where), where
        assert r["labels"]["severity"] in SEVERITIES, where
        assert r["annotations"]["summary"].strip() and r["annotations"]["description"].strip(), where
        assert f"`{where}`" in section, f"docs/deploy.md, Monitoring: nothing says what to do about {where}"
    for r in _rules("record"):
        assert re.fullmatch(r"\w+:\w+:\w+", r["record"]), f"{r['record']}: not level:metric:operations"


def test_the_prometheus_rule_holds_the_same_rules_as_alerts_yaml():
    text = RULE.read_text()
    assert text.startswith(RULE_HEADER), "prometheusrule.yaml is generated: run " \
        "`.venv/bin/python -m tests.unit.test_monitoring --write`"
    rule = yaml.safe_load(text)
    assert rule["spec"]["groups"] == _groups(), "prometheusrule.yaml differs from alerts.yaml: run " \
        "`.venv/bin/python -m tests.unit.test_monitoring --write`"
    assert yaml.safe_load(prometheus_rule(_groups())) == rule


# --- the metrics they read ------------------------------------------------------------------


@pytest.mark.parametrize(("expr", "names"), [
    ('sum by (model, reason) (rate(nv_inference_request_failure{model=~"$app", reason!="x y"}[$__interval]))',
     {"nv_inference_request_failure"}),
    ("a:b:rate10m < on (namespace) group_left () max by (namespace) (target) and on (ns, model) c >= 1",
     {"a:b:rate10m", "target", "c"}),
    ("histogram_quantile(0.99, sum without (pod) (rate(h_bucket[5m] offset 1h))) / 1e6 * 21 * 86400",
     {"h_bucket"}),
    ('absent(up{job="harpagon"} == 1) or x unless y offset 15m or vector(0) or max_over_time(z[1h:5m])',
     {"up", "x", "y", "z"}),
    ('label_replace(m{a="b"}, "dst", "$1", "src", "(.*)") > bool 0 or sum(g) by (le) or inf',
     {"m", "g"}),
])
def test_metric_names_reads_promql(expr, names):
    assert metric_names(expr) == names


def test_every_metric_the_rules_read_is_exported():
    known = _known(recorded=True)
    unknown = {f"{r.get('alert') or r['record']}: {n}" for r in _rules("alert") + _rules("record")
               for n in metric_names(str(r["expr"])) - known}
    assert not unknown, f"rules read metrics nothing exports: {sorted(unknown)}"


def test_every_metric_the_dashboard_reads_is_exported():
    known = _known(recorded=False)  # the dashboard must work without the recording rules
    exprs = _dashboard_exprs(_dashboard())
    assert len(exprs) > 30
    unknown = {f"{where}: {n}" for where, expr in exprs for n in metric_names(expr) - known}
    assert not unknown, f"the dashboard reads metrics nothing exports: {sorted(unknown)}"


def test_the_dashboard_shows_every_harpagon_and_triton_metric():
    """A metric added to the code shows up on the dashboard (or is listed as left out)."""
    used = {n for _, expr in _dashboard_exprs(_dashboard()) for n in metric_names(expr)}
    missing = {family for family, samples in exported().items()
               if family.startswith(("harpagon_", "nv_")) and not samples & used} - NOT_ON_THE_DASHBOARD
    assert not missing, f"exported but on no panel: {sorted(missing)}"


# --- the dashboard --------------------------------------------------------------------------


def test_the_dashboard_is_well_formed():
    d = _dashboard()
    assert d["uid"] == "harpagon" and d["title"] and d.get("id") is None
    assert d["schemaVersion"] == SCHEMA_VERSION
    variables = {v["name"]: v for v in d["templating"]["list"]}
    datasource = variables["datasource"]
    assert datasource["type"] == "datasource" and datasource["query"] == "prometheus"
    for v in variables.values():
        if v["type"] == "query":
            assert v["datasource"] == DATASOURCE, f"variable {v['name']}"
    for a in d["annotations"]["list"]:
        assert a["datasource"] == DATASOURCE, f"annotation {a['name']}"

    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    cells: dict[tuple[int, int], str] = {}
    for p in d["panels"]:
        where = f"panel {p['id']} {p['title']!r}"
        assert p["datasource"] == DATASOURCE, f"{where}: not on the datasource variable"
        assert "panels" not in p or not p["panels"], f"{where}: nested panels are not checked"
        g = p["gridPos"]
        assert g["x"] >= 0 and g["w"] > 0 and g["x"] + g["w"] <= 24 and g["h"] > 0, where
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{where} overlaps {cells[(x, y)]}"
                cells[(x, y)] = where
        if p["type"] == "row":
            assert not p.get("targets"), where
            continue
        assert p["targets"], f"{where}: no query"
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs)), f"{where}: refIds repeat"
        for t in p["targets"]:
            assert t["datasource"] == DATASOURCE, f"{where} {t['refId']}: not on the datasource variable"
            assert t["expr"].strip(), where


# --- the resources --------------------------------------------------------------------------


def test_the_kustomization_renders_and_validates():
    kv = pytest.importorskip("kubernetes_validate", reason=NO_SCHEMAS)
    files = _kustomization_files(MONITORING)
    assert {f.name for f in files} == {"podmonitor.yaml", "prometheusrule.yaml"}
    docs = _monitoring()
    assert sorted(d["kind"] for d in docs) == ["ConfigMap", "PodMonitor", "PrometheusRule"]
    for doc in docs:
        where = f"{doc['kind']} {doc['metadata']['name']}"
        assert doc["metadata"]["namespace"] == "harpagon", where
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "harpagon", where
        if (doc["apiVersion"], doc["kind"]) in CRDS:
            errors = _crd_errors(doc)
            assert not errors, f"{where}: " + "; ".join(errors)
        else:
            try:
                kv.validate(doc, K8S_VERSION, strict=True)
            except kv.ValidationError as exc:
                pytest.fail(f"{where}: {exc}")
    # the closed schemas refuse what the API server would drop
    typo = copy.deepcopy(_one("PodMonitor"))
    typo["spec"]["podMetricEndpoints"] = typo["spec"].pop("podMetricsEndpoints")
    assert _crd_errors(typo), "the PodMonitor schema lets misspelt fields through"
    typo = copy.deepcopy(_one("PrometheusRule"))
    typo["spec"]["groups"][0]["rules"][0]["expression"] = "1"
    assert _crd_errors(typo), "the PrometheusRule schema lets misspelt fields through"


def test_the_dashboard_config_map_is_the_one_grafanas_sidecar_loads():
    cm = _one("ConfigMap")
    assert cm["metadata"]["name"] == "harpagon-dashboard", "a hash suffix would leave old dashboards behind"
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["data"] == {"harpagon.json": DASHBOARD.read_text()}


def test_the_prometheus_rule_renders_with_alerts_yaml_rules():
    assert _one("PrometheusRule")["spec"]["groups"] == _groups()


def _pod_selected(selector: dict, labels: dict) -> bool:
    """A label selector (matchLabels, matchExpressions) against a pod's labels."""
    ok = all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())
    for e in selector.get("matchExpressions", []):
        value, op = labels.get(e["key"]), e["operator"]
        ok &= {"In": value in e.get("values", ()), "NotIn": value not in e.get("values", ()),
               "Exists": e["key"] in labels, "DoesNotExist": e["key"] not in labels}[op]
    return ok


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_pod_monitor_scrapes_every_component_on_its_metrics_port(variant):
    """In every stack the PodMonitor selects the controller, frontend and worker pods, each exposes the
    endpoint's port name as its metrics port (the one its prometheus.io/port annotation names), and the
    labels the rules expect come from pod labels: job (jobLabel) and component (a relabeling)."""
    monitor = _one("PodMonitor")
    spec = monitor["spec"]
    (endpoint,) = spec["podMetricsEndpoints"]
    (relabel,) = [r for r in endpoint["relabelings"] if r.get("targetLabel") == "component"]
    (source,) = relabel["sourceLabels"]
    assert endpoint.get("path", "/metrics") == "/metrics"
    components = set()
    for d in _workloads(_rendered(variant)):
        template = d["spec"]["template"]
        labels = template["metadata"]["labels"]
        if not _pod_selected(spec["selector"], labels):
            continue
        where = f"{variant}: {d['metadata']['name']}"
        component = labels["app.kubernetes.io/component"]
        components.add(component)
        ports = [p for c in template["spec"]["containers"] for p in c.get("ports", [])
                 if p.get("name") == endpoint["port"]]
        assert [p["containerPort"] for p in ports] == [METRICS_PORTS[component]], \
            f"{where}: no single port named {endpoint['port']!r} on {METRICS_PORTS[component]}"
        annotations = template["metadata"]["annotations"]
        assert annotations["prometheus.io/port"] == str(METRICS_PORTS[component]), where
        assert labels[spec["jobLabel"]] == "harpagon", where
        sanitized = {"__meta_kubernetes_pod_label_" + re.sub(r"\W", "_", k): v for k, v in labels.items()}
        assert sanitized.get(source) == component, f"{where}: {source} is not its component"
    assert components == set(METRICS_PORTS), f"{variant}: the PodMonitor scrapes only {sorted(components)}"
    # the alerts find the targets by the job the pods' label gives
    assert all('job="harpagon"' in r["expr"] for r in _rules("alert") if "up" in metric_names(r["expr"]))


def test_docs_point_at_the_monitoring():
    text = DOCS.read_text()
    for needed in ("deploy/monitoring", "PodMonitor", "PrometheusRule", "grafana_dashboard", "alerts.yaml",
                   "promtool"):
        assert needed in text, f"docs/deploy.md does not mention {needed!r}"
    assert "deploy/monitoring" in README.read_text(), "README.md does not point at deploy/monitoring"


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python -m tests.unit.test_monitoring --write  "
                 "(rewrites deploy/monitoring/prometheusrule.yaml)")
    RULE.write_text(prometheus_rule(_groups()))
    print(f"wrote {RULE.relative_to(ROOT)}")
