"""Molecules end to end: SimCLR and MoCo pretraining, fine-tuning from them, an auxiliary contrastive term,
and exact resume of an augmented MoCo run (queue, momentum encoder and views restored)."""

from __future__ import annotations

import csv

import pytest
import torch

pytest.importorskip("rdkit")
pytest.importorskip("torch_geometric")

from contrastlab.data import get_dataset
from contrastlab.train import load_checkpoint, train, validate_config
from contrastlab.train.build import load_pretrained_encoder, make_model
from contrastlab.train.checkpoint import TrainState

AUGMENT = {"random_choice": [{"name": "node_drop", "p": 0.2}, {"name": "edge_drop", "p": 0.2},
                             {"name": "subgraph", "keep": 0.8}]}  # fmt: skip


@pytest.fixture(scope="module")
def slice_csv(tmp_path_factory):
    """120 solubility molecules (90 train, 30 test) as a user CSV with its own split column."""
    data = get_dataset("solubility")
    path = tmp_path_factory.mktemp("data") / "slice.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["smiles", "logS", "part"])
        for i in range(120):
            w.writerow([data.strings[i * 10], float(data.targets[i * 10]), "test" if i % 4 == 0 else "train"])
    return str(path)


def _config(path, **changes):
    raw = {
        "name": "mol",
        "data": {"name": "molecule_csv", "split": "dataset", "val_fraction": 0.2,
                 "options": {"path": path, "smiles_column": "smiles", "target_column": "logS", "split_column": "part"}},
        "model": {"name": "gine", "hidden_dims": [16, 16], "embedding_dim": 16, "projection_dim": 8,
                  "options": {"pooling": ["mean", "attention"]}},
        "objective": {"task": "mse"},
        "trainer": {"epochs": 2, "batch_size": 16, "lr": 0.003, "term_grad_norm_every": 0,
                    "early_stopping": {"monitor": "val/rmse", "mode": "min"}},
    }  # fmt: skip
    for key, value in changes.items():
        node = raw
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return validate_config(raw)


def _pretrain(path, term):
    return _config(path, **{"objective.task": "none", f"objective.{term}": {"weight": 1.0, "temperature": 0.2},
                            "trainer.views": {"count": 2, "augment": AUGMENT},
                            "trainer.early_stopping": {"monitor": "epoch", "mode": "max"}})  # fmt: skip


@pytest.mark.parametrize("term", ["nt_xent", "moco"])
def test_pretrain_then_fine_tune(tmp_path, slice_csv, term):
    pre = train(_pretrain(slice_csv, term), tmp_path / "pre", progress=False)
    assert all(torch.isfinite(torch.tensor(row[f"train/{term}"])) for row in pre.history)
    assert not pre.test  # no task, no task metrics

    config = _config(slice_csv, **{"model.init_from": str(tmp_path / "pre")})
    model = make_model(config, get_dataset(config.data.name, **config.data.options))
    load_pretrained_encoder(model, tmp_path / "pre")
    pretrained = load_checkpoint(tmp_path / "pre" / "checkpoints" / "best.pt")["model"]
    assert all(torch.equal(v, pretrained[f"encoder.{k}"]) for k, v in model.encoder.state_dict().items())

    tuned = train(config, tmp_path / "tuned", progress=False)
    assert set(tuned.test) == {"loss", "mae", "rmse", "r2"} and tuned.test["rmse"] > 0
    assert len(tuned.history) == 2


def test_regression_metrics_are_in_the_targets_units(tmp_path, slice_csv):
    result = train(_config(slice_csv, **{"trainer.epochs": 1}), tmp_path / "run", progress=False)
    data = get_dataset("molecule_csv", path=slice_csv, smiles_column="smiles", target_column="logS", split_column="part")
    test_y = data.targets[data.predefined_split["test"]]
    # an RMSE in standardised units would be near 1; the spread of logS here is larger
    constant = float((test_y - test_y.mean()).pow(2).mean().sqrt())
    assert constant > 1.5 and 0.3 * constant < result.test["rmse"] < 3 * constant


def test_named_subsets_are_scored_on_the_rows_of_each_part_in_them(tmp_path, slice_csv):
    with open(slice_csv, newline="") as f:
        rows = list(csv.reader(f))
    path = tmp_path / "flags.csv"
    with open(path, "w", newline="") as f:  # "all": every row; "held": the test rows only
        csv.writer(f).writerows([[*rows[0], "all", "held"], *([*r, 1, int(r[2] == "test")] for r in rows[1:])])
    config = _config(str(path), **{"trainer.epochs": 1,
                                   "data.options.subset_columns": {"all": "all", "held": "held"}})  # fmt: skip
    result = train(config, tmp_path / "run", progress=False)
    assert result.test["rmse_all"] == pytest.approx(result.test["rmse"], rel=1e-6)
    assert result.test["mae_all"] == pytest.approx(result.test["mae"], rel=1e-6)
    assert result.test["rmse_held"] == pytest.approx(result.test["rmse"], rel=1e-6)
    (row,) = result.history
    assert row["val/rmse_all"] == pytest.approx(row["val/rmse"], rel=1e-6)
    assert "val/rmse_held" not in row  # no validation row is in it


def test_auxiliary_term_on_augmented_views_with_the_task_on_clean_inputs(tmp_path, slice_csv):
    config = _config(slice_csv, **{"objective.nt_xent": {"weight": 0.1, "temperature": 0.2},
                                   "trainer.views": {"count": 2, "augment": AUGMENT}})  # fmt: skip
    result = train(config, tmp_path / "aux", progress=False)
    assert all(row["train/nt_xent"] > 0 for row in result.history)
    assert result.test["rmse"] > 0


def test_augmented_moco_run_resumes_exactly(tmp_path, slice_csv):
    config = _pretrain(slice_csv, "moco")
    config = config.model_copy(update={"trainer": config.trainer.model_copy(update={"epochs": 3})})
    reference = train(config, tmp_path / "ref", progress=False)

    class Stop(Exception):
        pass

    def stop_after_first(epoch, row):
        if epoch == 1:
            raise Stop

    with pytest.raises(Stop):
        train(config, tmp_path / "cut", progress=False, on_epoch=stop_after_first)
    resumed = train(config, tmp_path / "cut", resume=True, progress=False)
    strip = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h]  # noqa: E731
    assert strip(resumed.history) == strip(reference.history)
    ref = TrainState.load(tmp_path / "ref" / "checkpoints" / "last.pt")
    new = TrainState.load(tmp_path / "cut" / "checkpoints" / "last.pt")
    assert ref.queue is not None and new.queue is not None and ref.momentum is not None and new.momentum is not None
    assert torch.equal(ref.queue["_keys"], new.queue["_keys"])
    assert all(torch.equal(v, new.momentum[k]) for k, v in ref.momentum.items())


def test_init_from_a_different_architecture_is_refused(tmp_path, slice_csv):
    train(_config(slice_csv, **{"trainer.epochs": 1}), tmp_path / "small", progress=False)
    wide = _config(slice_csv, **{"model.hidden_dims": [32, 32], "model.init_from": str(tmp_path / "small")})
    with pytest.raises(ValueError, match=r"model.init_from=.*small': its encoder does not match this model's"):
        train(wide, tmp_path / "wide", progress=False)


def test_dataset_split_needs_a_dataset_with_its_own_split(tmp_path):
    config = validate_config({"data": {"name": "blobs", "split": "dataset"}, "objective": {"task": "cross_entropy"}})
    with pytest.raises(ValueError, match=r"data.split=dataset but dataset 'blobs' has no split of its own"):
        train(config, tmp_path / "run", progress=False)


def test_augment_on_tensor_data_is_refused(tmp_path):
    config = validate_config({"trainer": {"views": {"count": 2, "augment": [{"name": "node_mask"}]}}})
    with pytest.raises(ValueError, match=r"trainer.views.augment needs graph or image inputs; dataset 'blobs'"):
        train(config, tmp_path / "run", progress=False)


def test_diagnose_compares_graph_runs_stage_by_stage(tmp_path, slice_csv):
    import math

    from contrastlab.train.diagnose import diagnose_run

    train(_config(slice_csv), tmp_path / "a", progress=False)
    train(_config(slice_csv, **{"trainer.seed": 1}), tmp_path / "b", progress=False)
    result = diagnose_run(tmp_path / "a", against=tmp_path / "b", plots=False)
    stages = result["comparison"]["stage_cka"]
    assert list(stages) == ["encoder.embed", "encoder.blocks.0", "encoder.blocks.1", "encoder.readout", "head", "projection"]
    assert all(0.0 <= v <= 1.0 + 1e-9 for v in stages.values())
    matrix = result["comparison"]["stage_cka_matrix"]["values"]
    assert math.isnan(matrix[1][3])  # atoms vs molecules: different units, no CKA


def test_unweighted_aux_term_with_task_on_clean_is_exactly_the_plain_task_run(tmp_path, slice_csv):
    # A verdict's baseline arm: the views would only feed a term of weight 0, so they are not run at all
    # (their forward passes would still move BatchNorm statistics): the history equals the plain run's.
    plain = train(_config(slice_csv), tmp_path / "plain", progress=False)
    baseline = train(_config(slice_csv, **{"objective.nt_xent": {"weight": 0.0, "temperature": 0.2},
                                           "trainer.views": {"count": 2, "augment": AUGMENT}}),
                     tmp_path / "baseline", progress=False)  # fmt: skip
    keys = [k for k in plain.history[0] if k.startswith(("train/task", "val/"))]
    assert [[row[k] for k in keys] for row in baseline.history] == [[row[k] for k in keys] for row in plain.history]
    assert plain.test == baseline.test


def test_descriptors_beside_the_graph_train_rebuild_and_are_refused_where_they_cannot_work(tmp_path, slice_csv):
    config = _config(slice_csv, **{"model.options": {"pooling": ["mean", "attention"], "descriptors": "rdkit"}})
    result = train(config, tmp_path / "run", progress=False, quiet=True)
    assert all(v == v for v in result.test.values())
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt")["model"]
    width = state["encoder.readout.descriptor_norm.running_mean"].shape[0]
    assert width > 200  # RDKit's descriptors, normalised by their batch statistics while training
    assert state["encoder.readout.out.weight"].shape[1] == 2 * 16 + width
    # the run directory rebuilds the same model (diagnostics, verdict arms): embeddings from the checkpoint
    data = get_dataset("molecule_csv", path=slice_csv, smiles_column="smiles", target_column="logS",
                       split_column="part")  # fmt: skip
    model = make_model(config, data)
    model.load_state_dict(state)
    assert data.descriptors is not None and data.take(torch.arange(3)).descriptors.shape == (3, width)
    with pytest.raises(ValueError, match="the same descriptors"):  # a contrastive term would match them
        train(_pretrain(slice_csv, "nt_xent").model_copy(update={"model": config.model}), tmp_path / "aug",
              progress=False, quiet=True)  # fmt: skip
    off = config.model.model_copy(update={"name": "graphormer", "options": {"descriptors": None}})
    assert make_model(config.model_copy(update={"model": off}), data) is not None  # null: none, any model
    graphormer = config.model_copy(update={"model": config.model.model_copy(update={"name": "graphormer"})})
    with pytest.raises(ValueError, match=r"model\.name=gine"):
        train(graphormer, tmp_path / "gt", progress=False, quiet=True)
    for bad in ("x", ["rdkit", "rdkit"], []):
        other = config.model_copy(update={"model": config.model.model_copy(update={"options": {"descriptors": bad}})})
        with pytest.raises(ValueError, match=r"descriptors=.*expected one of \['rdkit', 'morgan', 'morgan_count', "
                                             r"'peptide'\]"):
            train(other, tmp_path / "md", progress=False, quiet=True)
    peptide = config.model_copy(update={"model": config.model.model_copy(update={"options": {"descriptors": "peptide"}})})
    with pytest.raises(ValueError, match=r"\['peptide'\] are not computed for small molecules"):
        train(peptide, tmp_path / "pd", progress=False, quiet=True)


def test_fingerprints_and_descriptors_side_by_side_train_and_rebuild(tmp_path, slice_csv):
    options = {"pooling": ["mean"], "descriptors": ["morgan_count", "rdkit"], "descriptor_clip": 5.0}
    config = _config(slice_csv, **{"model.options": options})
    result = train(config, tmp_path / "run", progress=False, quiet=True)
    assert all(v == v for v in result.test.values())
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt")["model"]
    data = get_dataset("molecule_csv", path=slice_csv, smiles_column="smiles", target_column="logS",
                       split_column="part")  # fmt: skip
    width = 2048 + data.add_descriptors("rdkit")
    assert state["encoder.readout.out.weight"].shape[1] == 16 + width
    model = make_model(config, data)  # the same dataset, asked for other kinds, recomputes them
    assert data.descriptor_kinds == ("morgan_count", "rdkit") and data.descriptors.shape[1] == width
    model.load_state_dict(state)


def test_a_graph_only_pretrained_encoder_fine_tunes_with_descriptors_starting_from_its_embeddings(tmp_path, slice_csv):
    train(_pretrain(slice_csv, "nt_xent"), tmp_path / "pre", progress=False, quiet=True)
    options = {"pooling": ["mean", "attention"], "descriptors": "rdkit"}
    config = _config(slice_csv, **{"model.options": options, "model.init_from": str(tmp_path / "pre")})
    data = get_dataset("molecule_csv", path=slice_csv, smiles_column="smiles", target_column="logS",
                       split_column="part")  # fmt: skip
    plain, model = make_model(_config(slice_csv), data), make_model(config, data)
    load_pretrained_encoder(plain, tmp_path / "pre")
    load_pretrained_encoder(model, tmp_path / "pre")
    readout = model.encoder.readout.out.weight
    pretrained = load_checkpoint(tmp_path / "pre" / "checkpoints" / "best.pt")["model"]
    assert torch.equal(readout[:, :32], pretrained["encoder.readout.out.weight"])
    assert not readout[:, 32:].any() and readout.shape[1] == 32 + data.descriptors.shape[1]
    batch = data.take(torch.arange(40))
    with torch.no_grad():  # the descriptors' columns start at zero: the pretrained embeddings, exactly
        torch.testing.assert_close(model.eval().encoder(batch), plain.eval().encoder(batch))
    # only model.init_from widens: loading a whole run (resume, rebuild) into another model stays strict
    with pytest.raises(RuntimeError, match=r"size mismatch for encoder\.readout\.out\.weight"):
        make_model(config, data).load_state_dict(plain.state_dict(), strict=False)

    train(config, tmp_path / "tuned", progress=False, quiet=True)
    tuned = load_checkpoint(tmp_path / "tuned" / "checkpoints" / "best.pt")["model"]["encoder.readout.out.weight"]
    assert tuned[:, 32:].abs().sum() > 0  # and training moves them
    # the other way round, descriptors the model does not read, is still a mismatch
    back = _config(slice_csv, **{"model.init_from": str(tmp_path / "tuned")})
    with pytest.raises(ValueError, match=r"does not match this model's: Unexpected key.*descriptor_norm.*\(\+\d+ more\)"):
        train(back, tmp_path / "back", progress=False, quiet=True)
