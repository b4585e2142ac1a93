"""Prometheus config and alerting rules, checked and unit-tested by the real promtool."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]
PROM = REPO / "deploy" / "prometheus"
DASHBOARD = REPO / "deploy" / "grafana" / "dashboards" / "bando.json"
METRIC = re.compile(r"\bbando_[a-z0-9_]+\b")


def run(promtool: str, *args: str, cwd: Path = PROM) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def test_rules_pass_promtool_check(promtool):
    done = run(promtool, "check", "rules", "rules.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_rules_pass_their_unit_tests(promtool):
    done = run(promtool, "test", "rules", "rules_test.yml")
    assert done.returncode == 0, done.stdout + done.stderr


def test_prometheus_config_is_valid(promtool):
    done = run(promtool, "check", "config", "prometheus.yml")
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_broken_rule_file_is_refused(promtool, tmp_path):
    """The check is real: promtool rejects bad PromQL (so a pass above means something)."""
    bad = tmp_path / "bad.yml"
    bad.write_text("groups:\n- name: x\n  rules:\n  - alert: X\n    expr: sum(rate(x[5m]) >\n")
    assert run(promtool, "check", "rules", str(bad)).returncode != 0


def test_the_required_alerts_exist_and_each_is_unit_tested(yaml: ModuleType):
    rules = yaml.safe_load((PROM / "rules.yml").read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    required = {
        "BandoBandDrop",
        "BandoConsumerLagHigh",
        "BandoDLQRateHigh",
        "BandoNoEvents",
        "BandoNotifierFailures",
    }
    assert required <= alerts
    tests = yaml.safe_load((PROM / "rules_test.yml").read_text())
    tested = {t["alertname"] for case in tests["tests"] for t in case.get("alert_rule_test", [])}
    fired = {
        t["alertname"]
        for case in tests["tests"]
        for t in case.get("alert_rule_test", [])
        if t.get("exp_alerts")
    }
    assert alerts == tested, f"untested: {alerts - tested}"
    assert alerts == fired, f"never seen firing in a test: {alerts - fired}"
    for group in rules["groups"]:
        for rule in group["rules"]:
            assert rule["labels"]["severity"] in {"info", "warning", "critical"}
            assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_rules_and_dashboard_only_use_metrics_that_exist(bando_samples):
    used = set(METRIC.findall((PROM / "rules.yml").read_text()))
    used |= set(METRIC.findall(DASHBOARD.read_text()))
    assert used, "no bando_ metric found: the pattern is wrong"
    assert used <= bando_samples, f"not defined in bando/metrics.py: {used - bando_samples}"


def dashboard_exprs() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]


def test_dashboard_queries_are_valid_promql(promtool, tmp_path, yaml: ModuleType):
    """Each panel query, with Grafana's variables filled in, as a recording rule: promtool
    parses it with Prometheus' own PromQL parser."""
    subst = {"$__rate_interval": "1m", "$window_kind": "month", "$unit": ".*"}
    rules = []
    for i, expr in enumerate(dashboard_exprs()):
        for var, value in subst.items():
            expr = expr.replace(var, value)
        assert "$" not in expr, f"unknown variable in {expr}"
        rules.append({"record": f"dashboard:query_{i}", "expr": expr})
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    done = run(promtool, "check", "rules", str(path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rules)} rules found" in done.stdout


def test_dashboard_time_since_last_event_survives_a_restart(promtool, tmp_path,
                                                            yaml: ModuleType):
    """A restarted worker reports 0 until its first event: the panel must still show the
    time since the last real event (not ~57 years)."""
    [expr] = [e for e in dashboard_exprs() if "bando_last_event_timestamp_seconds" in e]
    tests = {"rule_files": [], "evaluation_interval": "1m", "tests": [{
        "interval": "1m",
        # events at 60 s and 120 s, then a restart at 180 s with no event since
        "input_series": [{"series": 'bando_last_event_timestamp_seconds{instance="w1"}',
                          "values": "0 60 120 0 0"}],
        "promql_expr_test": [{"expr": expr, "eval_time": "4m",
                              "exp_samples": [{"labels": "{}", "value": 120}]}]}]}
    path = tmp_path / "dashboard_test.yml"
    path.write_text(yaml.safe_dump(tests))
    done = run(promtool, "test", "rules", str(path), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
