"""The event catalog (SPEC section 1) as JSON Schema, and a fast validator compiled from it.

``procedure-event.schema.json`` is the language-neutral contract; ``schemas.validate`` reads the
same file at import, so the Python side cannot drift from it.
"""

from schemas.exceptions import CODES, EventRejected
from schemas.validate import Validator, event_digest

__all__ = ["CODES", "EventRejected", "Validator", "event_digest"]
