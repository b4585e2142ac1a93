"""Why an input event was refused; the code is the DLQ ``error`` field (SPEC section 1)."""

from bando.exceptions import BandoError

CODES = (
    "invalid_json",
    "schema_violation",
    "unknown_type",
    "unknown_unit",
    "future_timestamp",
    "conflicting_duplicate",
    "too_large",
)


class EventRejected(BandoError):
    def __init__(self, code: str, detail: str):
        assert code in CODES, code
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail
