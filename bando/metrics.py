"""Every Prometheus metric of Bando, defined once, plus the ``/metrics`` listener and lag helper.

One module so names, labels and help texts stay consistent across services (the dashboard and
``deploy/prometheus/rules.yml`` refer to them) and so a test can check that every series the
rules and dashboard query actually exists. All names start with ``bando_``.

Label cardinality is bounded on purpose: event types and DLQ error codes are folded into their
known sets (anything else becomes ``other``), units and window *kinds* are labels (a few hundred
units x 3 kinds), and dossier, petition or event ids never are. A labelled metric with no
child yet shows no sample; an unlabelled one shows 0 in every service that imports this module,
and in a restarted one until it is set, so queries of a time or a level guard against 0.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter, Gauge, Histogram, start_http_server

import bando
from schemas.exceptions import CODES
from scoring.events import EVENT_TYPES

log = logging.getLogger(__name__)

# --- scorer (streams worker) -------------------------------------------------------------

EVENTS_CONSUMED = Counter(
    "bando_events_consumed",
    "Messages read from the events topic, by event type (other: unknown or unreadable type).",
    ["type"],
)
EVENTS_REJECTED = Counter(
    "bando_events_rejected",
    "Events sent to the DLQ, by error code (SPEC 1, Bad input).",
    ["error"],
)
EVENT_TO_SCORE_SECONDS = Histogram(
    "bando_event_to_score_seconds",
    "Wall time from an event's arrival in Kafka (message timestamp) to the publication of the "
    "score that reflects it.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300),
)
CONSUMER_LAG = Gauge(
    "bando_consumer_lag",
    "Messages not yet consumed (high watermark minus position), per assigned partition.",
    ["topic", "partition"],
)
TABLE_ROWS = Gauge("bando_table_rows", "Rows (keys) in a worker's state table.", ["table"])
DOSSIERS_IN_MEMORY = Gauge(
    "bando_dossiers_in_memory",
    "Dossiers whose facts the scorer holds in memory: those still in play (settled ones stay in "
    "the store only, unless BANDO_KEEP_SETTLED=1).",
)
STORE_MEMORY_BYTES = Gauge(
    "bando_store_memory_bytes",
    "RocksDB memory of a worker (BANDO_STORE=rocksdb): block_cache and memtables (bounded), "
    "table_readers (index and filter blocks of the files, grow with the data).",
    ["part"],
)
UNIT_SCORE = Gauge(
    "bando_unit_score",
    "Latest published total of a unit, for the newest window of each kind.",
    ["unit_id", "window_kind"],
)
UNIT_BAND = Gauge(
    "bando_unit_band",
    "Latest band of a unit: 0 weak, 1 average, 2 fair, 3 good, 4 excellent.",
    ["unit_id", "window_kind"],
)
SCORES_PUBLISHED = Counter("bando_scores_published", "unit-scores messages published.")
BAND_CHANGES = Counter(
    "bando_band_changes",
    "band-changes messages published by the scorer.",
    ["direction", "window_kind"],
)
LAST_EVENT_TIMESTAMP = Gauge(
    "bando_last_event_timestamp_seconds",
    "Wall time (Unix seconds) at which the last event was consumed.",
)

# --- notifier (alerts) -------------------------------------------------------------------

ALERT_MESSAGES = Counter(
    "bando_alert_messages_consumed",
    "Messages read by the notifier, by kind (band_change, at_risk, invalid).",
    ["kind"],
)
BAND_DROPS = Counter(
    "bando_band_drops",
    "Band drops seen by the notifier (before anti-flapping), per unit and window kind.",
    ["unit_id", "window_kind"],
)
ALERTS_SENT = Counter("bando_alerts_sent", "Alerts delivered, by sink.", ["sink"])
ALERTS_FAILED = Counter(
    "bando_alerts_failed", "Alerts a sink gave up on (after retries), by sink.", ["sink"]
)
ALERT_RETRIES = Counter("bando_alert_retries", "Delivery attempts retried, by sink.", ["sink"])
ALERTS_SUPPRESSED = Counter(
    "bando_alerts_suppressed",
    "Band changes not alerted, by reason (hysteresis, cooldown, duplicate, ...).",
    ["reason"],
)
ALERTS_DEAD_LETTERED = Counter(
    "bando_alerts_dead_lettered", "Alerts written to the dead-letter record.", ["sink"]
)
ALERT_DELIVERY_SECONDS = Histogram(
    "bando_alert_delivery_seconds",
    "Time to deliver one alert to one sink, retries included.",
    ["sink"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)

# --- board writer and display (issue 3) --------------------------------------------------

BOARD_UPDATES = Counter("bando_board_updates", "Board entries written to Redis.")
DISPLAY_CLIENTS = Gauge("bando_display_clients", "Wall displays connected to the push stream.")

# --- every service -----------------------------------------------------------------------

BUILD_INFO = Gauge(
    "bando_build_info", "Always 1; labels name the service and version.", ["service", "version"]
)

BAND_VALUES = {"weak": 0, "average": 1, "fair": 2, "good": 3, "excellent": 4}
DLQ_ERRORS = frozenset(CODES)
WINDOW_KINDS = frozenset({"month", "quarter", "year"})


def event_type_label(event_type: object) -> str:
    """The ``type`` label for an event: its type if known, else ``other`` (bounded)."""
    return event_type if isinstance(event_type, str) and event_type in EVENT_TYPES else "other"


def error_label(code: object) -> str:
    return code if isinstance(code, str) and code in DLQ_ERRORS else "other"


def window_kind(window: str) -> str:
    """``month:2024-04`` -> ``month`` (the label; the window itself would grow forever)."""
    kind = window.split(":", 1)[0]
    return kind if kind in WINDOW_KINDS else "other"


_latest_window: dict[tuple[str, str], str] = {}
_latest_lock = threading.Lock()


def forget_unit_scores() -> None:
    """Drop every ``bando_unit_score``/``bando_unit_band`` series: this process no longer
    ranks (the ranker's partition moved to another worker, which publishes them now), and
    left here they would be counted twice, and frozen."""
    with _latest_lock:
        _latest_window.clear()
    UNIT_SCORE.clear()
    UNIT_BAND.clear()


def observe_unit_score(unit_id: str, window: str, total: float | None, band: str | None) -> None:
    """Set ``bando_unit_score``/``bando_unit_band`` from a published score, keeping the newest
    window of each kind (a late re-score of last month does not overwrite this month). A unit
    with no score (total None) has its series removed rather than set to a fake 0."""
    kind = window_kind(window)
    key = (unit_id, kind)
    with _latest_lock:
        latest = _latest_window.get(key)
        if latest is not None and window < latest:  # same kind: names sort chronologically
            return
        _latest_window[key] = window
    if total is None or band is None:
        for gauge in (UNIT_SCORE, UNIT_BAND):
            with contextlib.suppress(KeyError):
                gauge.remove(unit_id, kind)
        return
    UNIT_SCORE.labels(unit_id, kind).set(total)
    UNIT_BAND.labels(unit_id, kind).set(BAND_VALUES.get(band, -1))


def consumer_lag(
    highwater: Mapping[tuple[str, int], int | None], position: Mapping[tuple[str, int], int | None]
) -> dict[tuple[str, int], int]:
    """Lag per (topic, partition): high watermark minus the next offset to read (never < 0).
    Partitions whose high watermark or position is not known yet are left out."""
    out = {}
    for tp, high in highwater.items():
        pos = position.get(tp)
        if high is None or pos is None:
            continue
        out[tp] = max(0, int(high) - int(pos))
    return out


_lag_labels: set[tuple[str, str]] = set()
_lag_lock = threading.Lock()


def set_consumer_lag(lags: Mapping[tuple[str, int], int]) -> None:
    """Publish lags for the partitions this process holds now, and drop the series of partitions
    it no longer holds (after a rebalance another worker reports them)."""
    current = {(topic, str(partition)): lag for (topic, partition), lag in lags.items()}
    with _lag_lock:
        for labels in _lag_labels - current.keys():
            with contextlib.suppress(KeyError):
                CONSUMER_LAG.remove(*labels)
        _lag_labels.clear()
        _lag_labels.update(current)
    for (topic, partition), lag in current.items():
        CONSUMER_LAG.labels(topic, partition).set(lag)


async def update_consumer_lag(consumer: Any) -> dict[tuple[str, int], int]:
    """Lag of a consumer, published to the gauge. Works with ``aiokafka.AIOKafkaConsumer`` (the
    notifier) and faust's ``app.consumer`` (the worker: call it from an ``app.timer``); both
    have ``assignment()``, ``highwater(tp)`` and ``await position(tp)``."""
    highwater: dict[tuple[str, int], int | None] = {}
    position: dict[tuple[str, int], int | None] = {}
    for tp in consumer.assignment():
        key = (tp.topic, tp.partition)
        try:
            highwater[key] = consumer.highwater(tp)
            position[key] = await consumer.position(tp)
        except Exception as exc:  # noqa: BLE001 - a partition moving mid-call: report next time
            log.debug("no lag for %s: %s", tp, exc)
    lags = consumer_lag(highwater, position)
    set_consumer_lag(lags)
    return lags


ALERT_MESSAGE_KINDS = ("band_change", "at_risk", "invalid")
SUPPRESS_REASONS = (
    "hysteresis",
    "cooldown",
    "duplicate",
    "rises_disabled",
    "at_risk_active",
    "at_risk_cleared",
)


def preinitialize(service: str) -> None:
    """Create the children of bounded labelled counters at 0, so ``rate()``/``increase()`` see
    the first increment (a series born at 1 has no earlier sample to compare with)."""
    if service == "worker":
        for t in (*sorted(EVENT_TYPES), "other"):
            EVENTS_CONSUMED.labels(t)
        for code in (*sorted(DLQ_ERRORS), "other"):
            EVENTS_REJECTED.labels(code)
    elif service == "notifier":
        for kind in ALERT_MESSAGE_KINDS:
            ALERT_MESSAGES.labels(kind)
        for reason in SUPPRESS_REASONS:
            ALERTS_SUPPRESSED.labels(reason)


def preinitialize_units(unit_ids: Iterable[str]) -> None:
    """Band-drop counters of every catalog unit at 0 (bounded by the catalog), so the first
    drop of a unit is an increase() that ``BandoBandDrop`` sees."""
    for unit_id in unit_ids:
        for kind in sorted(WINDOW_KINDS):
            BAND_DROPS.labels(unit_id, kind)


def preinitialize_sink(sink: str) -> None:
    for counter in (ALERTS_SENT, ALERTS_FAILED, ALERT_RETRIES, ALERTS_DEAD_LETTERED):
        counter.labels(sink)


@dataclass
class MetricsServer:
    host: str
    port: int
    _server: Any
    _thread: threading.Thread

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def start_metrics_server(
    port: int, host: str = "127.0.0.1", *, service: str | None = None
) -> MetricsServer:
    """Serve ``/metrics`` in a daemon thread (loopback unless told otherwise; port 0 picks a
    free port, see ``.port``). ``service`` sets ``bando_build_info{service=...}``."""
    server, thread = start_http_server(port, addr=host)
    actual = int(server.server_address[1])
    if service:
        BUILD_INFO.labels(service, bando.__version__).set(1)
        preinitialize(service)
    log.info("metrics on http://%s:%d/metrics", host, actual)
    return MetricsServer(host, actual, server, thread)


def all_metrics() -> Iterable[Any]:
    """Every collector defined here (for tests and documentation)."""
    return [v for v in globals().values() if isinstance(v, Counter | Gauge | Histogram)]
