"""contrastlab inside the tools people already train with, each behind its own extra:
``contrastlab.integrations.sentence_transformers`` (the ``sentence-transformers`` extra)."""
