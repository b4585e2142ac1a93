"""The live pipeline (faust-streaming over aiokafka). ``create_app`` wires the faust-free
``ScorerCore`` and ``RankerCore``; ``bando worker`` runs it."""
