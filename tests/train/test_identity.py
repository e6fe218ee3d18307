"""Identity embeddings (seed 003): margin heads, similarity protection, Fashion-MNIST identities, resume."""

from __future__ import annotations

import copy
import gzip
import json
import math
import os
from pathlib import Path

import pytest
import torch

from contrastlab.cli import main as cli_main
from contrastlab.data.images import FASHION_DIR, read_idx
from contrastlab.models.base import CosineHead
from contrastlab.train import load_config
from contrastlab.train.build import make_model
from contrastlab.train.checkpoint import TrainState, load_checkpoint, read_history
from contrastlab.train.config import ObjectiveConfig
from contrastlab.train.objective import Objective, margin_logits
from contrastlab.train.terms import BatchOutputs

RECIPES = Path(__file__).parents[2] / "recipes"
HAVE_FASHION = (FASHION_DIR / "train-images-idx3-ubyte.gz").is_file()
REQUIRED = "fashion-mnist" in os.environ.get("CONTRASTLAB_REQUIRE", "").split(",")


def test_arcface_and_cosface_logits_equal_their_definitions_and_stay_finite():
    g = torch.Generator().manual_seed(0)
    cos = torch.rand(6, 4, generator=g) * 2 - 1
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    arc = margin_logits(ObjectiveConfig(task="arcface", face_scale=10.0, face_margin=0.3), cos, y)
    for i in range(6):
        for c in range(4):
            theta = math.acos(float(cos[i, c]))
            if c != y[i]:
                expected = 10.0 * float(cos[i, c])
            elif theta + 0.3 < math.pi:
                expected = 10.0 * math.cos(theta + 0.3)
            else:  # past pi - m: the linear fallback
                expected = 10.0 * (float(cos[i, c]) - math.sin(math.pi - 0.3) * 0.3)
            assert float(arc[i, c]) == pytest.approx(expected, abs=1e-5)
    cosface = margin_logits(ObjectiveConfig(task="cosface", face_scale=10.0), cos, y)
    torch.testing.assert_close(cosface, 10.0 * (cos - 0.35 * torch.nn.functional.one_hot(y, 4)))
    edge = torch.tensor([[1.0, -1.0], [-1.0, 1.0]], requires_grad=True)  # sin θ = 0: sqrt's gradient
    target = torch.tensor([0, 0])
    logits = margin_logits(ObjectiveConfig(task="arcface"), edge, target)
    loss = torch.nn.functional.cross_entropy(logits, target)
    loss.backward()
    assert torch.isfinite(edge.grad).all()


def test_cosine_head_gives_cosines():
    head = CosineHead(5, 3)
    x = torch.randn(4, 5)
    logits = head(x)
    expected = torch.nn.functional.cosine_similarity(x[:, None], head.weight[None], dim=-1)
    torch.testing.assert_close(logits, expected)


def test_similarity_protection_term_hinges_same_identity_pairs_against_the_frozen_start():
    cfg = ObjectiveConfig(task="arcface", similarity_protection={"weight": 1.0, "margin": 0.05})
    config = load_config(None, ["model.name=mlp", "objective.task=arcface"])[0]

    class Data:
        num_features, num_classes, task, name = 8, 3, "classification", "toy"

    torch.manual_seed(0)
    model = make_model(config, Data())
    objective = Objective(cfg)
    reference = copy.deepcopy(model)
    x, y = torch.randn(10, 8), torch.tensor([0, 0, 1, 1, 1, 2, 2, 0, 1, 2])
    model.eval()
    out, ref = model(x), reference.eval()(x)
    value = objective(BatchOutputs([out], y, labels=y, reference=ref), 0)
    assert value.terms["similarity_protection"].item() == 0.0  # the start is its own reference
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    out = model(x)
    value = objective(BatchOutputs([out], y, labels=y, reference=ref), 0)
    e = torch.nn.functional.normalize(out.embedding.detach(), dim=-1)
    r = torch.nn.functional.normalize(ref.embedding.detach(), dim=-1)
    pairs = [(i, j) for i in range(10) for j in range(i + 1, 10) if y[i] == y[j]]
    gaps = [float(r[i] @ r[j] - e[i] @ e[j] - 0.05) for i, j in pairs]
    expected = sum(max(0.0, gap) for gap in gaps) / len(gaps)
    assert value.terms["similarity_protection"].item() == pytest.approx(expected, abs=1e-6)


def test_read_idx_checks_its_header(tmp_path):
    bad = tmp_path / "bad.gz"
    bad.write_bytes(gzip.compress(b"\x00\x01\x02\x03"))
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(bad)
    short = tmp_path / "short"
    short.write_bytes(b"\x00\x00\x08\x01" + (5).to_bytes(4, "big") + b"\x01\x02")
    with pytest.raises(ValueError, match=r"header says \(5,\) but holds 2 values"):
        read_idx(short)


@pytest.fixture
def fashion():
    if not HAVE_FASHION:
        if REQUIRED:
            pytest.fail("CONTRASTLAB_REQUIRE has fashion-mnist but dataset-fashion-mnist is not installed")
        pytest.skip("Debian's dataset-fashion-mnist is not installed (scripts/test.sh installs it as root)")


def test_fashion_mnist_identities_are_open_set_on_test(fashion):
    from contrastlab.data import get_dataset

    data = get_dataset("fashion_mnist", holdout_classes=[0, 9], train_per_class=50, test_per_class=20)
    split = data.predefined_split
    assert data.num_classes == 8 and data.features.shape == (8 * 50 + 2 * 20, 784)
    assert set(data.targets[split["test"]].tolist()) == {8, 9}  # held-out identities come last
    assert set(data.targets[split["train"]].tolist()) == set(range(8))
    assert set(data.targets[split["val"]].tolist()) == set(range(8))
    assert data.identity_names[8:] == ["t-shirt/top", "ankle boot"]
    assert float(data.features.min()) >= 0.0 and float(data.features.max()) <= 1.0
    with pytest.raises(ValueError, match="holdout_classes"):
        get_dataset("fashion_mnist", holdout_classes=[10])


def test_pretrain_finetune_with_protection_and_resume_with_new_weights(fashion, tmp_path):
    small = ["data.options.train_per_class=60", "data.options.test_per_class=40", "trainer.epochs=2",
             "trainer.batch_size=64"]  # fmt: skip
    runs = ["--runs-dir", str(tmp_path)]
    assert cli_main(["train", str(RECIPES / "identity_pretrain.yaml"), *small, *runs]) == 0
    pretrain = tmp_path / "identity_pretrain"
    test = json.loads((pretrain / "metrics.json").read_text())["test"]
    assert {"tar@far=0.001", "eer", "rank1", "cosine_similarity"} <= set(test) and "accuracy" not in test
    row = read_history(pretrain / "history.csv")[0]
    assert "val/cosine_similarity" in row and "val/accuracy" in row
    fine = [*small, f"model.init_from={pretrain}"]
    assert cli_main(["train", str(RECIPES / "identity_finetune.yaml"), *fine, *runs]) == 0
    run = tmp_path / "identity_finetune"
    start = load_checkpoint(pretrain / "checkpoints" / "best.pt")["model"]
    new_weight = "objective.similarity_protection.weight=2.0"
    assert cli_main(["resume", str(run), "trainer.epochs=3", new_weight]) == 0
    history = read_history(run / "history.csv")
    assert [r["weight/similarity_protection"] for r in history] == [1.0, 1.0, 2.0]
    reference = TrainState.load(run / "checkpoints" / "last.pt").reference
    assert reference is not None
    assert all(torch.equal(reference[k], v) for k, v in start.items() if k.startswith("encoder."))


def test_rotate_images_turns_clockwise_as_displayed():
    from contrastlab.data.images import rotate_images

    g = torch.Generator().manual_seed(0)
    images = torch.rand(3, 6, 6, generator=g)
    turned = rotate_images(images, torch.tensor([90.0, 0.0, -90.0]))
    torch.testing.assert_close(turned[0], torch.rot90(images[0], -1), atol=1e-5, rtol=0)
    torch.testing.assert_close(turned[1], images[1], atol=1e-6, rtol=0)
    torch.testing.assert_close(turned[2], torch.rot90(images[2], 1), atol=1e-5, rtol=0)


def test_the_auxiliary_pose_head_learns_the_pose_and_is_optional(fashion, tmp_path):
    from contrastlab.data import get_dataset

    posed = get_dataset("fashion_mnist", train_per_class=30, test_per_class=10, pose_degrees=30)
    upright = get_dataset("fashion_mnist", train_per_class=30, test_per_class=10)
    assert upright.auxiliary is None and posed.auxiliary.shape == (7 * 30 + 3 * 10, 1)
    assert float(posed.auxiliary.abs().max()) <= 1.0 and float(posed.auxiliary.std()) > 0.3
    assert not torch.equal(posed.features, upright.features) and torch.equal(posed.targets, upright.targets)
    with pytest.raises(ValueError, match="pose_degrees=-5"):
        get_dataset("fashion_mnist", pose_degrees=-5)

    small = ["data.options.train_per_class=100", "data.options.test_per_class=30", "trainer.epochs=6",
             "trainer.lr=0.003", "trainer.batch_size=64", "model.init_from=null",
             "objective.auxiliary.weight=1.0"]  # fmt: skip
    assert cli_main(["train", str(RECIPES / "identity_pose.yaml"), *small, "--runs-dir", str(tmp_path)]) == 0
    history = read_history(tmp_path / "identity_pose" / "history.csv")
    assert history[-1]["train/auxiliary"] < history[0]["train/auxiliary"]
    # A constant guess of 0 is off by 0.5 on average for poses uniform in [-1, 1].
    assert history[-1]["val/auxiliary_mae"] < 0.4 and history[-1]["train_eval/auxiliary_mae"] < 0.4
    test = json.loads((tmp_path / "identity_pose" / "metrics.json").read_text())["test"]
    assert {"auxiliary_mae", "tar@far=0.001", "eer"} <= set(test)  # open-set: pose and verification

    config, _ = load_config(RECIPES / "identity_pose.yaml", [*small, "data.options.pose_degrees=0"])
    with pytest.raises(ValueError, match=r"objective\.auxiliary needs auxiliary targets"):
        make_model(config, get_dataset("fashion_mnist", train_per_class=30, test_per_class=10))


def test_the_auxiliary_term_is_the_mse_of_the_auxiliary_head_and_needs_its_targets():
    from contrastlab.models import build_model

    model = build_model("mlp", num_features=8, num_outputs=3, hidden_dims=[16], embedding_dim=8,
                        projection_dim=4, num_auxiliary=2)  # fmt: skip
    x, y, pose = torch.randn(6, 8), torch.tensor([0, 1, 2, 0, 1, 2]), torch.randn(6, 2)
    out = model(x)
    assert out.auxiliary is not None and out.auxiliary.shape == (6, 2)
    objective = Objective(ObjectiveConfig(auxiliary={"weight": 0.5}))
    value = objective(BatchOutputs([out, out.rows(0, 6)], y, labels=y, auxiliary=pose), 0)
    expected = ((out.auxiliary - pose) ** 2).mean()
    assert value.terms["auxiliary"].item() == pytest.approx(expected.item(), rel=1e-6)
    assert value.total.item() == pytest.approx(value.task.item() + 0.5 * expected.item(), rel=1e-6)
    with pytest.raises(ValueError, match="auxiliary head and the dataset's auxiliary targets"):
        objective(BatchOutputs([out], y, labels=y), 0)


def test_identity_baselines_pca_cosine_and_the_cross_entropy_run_on_the_same_open_set_split(fashion, tmp_path,
                                                                                             capsys):
    from sklearn.decomposition import PCA

    from contrastlab.data import get_dataset
    from contrastlab.diagnostics.verification import verification_metrics

    small = ["data.options.train_per_class=60", "data.options.test_per_class=40"]
    runs = ["--runs-dir", str(tmp_path)]
    assert cli_main(["baseline", str(RECIPES / "identity_pretrain.yaml"), *small, *runs, "--name", "id"]) == 0
    assert "id_pca_cosine: test cosine_similarity=" in capsys.readouterr().out
    metrics = json.loads((tmp_path / "id_pca_cosine" / "metrics.json").read_text())
    assert metrics["best"]["metric"] == "val/eer" and metrics["baseline"]["components"] == 128
    # the oracle: sklearn's PCA on the training rows, cosine verification of the open-set test rows
    data = get_dataset("fashion_mnist", holdout_classes=[7, 8, 9], train_per_class=60, test_per_class=40)
    split = json.loads((tmp_path / "id_pca_cosine" / "split.json").read_text())
    x = data.features.numpy()
    pca = PCA(n_components=128, random_state=0).fit(x[split["train"]])
    expected = verification_metrics(pca.transform(x[split["test"]]), data.targets[split["test"]].numpy(),
                                    far_targets=(1e-3, 1e-2))  # fmt: skip
    assert set(data.targets[split["test"]].tolist()) == {7, 8, 9}
    assert metrics["test"]["eer"] == pytest.approx(expected["eer"], abs=1e-6)
    assert metrics["test"]["tar@far=0.01"] == pytest.approx(expected["tar@far=0.01"], abs=1e-6)
    # the supervised counterpart: cross-entropy, no margin, judged by the same verification
    assert cli_main(["train", str(RECIPES / "identity_ce.yaml"), *small, "trainer.epochs=1", *runs]) == 0
    ce = json.loads((tmp_path / "identity_ce" / "metrics.json").read_text())
    assert {"tar@far=0.001", "tar@far=0.01", "eer", "rank1"} <= set(ce["test"])
    assert "accuracy" not in ce["test"]  # the test identities were never trained on
    assert json.loads((tmp_path / "identity_ce" / "split.json").read_text()) == split
