"""Security tests share the fault tests' helpers (``fault_support``: real processes, producing,
reading, ``bando score`` as the truth); pytest only puts a test's own folder on ``sys.path``."""

from __future__ import annotations

import sys
from pathlib import Path

_RELIABILITY = str(Path(__file__).resolve().parents[1] / "reliability")
if _RELIABILITY not in sys.path:
    sys.path.insert(0, _RELIABILITY)
