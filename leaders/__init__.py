"""Tools for the leaders who act on the map (issue 8): weekly digests, harassment and
inconvenience signals, the officer view and commitments.

Everything is computed from the pure scoring core (``scoring``) over the same accepted events
as ``bando score`` (``bando.batch``) or audit replay (``audit.ingest``), so a digest, a signal
and the live map can never disagree about a fact. Officer ids are read from the accepted
events' bodies (the core does not keep them) and only ever leave this package through the
token-protected officer view.

Modules: ``history`` (loading), ``officers`` (officer -> dossiers index and indicators),
``signals`` (pure signal computation, thresholds), ``signals_service`` (Kafka service) +
``signal_alerts`` (alerts through the notifier's sinks),
``commitments`` (targets and deadlines), ``digest_data`` + ``digest`` + ``svg`` + ``pdf``
(the weekly digest), ``officer_view`` + ``tokens`` (the officer's page); ``*_cli`` are the
``bando digest|signals|officer|officer-token`` commands.
"""
