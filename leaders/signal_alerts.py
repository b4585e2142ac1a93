"""Signal alerts, delivered like band-drop alerts: the notifier's sinks and dead letter.

Why reuse ``alerts.sinks``: operators already configured webhooks (retries, bearer token,
HMAC signature, ``Idempotency-Key``) and a dead letter for band drops; a raised signal should
reach the same people the same way. The alert id is the signal's crossing id (a hash of kind,
unit, procedure and crossing number), so a repeat after a crash is recognisable.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from alerts.exceptions import SinkError
from alerts.sinks import DeadLetter, Sink

log = logging.getLogger(__name__)

SIGNAL_LABELS = {
    "repeated_supplements": "Repeated supplement requests",
    "due_pushed_back": "Due time pushed back repeatedly",
    "overdue_open": "Overdue dossiers still open",
    "slow_procedure": "Procedure much slower than in peer units",
    "supplement_rate": "Procedure asks for supplements far more than peers",
}


def alert_of(msg: dict[str, Any]) -> dict[str, Any]:
    """The alert for a published ``signals`` message (names the unit, never an officer)."""
    what = SIGNAL_LABELS.get(msg["kind"], msg["kind"])
    where = f" in procedure {msg['procedure_id']}" if msg["procedure_id"] else ""
    return {"alert_id": msg["alert_id"], "kind": "signal", "signal_kind": msg["kind"],
            "unit_id": msg["unit_id"], "name": msg["name"], "state": msg["state"],
            "summary": f"{msg['name']} ({msg['unit_id']}): {what}{where}: "
                       f"{msg['value']:g} (threshold {msg['threshold']:g}), "
                       f"{msg['dossier_count']} dossier(s), {msg['state']}",
            "signal": msg}


async def deliver(alert: dict[str, Any], sinks: Sequence[Sink], dead_letter: DeadLetter) -> None:
    """Every sink concurrently; a sink that gives up sends the alert to the dead letter (and a
    dead letter that cannot record raises, stopping the service before it publishes)."""
    results = await asyncio.gather(*(_send(s, alert, dead_letter) for s in sinks))
    if sinks and not any(results):
        log.error("signal alert %s reached no sink", alert["alert_id"])


async def _send(sink: Sink, alert: dict[str, Any], dead_letter: DeadLetter) -> bool:
    try:
        await sink.send(alert)
        return True
    except Exception as exc:  # noqa: BLE001 - a broken sink must not stop the others
        attempts = exc.attempts if isinstance(exc, SinkError) else 1
        await dead_letter.record(alert, sink.name, str(exc), attempts)
        log.error("signal alert %s dead-lettered for sink %s: %s", alert["alert_id"],
                  sink.name, exc)
        return False
