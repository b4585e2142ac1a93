"""A corrupt archive line or manifest is an ``AuditError`` naming the file (and line): the CLI
exits 2 ("could not run"), never with a traceback, whose exit 1 ``--verify`` means "mismatch",
and never by reading the line as other bytes.

Both read paths are checked: ``ArchiveSource.read`` (verify, explain, the generic ingest) and
the fused archive ingest of ``audit.fastingest`` (replay).
"""

from __future__ import annotations

import gzip
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from audit_pipeline_sim import DLQ, EVENTS, INTERNAL, SCORES, SimulatedPipeline

from audit.archive import export, load_manifest
from audit.exceptions import AuditError
from audit.ingest import Acceptor, load_history, read_dlq
from audit.sources import ArchiveSource, MemorySource, Record, day_files, decode_record
from audit.verify import verify
from bando.cli import main
from scoring.catalog import Catalog
from scoring.model import Model
from scoring.timeutil import parse_ts

Line = Callable[[dict[str, Any]], bytes]
BAD_LINES: dict[str, Line] = {
    "not an object": lambda d: b"5",
    "a list": lambda d: b"[0, 3]",
    "offset a string": lambda d: orjson.dumps({**d, "o": "3"}),
    "partition a string": lambda d: orjson.dumps({**d, "p": "0"}),
    "value a number": lambda d: orjson.dumps({**d, "v": 7}),
    "value not base64": lambda d: orjson.dumps({**d, "v": "!!!", "vb": 1}),
}


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory, example_catalog: Catalog, model: Model,
            example_lines: list[bytes]) -> Path:
    sim = SimulatedPipeline(example_catalog, model, seed=2,
                            now_us=parse_ts("2024-06-01T00:00:00+07:00"))
    sim.produce(example_lines)
    sim.run()
    root = tmp_path_factory.mktemp("archive")
    export(sim.source(), [EVENTS, DLQ, SCORES, INTERNAL], root)
    return root


def corrupted(archive: Path, tmp_path: Path, topic: str, bad: Line,
              which: Callable[[dict[str, Any]], bool] | None = None) -> tuple[Path, Path, int]:
    """A copy of the archive with one line of ``topic`` replaced: the 4th, or the first that
    ``which`` picks. Returns the copy, the file and the line number."""
    root = tmp_path / "archive"
    shutil.copytree(archive, root)
    path = day_files(root, topic)[0][1]
    lines = gzip.decompress(path.read_bytes()).splitlines()
    index = 3 if which is None else next(i for i, line in enumerate(lines)
                                         if which(orjson.loads(line)))
    lines[index] = bad(orjson.loads(lines[index]))
    path.write_bytes(gzip.compress(b"\n".join(lines) + b"\n"))
    return root, path, index + 1


def read_all(source: ArchiveSource, topic: str) -> list[Record]:
    return [r for batch in source.read(topic) for r in batch]


def ingest(root: Path, catalog: Catalog) -> None:
    source = ArchiveSource(root)
    load_history(source, EVENTS, Acceptor(catalog, 65536, read_dlq(source, DLQ, EVENTS)))


@pytest.mark.parametrize("bad", BAD_LINES.values(), ids=BAD_LINES.keys())
def test_a_corrupt_event_line_is_an_error_on_both_read_paths(archive, tmp_path,  # type: ignore[no-untyped-def]
                                                             example_catalog, bad):
    root, path, number = corrupted(archive, tmp_path, EVENTS, bad)
    with pytest.raises(AuditError, match=f"cannot read {re.escape(str(path))} line {number}: "):
        read_all(ArchiveSource(root), EVENTS)
    # the fused ingest names the line too, but for a partition of another type, found per file
    with pytest.raises(AuditError, match=f"cannot read {re.escape(str(path))}"):
        ingest(root, example_catalog)


def test_a_corrupt_dead_lettered_line_is_an_error(archive, tmp_path, example_catalog):  # type: ignore[no-untyped-def]
    dead = read_dlq(ArchiveSource(archive), DLQ, EVENTS)
    assert dead
    root, path, number = corrupted(archive, tmp_path, EVENTS,
                                   BAD_LINES["value a number"],
                                   lambda d: (d["p"], d["o"]) in dead)
    with pytest.raises(AuditError, match=f"{re.escape(str(path))} line {number}: 'v' is int"):
        ingest(root, example_catalog)


@pytest.mark.parametrize("bad", BAD_LINES.values(), ids=BAD_LINES.keys())
def test_verify_of_a_corrupt_scores_line_is_an_error(archive, tmp_path, example_catalog,  # type: ignore[no-untyped-def]
                                                     model, bad):
    root, path, number = corrupted(archive, tmp_path, SCORES, bad)
    with pytest.raises(AuditError, match=f"{re.escape(str(path))} line {number}: "):
        verify(ArchiveSource(root), example_catalog, model, events_topic=EVENTS,
               dlq_topic=DLQ, scores_topic=SCORES)


def test_a_line_is_decoded_to_its_exact_bytes_or_refused():
    line = {"p": 1, "o": 2, "ts": 3, "k": "a2V5", "kb": 1, "v": "text"}
    assert decode_record("t", orjson.dumps(line)) == Record("t", 1, 2, 3, b"key", b"text")
    for bad in ({"v": "!!!", "vb": 1}, {"k": "a2V5!", "kb": 1}, {"k": 5}, {"ts": "3"},
                {"o": 2.0}, {"p": True}, {"p": None}):
        with pytest.raises(AuditError):
            decode_record("t", orjson.dumps({**line, **bad}))


@pytest.mark.parametrize("manifest", [
    b"[]", b'{"format": 1, "topics": []}', b'{"format": 1, "topics": {"ev": []}}',
    b'{"format": 1, "topics": {"ev": {"next": {"x": 1}, "max_ts": {}, "records": 1}}}',
    b'{"format": 1, "topics": {"ev": {"next": {}, "max_ts": {}, "records": "1"}}}',
])
def test_a_corrupt_manifest_is_an_error(tmp_path, manifest):  # type: ignore[no-untyped-def]
    recs = [Record("ev", 0, o, 1_700_000_000_000 + o, None, b"{}") for o in range(5)]
    export(MemorySource({"ev": recs}), ["ev"], tmp_path)
    (tmp_path / "manifest.json").write_bytes(manifest)
    with pytest.raises(AuditError, match="manifest.json: "):
        load_manifest(tmp_path)
    with pytest.raises(AuditError, match="manifest.json: "):
        read_all(ArchiveSource(tmp_path), "ev")  # checks the count the manifest holds
    with pytest.raises(AuditError, match="manifest.json: "):
        export(MemorySource({"ev": recs}), ["ev"], tmp_path)


@pytest.mark.parametrize("topic,bad", [(EVENTS, "offset a string"), (SCORES, "value a number"),
                                       (EVENTS, "value not base64")])
def test_the_cli_exits_2_not_1(archive, tmp_path, example_dir, capsys, topic, bad):  # type: ignore[no-untyped-def]
    root, path, number = corrupted(archive, tmp_path, topic, BAD_LINES[bad])
    args = ["replay", "--archive", str(root), "--units", str(example_dir / "catalog.json"),
            "--model", "vn766@1", "--topic", EVENTS, "--dlq-topic", DLQ]
    assert main([*args, "--verify", "--scores-topic", SCORES]) == 2
    assert f"{path} line {number}" in capsys.readouterr().err
    if topic == EVENTS:
        assert main([*args, "--from-beginning", "-o", str(tmp_path / "out.json")]) == 2
    (root / "manifest.json").write_bytes(b"[]")
    assert main([*args, "--verify", "--scores-topic", SCORES]) == 2
