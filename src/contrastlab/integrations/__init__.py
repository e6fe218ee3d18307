"""contrastlab inside the tools people already train with, each behind its own extra:
``contrastlab.integrations.sentence_transformers`` (the ``sentence-transformers`` extra),
``contrastlab.integrations.hf_trainer`` (the ``text`` extra) and ``contrastlab.integrations.lightning`` (the
``lightning`` extra). They share the trainer's objective (``contrastlab.train.objective.Objective``)."""
