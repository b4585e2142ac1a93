"""Audit tools (issue 5): replay, verification, explanations, archives and charts.

Everything here is read-only towards the live system: Kafka is read with a consumer that has
no group id (assign + seek), and nothing is ever produced. Scores come from the pure core
(``scoring``) with the worker's own validation (``schemas.Validator``) and de-duplication
(``scoring.dedup``), so an audit and the live pipeline cannot disagree by construction of
different code.

Modules: ``sources`` (Kafka, archive, file and memory readers), ``ingest`` (the worker's
admission rules and the fold into unit states), ``replay`` (timelines), ``running`` (a unit's
counts as a timeline moves: the live worker's ``scoring.running``), ``verify`` (reproduce
every published ``unit-scores`` message), ``explain`` (breakdown, lost points, peers,
gains), ``charts`` (hand-written SVG), ``archive`` (daily compressed files); ``*_cli`` are the
``bando replay|explain|archive`` commands. See docs/AUDIT.md.
"""

from audit.exceptions import AuditError

__all__ = ["AuditError"]
