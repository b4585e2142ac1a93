"""``bando watch`` without a broker (an unreachable one, unreadable messages) and ``bando rate``
with a numerator above its denominator: found in review. No Kafka broker is needed."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from bando.cli import main
from bando.commands import watch

REPO_ROOT = Path(__file__).resolve().parents[2]
UNREACHABLE = "127.0.0.1:1"  # nothing listens on port 1: the connection is refused at once


# --- bando watch ----------------------------------------------------------------------------


def test_watch_without_a_broker_says_so_and_exits_2() -> None:
    """A subprocess: the "Unclosed AIOKafkaConsumer" complaint comes when the process ends."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BANDO_KAFKA_")}
    proc = subprocess.run([sys.executable, "-m", "bando.cli", "watch", "--bootstrap", UNREACHABLE],
                          capture_output=True, text=True, timeout=120, check=False, cwd=REPO_ROOT,
                          env=env)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "Unclosed" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("bando watch: ")]
    assert len(lines) == 1 and "127.0.0.1" in lines[0], proc.stderr
    assert proc.stdout == ""


def test_watch_in_process_stops_its_consumer(monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    import aiokafka

    stopped: list[bool] = []
    real = aiokafka.AIOKafkaConsumer

    class Spy(real):  # type: ignore[misc, valid-type]
        async def stop(self) -> None:
            stopped.append(True)
            await super().stop()

    monkeypatch.setattr(aiokafka, "AIOKafkaConsumer", Spy)
    assert main(["watch", "--bootstrap", UNREACHABLE]) == 2
    assert capsys.readouterr().err.startswith("bando watch: ")
    assert stopped == [True]


def score(**fields: Any) -> bytes:
    msg = {"as_of": "2024-05-01T10:00:00+07:00", "window": "month:2024-05", "unit_id": "u1",
           "peer_group": "district", "rank": 3, "total": 81.25, "band": "good", "name": "Unit 1"}
    return orjson.dumps({**msg, **fields})


BAD = [b"not json", b"[1, 2]", b'"text"', b"42", b"null", None, b"\xff\xfe",
       score(total="81"), score(as_of=5), score(window=["m"]), score(rank="2")]


def test_board_skips_and_counts_messages_it_cannot_read(caplog: pytest.LogCaptureFixture
                                                        ) -> None:
    board = watch.Board("all")
    assert board.line(score()) is not None
    with caplog.at_level(logging.WARNING, logger="bando.commands.watch"):
        for k, value in enumerate(BAD):
            assert board.line(value, f"unit-scores[0]@{k}") is None, value
    assert board.skipped == len(BAD)
    assert len(caplog.records) == len(BAD)
    assert "unit-scores[0]@0: not a JSON object (1 skipped so far)" in caplog.records[0].message
    line = board.line(score(rank=1))  # the board goes on, and still knows the last rank
    assert line is not None and line.endswith("↑2")


def test_board_window_filter() -> None:
    board = watch.Board("year")
    assert board.line(score()) is None and board.skipped == 0
    assert board.line(score(window="year:2024")) is not None


class FakeConsumer:
    """An ``AIOKafkaConsumer`` that yields given values and then ends."""

    instances: list[FakeConsumer] = []

    def __init__(self, *topics: str, **kwargs: Any) -> None:
        self.values = list(FAKE_VALUES)
        self.stopped = False
        FakeConsumer.instances.append(self)

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        self.stopped = True

    def __aiter__(self) -> FakeConsumer:
        return self

    async def __anext__(self) -> SimpleNamespace:
        if not self.values:
            raise StopAsyncIteration
        offset = len(FAKE_VALUES) - len(self.values)
        return SimpleNamespace(topic="unit-scores", partition=0, offset=offset,
                               value=self.values.pop(0))


FAKE_VALUES = [score(), b"{not json", b"[]", None, score(rank=5, total=70.0, band="fair")]


def test_watch_goes_on_past_a_message_that_is_not_json(monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str],
                                                       caplog: pytest.LogCaptureFixture
                                                       ) -> None:
    import aiokafka

    monkeypatch.setattr(aiokafka, "AIOKafkaConsumer", FakeConsumer)
    FakeConsumer.instances.clear()
    with caplog.at_level(logging.WARNING, logger="bando.commands.watch"):
        assert main(["watch", "--bootstrap", "fake:9092"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and out[1].endswith("↓2"), out
    skipped = [r.message for r in caplog.records if "not a JSON object" in r.message]
    assert len(skipped) == 3 and skipped[-1].endswith("(3 skipped so far)")
    assert FakeConsumer.instances[0].stopped


# --- bando rate -----------------------------------------------------------------------------


def test_rate_refuses_a_numerator_above_its_denominator(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    counts = tmp_path / "counts.json"
    counts.write_text(json.dumps({"units": {"u1": {"on_time": [5, 3], "e_result": [3, 3]}}}),
                      encoding="utf-8")
    assert main(["rate", "--counts", str(counts)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [(r["unit_id"], r["indicator"], r["error"]) for r in out["rejected"]] == [
        ("u1", "on_time", "invalid_counts")]
    assert "num <= den" in out["rejected"][0]["detail"]
    indicators = out["units"][0]["indicators"]
    assert indicators["on_time"]["applicable"] is False  # refused: counted as 0/0
    assert indicators["on_time"]["points"] == 0  # not the full 20
    assert indicators["e_result"]["points"] == 6  # num == den is fine
