"""Verification and identification metrics of an embedding: is this the same identity?

Every pair of samples is scored by the cosine similarity of their embeddings; pairs of one identity are
genuine, the others impostors. A threshold accepts pairs at or above it (scikit-learn's ``roc_curve``
convention), so

- TAR@FAR=x is the largest share of genuine pairs accepted at any threshold that accepts at most a share
  x of the impostor pairs;
- EER is the error rate where the false accept rate equals the false reject rate (interpolated linearly
  between the two operating points around the crossing);
- rank-1 identification (1:N, leave-one-out) is the share of samples whose most similar other sample has
  their identity.

Pairs are scored in blocks, so memory grows with the number of pairs kept (genuine and impostor scores as
float32), not with an N x N matrix at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["pair_scores", "roc_points", "verification_metrics"]


def _normalized(embeddings: Any) -> np.ndarray:
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"embeddings must be (N, D) with N >= 2, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("embeddings hold non-finite values")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    out: np.ndarray = x / np.maximum(norms, 1e-12)
    return out


def pair_scores(
    embeddings: Any, identities: Any, *, block: int = 1024
) -> tuple[np.ndarray, np.ndarray, float]:
    """Cosine similarities of all genuine and all impostor pairs (i < j), and the rank-1 rate.

    Shape:
        - embeddings: (N, D); identities: (N,) integers.
        - Returns: genuine (G,) and impostor (I,) float32 scores, G + I = N(N-1)/2; rank-1 in [0, 1].

    Raises:
        ValueError: bad shapes, non-finite embeddings, or no genuine pair (every identity seen once).
    """
    x = _normalized(embeddings)
    ids = np.asarray(identities)
    if ids.shape != (x.shape[0],):
        raise ValueError(f"identities must be ({x.shape[0]},) to match the embeddings, got shape {ids.shape}")
    n = x.shape[0]
    genuine, impostor = [], []
    hits = 0
    for start in range(0, n, block):
        stop = min(n, start + block)
        sims = x[start:stop] @ x.T  # (b, N)
        same = ids[start:stop, None] == ids[None, :]
        rows = np.arange(start, stop)
        upper = np.arange(n)[None, :] > rows[:, None]  # each pair once
        genuine.append(sims[same & upper].astype(np.float32))
        impostor.append(sims[~same & upper].astype(np.float32))
        sims[np.arange(stop - start), rows] = -np.inf  # leave-one-out for identification
        hits += int((ids[sims.argmax(axis=1)] == ids[start:stop]).sum())
    g, i = np.concatenate(genuine), np.concatenate(impostor)
    if g.size == 0:
        raise ValueError("no two samples share an identity: verification needs genuine pairs")
    if i.size == 0:
        raise ValueError("every sample has one identity: verification needs impostor pairs")
    return g, i, hits / n


def roc_points(genuine: np.ndarray, impostor: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False and true accept rates at every distinct score used as threshold (accept if score >= t),
    highest threshold first, starting from (0, 0) at +inf: scikit-learn's ``roc_curve`` without dropping
    intermediate points."""
    scores = np.concatenate([genuine, impostor]).astype(np.float64)
    labels = np.concatenate([np.ones(genuine.size, bool), np.zeros(impostor.size, bool)])
    order = np.argsort(-scores, kind="mergesort")
    scores, labels = scores[order], labels[order]
    last = np.r_[np.flatnonzero(np.diff(scores)), scores.size - 1]  # the end of each run of equal scores
    tp = np.cumsum(labels)[last]
    fp = np.cumsum(~labels)[last]
    far = np.r_[0.0, fp / impostor.size]
    tar = np.r_[0.0, tp / genuine.size]
    return far, tar, np.r_[np.inf, scores[last]]


def verification_metrics(
    embeddings: Any, identities: Any, *, far_targets: Sequence[float] = (1e-3, 1e-2)
) -> dict[str, float]:
    """TAR at each FAR target, EER, rank-1 identification and the mean genuine / impostor similarity.

    Returns keys ``tar@far=<x>`` (e.g. ``tar@far=0.001``), ``threshold@far=<x>``, ``eer``, ``rank1``,
    ``genuine_cosine``, ``impostor_cosine``, ``genuine_pairs``, ``impostor_pairs``.

    Raises:
        ValueError: as :func:`pair_scores`, or a FAR target outside (0, 1).
    """
    for target in far_targets:
        if not 0.0 < target < 1.0:
            raise ValueError(f"far_targets holds {target}; expected values in (0, 1)")
    genuine, impostor, rank1 = pair_scores(embeddings, identities)
    far, tar, thresholds = roc_points(genuine, impostor)
    out: dict[str, float] = {}
    for target in far_targets:
        ok = far <= target
        best = int(np.flatnonzero(ok)[np.argmax(tar[ok])])
        out[f"tar@far={target:g}"] = float(tar[best])
        out[f"threshold@far={target:g}"] = float(thresholds[best])
    frr = 1.0 - tar
    cross = int(np.flatnonzero(far >= frr)[0])  # far rises from 0, frr falls from 1: they cross once
    if cross == 0:
        eer = float(far[0])
    else:
        a, b = cross - 1, cross
        d_a, d_b = far[a] - frr[a], far[b] - frr[b]  # d_a < 0 <= d_b
        w = d_a / (d_a - d_b)
        eer = float(far[a] + w * (far[b] - far[a]))
    out.update({
        "eer": eer,
        "rank1": float(rank1),
        "genuine_cosine": float(genuine.mean()),
        "impostor_cosine": float(impostor.mean()),
        "genuine_pairs": float(genuine.size),
        "impostor_pairs": float(impostor.size),
    })  # fmt: skip
    return out
