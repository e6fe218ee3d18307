"""Experiments: paired comparisons and verdicts over seeds (compare, sweep and reports build on these)."""

from contrastlab.experiments.stats import PairedComparison, paired_comparison

__all__ = ["PairedComparison", "paired_comparison"]
