"""What ``bando replay --verify`` reports: each message it could not reproduce, and why."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from audit.ingest import IngestStats


@dataclass
class Mismatch:
    where: str  # e.g. "unit-scores[2]@117": the published message at fault
    unit_id: str | None
    window: str | None
    kind: str  # "content" | "ranking" | "input" | "unreadable"
    detail: str
    fields: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"message": self.where, "unit_id": self.unit_id, "window": self.window,
                "kind": self.kind, "detail": self.detail, "fields": self.fields}

    def text(self) -> str:
        parts = [f"MISMATCH {self.where} {self.unit_id} {self.window} [{self.kind}] {self.detail}"]
        for name, pair in self.fields.items():
            parts.append(f"    {name}: published {_short(pair['published'])} "
                         f"!= reproduced {_short(pair['expected'])}")
        return "\n".join(parts)


def _short(value: Any) -> str:
    text = orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    return text if len(text) <= 160 else text[:157] + "..."


@dataclass
class VerifyReport:
    source: str
    messages: int = 0
    checked: int = 0
    mismatches: list[Mismatch] = field(default_factory=list)
    ingest: IngestStats = field(default_factory=IngestStats)
    ranker_batches: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "source": self.source, "messages": self.messages,
                "checked": self.checked, "mismatch_count": len(self.mismatches),
                "mismatches": [m.to_dict() for m in self.mismatches],
                "ranker_batches": self.ranker_batches, "ingest": self.ingest.to_dict(),
                "seconds": round(self.seconds, 3)}
