"""bando.metrics: the names the services rely on, bounded labels, the /metrics listener."""

from __future__ import annotations

import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bando import metrics

REQUIRED = {  # name in Python -> (exposed family name, type, label names)
    "EVENTS_CONSUMED": ("bando_events_consumed", "counter", ("type",)),
    "EVENTS_REJECTED": ("bando_events_rejected", "counter", ("error",)),
    "EVENT_TO_SCORE_SECONDS": ("bando_event_to_score_seconds", "histogram", ()),
    "CONSUMER_LAG": ("bando_consumer_lag", "gauge", ("topic", "partition")),
    "TABLE_ROWS": ("bando_table_rows", "gauge", ("table",)),
    "DOSSIERS_IN_MEMORY": ("bando_dossiers_in_memory", "gauge", ()),
    "STORE_MEMORY_BYTES": ("bando_store_memory_bytes", "gauge", ("part",)),
    "UNIT_SCORE": ("bando_unit_score", "gauge", ("unit_id", "window_kind")),
    "UNIT_BAND": ("bando_unit_band", "gauge", ("unit_id", "window_kind")),
    "SCORES_PUBLISHED": ("bando_scores_published", "counter", ()),
    "LAST_EVENT_TIMESTAMP": ("bando_last_event_timestamp_seconds", "gauge", ()),
    "ALERTS_SENT": ("bando_alerts_sent", "counter", ("sink",)),
    "ALERTS_FAILED": ("bando_alerts_failed", "counter", ("sink",)),
}
FORBIDDEN_LABELS = {"dossier_id", "petition_id", "event_id", "officer_id", "window", "offset"}


@pytest.mark.parametrize("attr", sorted(REQUIRED))
def test_required_metrics_have_their_names_types_and_labels(attr):
    name, kind, labels = REQUIRED[attr]
    metric = getattr(metrics, attr)
    family = metric.describe()[0]
    assert (family.name, family.type) == (name, kind)
    assert tuple(metric._labelnames) == labels


def test_every_metric_is_prefixed_and_never_labelled_by_an_unbounded_id():
    for metric in metrics.all_metrics():
        assert metric.describe()[0].name.startswith("bando_")
        assert not set(metric._labelnames) & FORBIDDEN_LABELS, metric.describe()[0].name


def test_labels_are_folded_into_bounded_sets():
    assert metrics.event_type_label("dossier.received") == "dossier.received"
    assert metrics.event_type_label("dossier.exploded") == "other"
    assert metrics.event_type_label(None) == "other"
    assert metrics.error_label("schema_violation") == "schema_violation"
    assert metrics.error_label("whatever") == "other"
    assert metrics.window_kind("quarter:2024-Q2") == "quarter"


def value(name: str, **labels: str) -> float | None:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name, labels)


def test_unit_score_keeps_the_newest_window_and_drops_unscored_units():
    metrics.observe_unit_score("t-unit", "month:2024-05", 81.5, "good")
    metrics.observe_unit_score("t-unit", "month:2024-04", 60.0, "average")  # late re-score
    assert value("bando_unit_score", unit_id="t-unit", window_kind="month") == 81.5
    assert value("bando_unit_band", unit_id="t-unit", window_kind="month") == 3
    metrics.observe_unit_score("t-unit", "year:2024", 77.0, "fair")
    assert value("bando_unit_band", unit_id="t-unit", window_kind="year") == 2
    metrics.observe_unit_score("t-unit", "month:2024-06", None, None)
    assert value("bando_unit_score", unit_id="t-unit", window_kind="month") is None


def test_consumer_lag_is_computed_and_stale_partitions_are_dropped():
    lags = metrics.consumer_lag(
        {("t", 0): 100, ("t", 1): 5, ("t", 2): None}, {("t", 0): 40, ("t", 1): 7, ("t", 2): 3}
    )
    assert lags == {("t", 0): 60, ("t", 1): 0}
    metrics.set_consumer_lag(lags)
    assert value("bando_consumer_lag", topic="t", partition="0") == 60
    metrics.set_consumer_lag({("t", 1): 4})  # partition 0 moved to another worker
    assert value("bando_consumer_lag", topic="t", partition="0") is None
    assert value("bando_consumer_lag", topic="t", partition="1") == 4
    metrics.set_consumer_lag({})


def test_metrics_server_listens_on_loopback_and_parses():
    assert metrics.start_metrics_server.__defaults__ == ("127.0.0.1",)
    server = metrics.start_metrics_server(0, service="worker")
    try:
        assert server.host == "127.0.0.1" and server.port > 0

        def scrape() -> dict:
            url = f"http://127.0.0.1:{server.port}/metrics"
            with urllib.request.urlopen(url, timeout=5) as resp:
                text = resp.read().decode()
            return {
                (s.name, tuple(sorted(s.labels.items()))): s.value
                for f in text_string_to_metric_families(text)
                for s in f.samples
            }

        before = scrape()
        metrics.EVENTS_CONSUMED.labels(metrics.event_type_label("dossier.paid")).inc(3)
        metrics.EVENTS_REJECTED.labels(metrics.error_label("too_large")).inc()
        metrics.EVENT_TO_SCORE_SECONDS.observe(0.3)
        after = scrape()
    finally:
        server.close()
    key = ("bando_events_consumed_total", (("type", "dossier.paid"),))
    assert after[key] - before[key] == 3  # created at 0 by preinitialize("worker")
    rejected = ("bando_events_rejected_total", (("error", "too_large"),))
    assert after[rejected] - before[rejected] == 1
    assert ("bando_events_rejected_total", (("error", "unknown_unit"),)) in before
    count = ("bando_event_to_score_seconds_count", ())
    assert after[count] - before.get(count, 0) == 1
    assert after[("bando_build_info", (("service", "worker"), ("version", "0.1.0")))] == 1
