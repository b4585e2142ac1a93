"""Band-drop alerting (issue 4).

- ``messages``: pure; band-changes and at-risk messages validated into values, idempotency keys
- ``policy``: pure; anti-flapping decisions (hysteresis, cool-down), alert bodies with top losses
- ``at_risk``: pure; early warning, would the dossiers due soon take the unit down a band?
- ``sinks``: webhook (retries, back-off, idempotency key), log, dead-letter record
- ``notifier``: the Kafka consumer service behind ``bando notify``
- ``cli``: ``bando notify`` arguments
"""
