"""Bando: a real-time scorer of public-service quality (Decision 766 index) on Kafka.

Packages:
    scoring   pure scoring core (no I/O): model, facts, indicators, bands, ranks
    schemas   the event catalog as JSON Schema, and the fast validator
    streams   faust-streaming agents: scorer, ranker, DLQ
    bando     command line, settings, local infrastructure, simulator
"""

__version__ = "0.1.0"
