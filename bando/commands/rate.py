"""``bando rate``: apply a model's points rules to given numerators and denominators.

Input ``{"units": {UNIT: {INDICATOR: [num, den]}}}``; an indicator left out counts as 0/0
(not applicable, scored by its empty rule). Bad entries are listed in ``rejected``.
"""

from __future__ import annotations

import argparse
import sys

import orjson

from bando.exceptions import BandoError
from scoring.model import DEFAULT_MODEL, Model, load_model
from scoring.points import rate


def rate_counts(model: Model, doc: object) -> dict:
    units_in = doc.get("units") if isinstance(doc, dict) else None
    if not isinstance(units_in, dict):
        raise ValueError('expected {"units": {UNIT: {INDICATOR: [num, den]}}}')
    known = {i.id for i in model.indicators}
    units, rejected = [], []
    for unit_id, given in units_in.items():
        counts: dict[str, tuple[int, int]] = {}
        for ind, pair in (given or {}).items() if isinstance(given, dict) else []:
            # num > den is no count of successes among items: it would score full points
            ok = (
                isinstance(pair, list) and len(pair) == 2
                and all(type(x) is int and x >= 0 for x in pair) and pair[0] <= pair[1]
            )
            if ind not in known:
                rejected.append({"unit_id": unit_id, "indicator": ind,
                                 "error": "unknown_indicator"})
            elif not ok:
                rejected.append({"unit_id": unit_id, "indicator": ind, "error": "invalid_counts",
                                 "detail": "expected [num, den], integers, 0 <= num <= den"})
            else:
                counts[ind] = (pair[0], pair[1])
        if not isinstance(given, dict):
            rejected.append({"unit_id": unit_id, "error": "invalid_counts",
                             "detail": "expected an object of indicators"})
        r = rate(model, counts)
        units.append({"unit_id": unit_id, "total": r.total, "band": r.band,
                      "groups": r.groups, "indicators": r.indicators})
    return {"model": model.ref, "units": units, "rejected": rejected}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--counts", required=True, help="COUNTS.json")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="model reference or file")


def run(args: argparse.Namespace) -> int:
    try:
        model = load_model(args.model)
        with open(args.counts, "rb") as fh:
            doc = orjson.loads(fh.read())
        out = rate_counts(model, doc)
    except (BandoError, OSError, ValueError) as exc:
        print(f"bando rate: {exc}", file=sys.stderr)
        return 2
    sys.stdout.buffer.write(orjson.dumps(out) + b"\n")
    return 0
