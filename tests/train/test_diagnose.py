from __future__ import annotations

import json

import numpy as np
import pytest

from contrastlab.cli import main as cli_main
from contrastlab.diagnostics import linear_cka
from contrastlab.train import train, validate_config
from contrastlab.train.diagnose import generalization_gap, load_embeddings
from tests.train.test_trainer import TINY


@pytest.fixture(scope="module")
def twin_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    with_term = validate_config(TINY)
    baseline = validate_config({**TINY, "objective": {"supcon": {"weight": 0.0}, "rdrop": {"weight": 0.0}}})
    train(with_term, root / "treatment", progress=False)
    train(baseline, root / "baseline", progress=False)
    return root


def test_diagnose__run_against_its_twin_writes_everything(twin_runs, capsys):
    treatment, baseline = twin_runs / "treatment", twin_runs / "baseline"
    assert cli_main(["diagnose", str(treatment), "--against", str(baseline)]) == 0
    printed = capsys.readouterr().out
    assert "embedding.probes.logistic.accuracy" in printed and "comparison.stage_cka.head" in printed
    result = json.loads((treatment / "diagnostics.json").read_text())
    emb = result["embedding"]
    assert 0 <= emb["probes"]["knn1_accuracy"] <= 1 and "ari" in emb["clustering"]
    assert "accuracy" in result["generalization"]
    a, _ = load_embeddings(treatment / "embeddings" / "val.npz")
    b, _ = load_embeddings(baseline / "embeddings" / "val.npz")
    assert result["comparison"]["embedding_cka"]["linear"] == pytest.approx(linear_cka(a, b))
    stages = result["comparison"]["stage_cka"]
    assert set(stages) == {"encoder.layers.0", "encoder.layers.1", "head", "projection"}
    assert all(0 <= v <= 1 + 1e-9 for v in stages.values())
    assert (treatment / "cka_against.png").stat().st_size > 0 and (treatment / "projection_val.png").is_file()


def test_diagnose__a_run_against_itself_has_cka_one(twin_runs):
    from contrastlab.train.diagnose import diagnose_run

    result = diagnose_run(twin_runs / "baseline", against=twin_runs / "baseline", plots=False)
    assert all(v == pytest.approx(1.0) for v in result["comparison"]["stage_cka"].values())


def test_diagnose__plain_embedding_file(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 20)
    emb = rng.normal(size=(60, 5)) + 3 * labels[:, None]
    path = tmp_path / "emb.npz"
    np.savez(path, embedding=emb, labels=labels)
    assert cli_main(["diagnose", "--embeddings", str(path)]) == 0
    result = json.loads((tmp_path / "emb.npz.diagnostics.json").read_text())
    assert result["embedding"]["probes"]["logistic"]["accuracy"] > 0.9


def test_diagnose__errors(tmp_path, capsys):
    assert cli_main(["diagnose"]) == 2
    np.save(tmp_path / "x.csv", np.zeros((3, 2)))
    assert cli_main(["diagnose", "--embeddings", str(tmp_path / "x.txt")]) == 2
    assert "must be .npz, .npy or .pt" in capsys.readouterr().err


def test_generalization_gap__final_and_at_best():
    history = [
        {"epoch": 1, "train_eval/accuracy": 0.7, "val/accuracy": 0.6},
        {"epoch": 2, "train_eval/accuracy": 0.9, "val/accuracy": 0.7},
        {"epoch": 3, "train_eval/accuracy": 1.0, "val/accuracy": 0.65},
    ]
    gap = generalization_gap(history)["accuracy"]
    assert gap["final"]["difference"] == pytest.approx(0.35)
    assert gap["at_best_val"]["epoch"] == 2 and gap["at_best_val"]["ratio"] == pytest.approx(0.9 / 0.7)


def test_load_embeddings__npy_and_pt_formats(tmp_path):
    import torch

    emb = np.arange(12.0).reshape(4, 3)
    np.save(tmp_path / "e.npy", emb)
    got, labels = load_embeddings(tmp_path / "e.npy")
    assert np.array_equal(got, emb) and labels is None
    torch.save({"embedding": torch.tensor(emb), "labels": torch.tensor([0, 1, 0, 1])}, tmp_path / "e.pt")
    got, labels = load_embeddings(tmp_path / "e.pt")
    assert np.array_equal(got, emb) and labels.tolist() == [0, 1, 0, 1]
    torch.save({"feats": torch.tensor(emb)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match=r"no array named 'embedding' \(it has \['feats'\]\); pass --key"):
        load_embeddings(tmp_path / "other.pt")
    np.savez(tmp_path / "bad.npz", embedding=emb, labels=np.zeros(3))
    with pytest.raises(ValueError, match="3 labels for 4 embedding rows"):
        load_embeddings(tmp_path / "bad.npz")


def test_plot_projection__tsne_writes_a_png_and_umap_explains_itself(tmp_path):
    import importlib.util

    from contrastlab.diagnostics.summary import plot_projection

    x = np.random.default_rng(0).normal(size=(40, 5))
    plot_projection(x, np.arange(40) % 2, str(tmp_path / "t.png"), method="tsne")
    assert (tmp_path / "t.png").stat().st_size > 0
    if importlib.util.find_spec("umap") is None:
        with pytest.raises(ImportError, match="pip install umap-learn"):
            plot_projection(x, None, str(tmp_path / "u.png"), method="umap")


def test_diagnose__alignment_of_the_runs_two_views_equals_the_oracle(twin_runs):
    # Seen failing before the fix: README promised alignment, and diagnose never computed it.
    from contrastlab.train.diagnose import diagnose_run

    result = diagnose_run(twin_runs / "treatment", plots=False)
    with np.load(twin_runs / "treatment" / "embeddings" / "val.npz") as saved:
        a, b, clean = saved["view_a"], saved["view_b"], saved["embedding"]
    assert a.shape == b.shape == clean.shape and not np.allclose(a, b)

    def unit(x):
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    oracle = np.mean([np.sum((unit(a)[i] - unit(b)[i]) ** 2) for i in range(len(a))])  # Wang & Isola Eq. 4
    alignment = result["embedding"]["geometry"]["alignment"]
    assert alignment == pytest.approx(oracle) and 0 < alignment < 4  # dropout 0.1: two different views


def test_diagnose__no_views_no_alignment(tmp_path):
    from contrastlab.train.diagnose import diagnose_run

    plain = {**TINY, "objective": {"task": "cross_entropy"},
             "trainer": {**TINY["trainer"], "epochs": 1, "views": {"count": 1}}}  # fmt: skip
    train(validate_config(plain), tmp_path / "r", progress=False)
    assert "alignment" not in diagnose_run(tmp_path / "r", plots=False)["embedding"]["geometry"]
