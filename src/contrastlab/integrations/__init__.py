"""contrastlab inside the tools people already train with, each behind its own extra:
``contrastlab.integrations.sentence_transformers`` (the ``sentence-transformers`` extra) and
``contrastlab.integrations.hf_trainer`` (the ``text`` extra)."""
