"""The one exception root of Bando, and the tree below it.

    BandoError
    ├── scoring.exceptions.ScoringError
    │   ├── ModelError          a model definition that cannot be used
    │   ├── CatalogError        a unit catalog that cannot be used
    │   └── WindowError         a window name that cannot be parsed
    ├── schemas.exceptions.EventRejected   one input event refused, with its DLQ code
    ├── bando.infra.exceptions.InfraError  local broker or Redis could not be run
    ├── streams.exceptions.StreamsError
    ├── display.exceptions.DisplayError
    ├── alerts.exceptions.AlertError
    └── audit.exceptions.AuditError
"""


class BandoError(Exception):
    """Root of every error Bando raises on purpose."""
