"""Slow, obviously correct loss implementations written from the papers' equations as plain loops.

Each works on float64 tensors element by element with torch scalar ops, so it is differentiable and its
gradients can be compared with the fast implementations too. Sizes in tests are kept tiny.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _unit(z: Tensor, normalize: bool) -> Tensor:
    if not normalize:
        return z
    return torch.stack([row / row.norm() for row in z])


def _dot(u: Tensor, v: Tensor) -> Tensor:
    return (u * v).sum()


def _logsumexp(values: list[Tensor]) -> Tensor:
    m = max(float(v.detach()) for v in values)
    return m + torch.log(sum(torch.exp(v - m) for v in values))  # type: ignore[arg-type]


def nt_xent(z_a: Tensor, z_b: Tensor, temperature: float, normalize: bool = True) -> Tensor:
    """SimCLR Eq. 1: 2N anchors; positive = the other view; denominator over k != i."""
    z = _unit(torch.cat([z_a, z_b]), normalize)
    n = z_a.shape[0]
    losses = []
    for i in range(2 * n):
        j = (i + n) % (2 * n)
        denom = [_dot(z[i], z[k]) / temperature for k in range(2 * n) if k != i]
        losses.append(-(_dot(z[i], z[j]) / temperature - _logsumexp(denom)))
    return torch.stack(losses).mean()


def info_nce(
    query: Tensor, positive: Tensor, negatives: Tensor | None, temperature: float, normalize: bool = True
) -> Tensor:
    """CPC Eq. 4 / MoCo Eq. 1: candidates are every positive key plus every queued negative."""
    q = _unit(query, normalize)
    keys = _unit(positive, normalize)
    if negatives is not None and negatives.shape[0] > 0:
        keys = torch.cat([keys, _unit(negatives, normalize)])
    losses = []
    for i in range(q.shape[0]):
        denom = [_dot(q[i], keys[k]) / temperature for k in range(keys.shape[0])]
        losses.append(-(_dot(q[i], keys[i]) / temperature - _logsumexp(denom)))
    return torch.stack(losses).mean()


def clip(z_a: Tensor, z_b: Tensor, scale: Tensor | float, normalize: bool = True) -> Tensor:
    """CLIP Fig. 3: (cross-entropy over rows + cross-entropy over columns) / 2."""
    a, b = _unit(z_a, normalize), _unit(z_b, normalize)
    n = a.shape[0]
    row_losses, col_losses = [], []
    for i in range(n):
        row = [scale * _dot(a[i], b[k]) for k in range(n)]
        col = [scale * _dot(a[k], b[i]) for k in range(n)]
        row_losses.append(-(row[i] - _logsumexp(row)))
        col_losses.append(-(col[i] - _logsumexp(col)))
    return (torch.stack(row_losses).mean() + torch.stack(col_losses).mean()) / 2


def _flatten(features: Tensor, labels: Tensor | None) -> tuple[Tensor, list[int]]:
    """Row v*N + i is view v of sample i; without labels each sample is its own class."""
    n = features.shape[0]
    lab = list(range(n)) if labels is None else [int(x) for x in labels]
    if features.ndim == 2:
        return features, lab
    v = features.shape[1]
    rows = [features[i, view] for view in range(v) for i in range(n)]
    return torch.stack(rows), lab * v


def supcon(
    features: Tensor,
    labels: Tensor | None,
    temperature: float,
    base_temperature: float | None = None,
    contrast_mode: str = "all",
    normalize: bool = True,
) -> Tensor:
    """Khosla et al. Eq. 2 (L_out), mean over anchors that have a positive."""
    flat, lab = _flatten(features, labels)
    z = _unit(flat, normalize)
    m = z.shape[0]
    n_anchors = m if contrast_mode == "all" else features.shape[0]
    factor = 1.0 if base_temperature is None else temperature / base_temperature
    losses = []
    for i in range(n_anchors):
        others = [a for a in range(m) if a != i]
        positives = [p for p in others if lab[p] == lab[i]]
        if not positives:
            continue
        lse = _logsumexp([_dot(z[i], z[a]) / temperature for a in others])
        terms = [_dot(z[i], z[p]) / temperature - lse for p in positives]
        losses.append(-factor * torch.stack(terms).mean())
    return torch.stack(losses).mean()


def focal_supcon(
    features: Tensor, labels: Tensor | None, temperature: float, gamma: float, normalize: bool = True
) -> Tensor:
    """Per positive pair: -(1 - p_ip)^γ log p_ip with p the softmax over j != i; mean over positives."""
    flat, lab = _flatten(features, labels)
    z = _unit(flat, normalize)
    m = z.shape[0]
    losses = []
    for i in range(m):
        others = [a for a in range(m) if a != i]
        positives = [p for p in others if lab[p] == lab[i]]
        if not positives:
            continue
        lse = _logsumexp([_dot(z[i], z[a]) / temperature for a in others])
        terms = []
        for p in positives:
            log_p = _dot(z[i], z[p]) / temperature - lse
            terms.append(-((1 - torch.exp(log_p)) ** gamma) * log_p)
        losses.append(torch.stack(terms).mean())
    return torch.stack(losses).mean()


def margin_contrastive(embeddings: Tensor, labels: Tensor, margin: float, normalize: bool = True) -> Tensor:
    """Mean over (positive, negative) pairs of max(0, margin + s_in - s_ip); mean over valid anchors."""
    flat, lab = _flatten(embeddings, labels)
    z = _unit(flat, normalize)
    m = z.shape[0]
    losses = []
    for i in range(m):
        positives = [p for p in range(m) if p != i and lab[p] == lab[i]]
        negatives = [q for q in range(m) if lab[q] != lab[i]]
        if not positives or not negatives:
            continue
        hinges = [
            torch.clamp(margin + _dot(z[i], z[q]) - _dot(z[i], z[p]), min=0.0)
            for p in positives
            for q in negatives
        ]
        losses.append(torch.stack(hinges).mean())
    return torch.stack(losses).mean()


def rdrop_kl(logits_a: Tensor, logits_b: Tensor, mask: Tensor | None = None) -> Tensor:
    """(KL(p||q) + KL(q||p)) / 2 per item with the textbook KL sum, averaged over kept items."""
    flat_a = logits_a.reshape(-1, logits_a.shape[-1])
    flat_b = logits_b.reshape(-1, logits_b.shape[-1])
    keep = [True] * flat_a.shape[0] if mask is None else [bool(x) for x in mask.reshape(-1)]
    values = []
    for row_a, row_b, k in zip(flat_a, flat_b, keep, strict=True):
        if not k:
            continue
        p = torch.exp(row_a) / torch.exp(row_a).sum()
        q = torch.exp(row_b) / torch.exp(row_b).sum()
        kl_pq = sum(p[c] * (torch.log(p[c]) - torch.log(q[c])) for c in range(len(p)))
        kl_qp = sum(q[c] * (torch.log(q[c]) - torch.log(p[c])) for c in range(len(q)))
        values.append((kl_pq + kl_qp) / 2)
    return torch.stack(values).mean()  # type: ignore[arg-type]


def similarity_protection(similarity: Tensor, reference: Tensor, margin: float) -> Tensor:
    terms = [
        torch.clamp(r - s - margin, min=0.0)
        for s, r in zip(similarity.reshape(-1), reference.reshape(-1), strict=True)
    ]
    return torch.stack(terms).mean()
