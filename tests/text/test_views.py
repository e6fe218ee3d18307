"""Text views against slow per-sentence oracles."""

from __future__ import annotations

import pytest
import torch

from contrastlab.views.text import (
    cls_attention,
    cluster_tokens,
    flatten_views,
    gather_tokens,
    pool,
    top_k_tokens,
)


def test_pool_mean_ignores_padding_and_cls_takes_the_first_token():
    hidden = torch.randn(2, 4, 3)
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    mean = pool(hidden, mask, "mean")
    torch.testing.assert_close(mean[0], hidden[0, :2].mean(0))
    torch.testing.assert_close(mean[1], hidden[1].mean(0))
    torch.testing.assert_close(pool(hidden, mask, "cls"), hidden[:, 0])
    with pytest.raises(ValueError, match="pooling='max'"):
        pool(hidden, mask, "max")  # type: ignore[arg-type]


def test_top_k_tokens_match_a_per_sentence_sort_and_mask_short_sentences():
    g = torch.Generator().manual_seed(0)
    attention = torch.rand(3, 2, 6, 6, generator=g).softmax(-1)
    scores = cls_attention(attention)
    torch.testing.assert_close(scores, attention[:, :, 0].mean(1))
    valid = torch.tensor([[0, 1, 1, 1, 1, 0], [0, 1, 1, 0, 0, 0], [0, 1, 1, 1, 1, 1]], dtype=torch.bool)
    index, mask = top_k_tokens(scores, valid, k=3)
    for i in range(3):
        ranked = sorted((j for j in range(6) if valid[i, j]), key=lambda j: -float(scores[i, j]))[:3]
        assert index[i, mask[i]].tolist() == ranked
    assert mask.tolist() == [[True] * 3, [True, True, False], [True] * 3]
    hidden = torch.randn(3, 6, 5)
    torch.testing.assert_close(gather_tokens(hidden, index)[1, 0], hidden[1, index[1, 0]])
    with pytest.raises(ValueError, match="k=0"):
        top_k_tokens(scores, valid, 0)


def _kmeans_oracle(tokens, clusters, iterations=10):
    """Plain Lloyd's on one sentence, the first `clusters` tokens as initial centroids."""
    centroids = tokens[:clusters].clone()
    assign = None
    for _ in range(iterations):
        new = torch.stack([torch.argmin(((centroids - t) ** 2).sum(-1)) for t in tokens])
        if assign is not None and torch.equal(new, assign):
            break
        assign = new
        centroids = torch.stack([tokens[assign == c].mean(0) if (assign == c).any() else centroids[c]
                                 for c in range(clusters)])  # fmt: skip
    return assign


def test_cluster_tokens_equal_kmeans_per_sentence_and_pass_gradients():
    g = torch.Generator().manual_seed(1)
    tokens = torch.randn(4, 10, 6, generator=g, requires_grad=True)
    mask = torch.ones(4, 10, dtype=torch.bool)
    mask[2, 6:] = False
    centroids, cmask = cluster_tokens(tokens, mask, clusters=3)
    for i in range(4):
        n = int(mask[i].sum())
        assign = _kmeans_oracle(tokens[i, :n].detach(), 3)
        for c in range(3):
            if (assign == c).any():
                torch.testing.assert_close(centroids[i, c], tokens[i, :n][assign == c].mean(0))
            assert bool(cmask[i, c]) == bool((assign == c).any())
    centroids[cmask].sum().backward()
    assert tokens.grad is not None and tokens.grad[2, 6:].abs().sum() == 0  # padding gets no gradient


def test_flatten_views_keeps_valid_rows_with_their_sentence_label():
    views = torch.arange(12.0).reshape(2, 3, 2)
    mask = torch.tensor([[True, False, True], [True, True, False]])
    rows, labels = flatten_views(views, mask, torch.tensor([7, 9]))
    assert rows.tolist() == [[0.0, 1.0], [4.0, 5.0], [6.0, 7.0], [8.0, 9.0]] and labels.tolist() == [
        7,
        7,
        9,
        9,
    ]
    with pytest.raises(ValueError, match="must agree"):
        flatten_views(views, mask[:, :2], torch.tensor([7, 9]))
