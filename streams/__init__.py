"""The live pipeline (faust-streaming over aiokafka). ``create_app`` wires the faust-free
``ScorerCore`` and ``streams.rank_service`` (``RankerCore`` on its own consumer); ``bando worker``
runs it, ``bando ranker`` runs the ranker alone."""
