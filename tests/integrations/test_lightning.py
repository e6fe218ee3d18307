"""contrastlab's objective in a Lightning training_step, on the MLP (CPU, a few steps)."""

from __future__ import annotations

import csv

import pytest
import torch
import torch.nn.functional as F

L = pytest.importorskip("lightning")  # the lightning extra; CI installs it

from contrastlab.integrations.lightning import ContrastiveObjective  # noqa: E402
from contrastlab.losses import supcon  # noqa: E402
from contrastlab.models import ContrastiveModel, MLPEncoder  # noqa: E402

OBJECTIVE = {"task": "cross_entropy", "supcon": {"weight": 0.2, "temperature": 0.1}}


def _model() -> ContrastiveModel:
    encoder = MLPEncoder(num_features=8, embedding_dim=16, hidden_dims=[32], dropout=0.2)
    return ContrastiveModel(encoder, embedding_dim=16, num_outputs=3, projection_dim=8)


def _blobs(n: int = 96) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    y = torch.arange(n) % 3
    centres = torch.randn(3, 8, generator=g) * 3
    return centres[y] + torch.randn(n, 8, generator=g), y


class Classifier(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.model = _model()
        self.objective = ContrastiveObjective(OBJECTIVE, grad_norm_every=2,
                                              grad_norm_parameters=lambda: self.model.encoder.parameters())

    def training_step(self, batch, batch_idx):
        x, y = batch
        return self.objective(self, [self.model(x), self.model(x)], y)  # two dropout views

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=1e-2)


def test_the_loss_is_the_mean_task_over_views_plus_weighted_supcon_of_the_projections():
    torch.manual_seed(0)
    model = _model()
    x, y = _blobs(24)
    views = [model(x), model(x)]
    got = ContrastiveObjective(OBJECTIVE).value(views, y)
    task = (F.cross_entropy(views[0].logits, y) + F.cross_entropy(views[1].logits, y)) / 2
    term = supcon(torch.stack([v.projection for v in views], dim=1), y, temperature=0.1)
    torch.testing.assert_close(got.total, task + 0.2 * term)
    torch.testing.assert_close(got.terms["supcon"], term)


def test_trains_every_parameter_and_logs_each_term_its_weight_and_gradient_norm(tmp_path):
    torch.manual_seed(0)
    module = Classifier()
    before = {k: v.clone() for k, v in module.state_dict().items()}
    x, y = _blobs()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=24, shuffle=True)
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", logger=L.pytorch.loggers.CSVLogger(tmp_path),
                        log_every_n_steps=1, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)  # fmt: skip
    trainer.fit(module, loader)
    moved = [k for k, v in module.state_dict().items() if not torch.equal(before[k], v)]
    assert sorted(moved) == sorted(before)  # every parameter trained
    with open(next(tmp_path.rglob("metrics.csv"))) as handle:
        rows = list(csv.DictReader(handle))
    logged = {k for row in rows for k, v in row.items() if v}
    for name in ("loss", "task", "supcon", "weight/supcon"):
        assert f"contrastive/{name}_step" in logged and f"contrastive/{name}_epoch" in logged, name
    key = "contrastive/weight/supcon_step"
    weights = [float(r[key]) for r in rows if r[key]]
    assert weights == pytest.approx([0.2] * 8)
    measured = {int(r["step"]): float(r["contrastive/grad_norm/supcon"]) for r in rows
                if r.get("contrastive/grad_norm/supcon")}  # fmt: skip
    assert sorted(measured) == [0, 2, 4, 6]  # every grad_norm_every=2 of the 8 steps, and only those
    assert all(n > 0 for n in measured.values())
    assert all(r.get("contrastive/grad_norm/task") for r in rows if r.get("contrastive/grad_norm/supcon"))

def test_a_term_the_helper_cannot_feed_or_too_few_views_is_a_clear_error():
    with pytest.raises(ValueError, match=r"\['moco'\] need a momentum encoder"):
        ContrastiveObjective({"task": "none", "moco": {"weight": 1.0}})
    x, y = _blobs(6)
    with pytest.raises(ValueError, match="compare 2 views of each sample; got 1"):
        ContrastiveObjective({"task": "none", "nt_xent": {"weight": 1.0}}).value([_model()(x)], y)
    with pytest.raises(ValueError, match="grad_norm_every=-1"):
        ContrastiveObjective(OBJECTIVE, grad_norm_every=-1)
