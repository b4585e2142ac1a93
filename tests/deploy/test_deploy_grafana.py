"""The Grafana dashboard: well-formed, on the provisioned datasource, covering what ops need."""

from __future__ import annotations

import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
GRAFANA = REPO / "deploy" / "grafana"


def dashboard() -> dict:
    return json.loads((GRAFANA / "dashboards" / "bando.json").read_text(encoding="utf-8"))


def test_dashboard_uses_the_provisioned_datasource(yaml):
    ds = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    uid = ds["datasources"][0]["uid"]
    dash = dashboard()
    for panel in dash["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == uid, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == uid and target["expr"].strip()


def test_dashboard_is_well_formed():
    dash = dashboard()
    assert dash["uid"] == "bando-overview" and dash["title"]
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dash["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24 and pos["h"] > 0, panel["title"]
    variables = {v["name"] for v in dash["templating"]["list"]}
    assert variables == {"window_kind", "unit"}


def test_dashboard_covers_scores_bands_throughput_latency_lag_dlq_and_alerts():
    exprs = " ".join(t["expr"] for p in dashboard()["panels"] for t in p.get("targets", []))
    for metric in (
        "bando_unit_score",
        "bando_unit_band",
        "bando_events_consumed_total",
        "bando_event_to_score_seconds_bucket",
        "bando_consumer_lag",
        "bando_events_rejected_total",
        "bando_alerts_sent_total",
        "bando_alerts_failed_total",
    ):
        assert metric in exprs, metric
    assert 'unit_id=~"$unit"' in exprs and 'window_kind="$window_kind"' in exprs
