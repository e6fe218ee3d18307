"""Representation diagnostics: arrays in, numbers out. Independent of the trainer.

CKA and geometry need only numpy; probes and clustering need scikit-learn (the ``diagnostics`` extra).
"""

from contrastlab.diagnostics.cka import (
    StreamingLinearCKA,
    bootstrap_cka,
    cka,
    linear_cka,
    rbf_cka,
    rbf_kernel,
)
from contrastlab.diagnostics.geometry import (
    StreamingMoments,
    alignment,
    class_cosine,
    collapse_std,
    effective_rank,
    feature_norms,
    rankme,
    uniformity,
)

__all__ = [
    "StreamingLinearCKA",
    "StreamingMoments",
    "alignment",
    "bootstrap_cka",
    "cka",
    "class_cosine",
    "collapse_std",
    "effective_rank",
    "feature_norms",
    "linear_cka",
    "rankme",
    "rbf_cka",
    "rbf_kernel",
    "uniformity",
]
