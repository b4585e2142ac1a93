"""The common ending of the benchmarks: the summary as indented JSON on stdout and, when asked,
in a file (for the figures quoted in docs/PERFORMANCE.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson


def emit(summary: Any, json_path: str | None) -> None:
    text = orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode()
    print(text)
    if json_path:
        Path(json_path).write_text(text + "\n", encoding="utf-8")
