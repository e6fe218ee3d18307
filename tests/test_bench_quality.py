"""bench/quality.py: each row trains its recipes' seeds (an expensive row at most its max_seeds) and fits
its baselines once, reads back what finished, and renders mean ± sd with n where it matters."""

from __future__ import annotations

import json
from pathlib import Path

from bench import quality as q


def _fake_cli(calls: list[list[str]]):
    def run(args: list[str]) -> None:  # what `contrastlab train` / `baseline` / `ensemble` leave behind
        calls.append(args)
        if args[0] == "ensemble":  # the members' mean, as a stand-in
            members = [json.loads((Path(a) / "metrics.json").read_text())["test"] for a in args[1:-3]]
            out = Path(args[args.index("--out") + 1])
            out.mkdir(parents=True)
            mean = {k: sum(m[k] for m in members) / len(members) for k in members[0]}
            (out / "metrics.json").write_text(json.dumps({"test": mean}))
            return
        runs = Path(args[args.index("--runs-dir") + 1])
        name = args[args.index("--name") + 1]
        out = runs / (name if args[0] == "train" else f"{name}_{args[args.index('--kind') + 1]}")
        out.mkdir(parents=True)
        (out / "config.yaml").write_text("meta: {started: '2026-01-01T10:00:00+00:00'}\n")
        seed = next((int(a.split("=")[1]) for a in args if a.startswith("trainer.seed=")), 9)
        test = {"mae": 0.5 + seed / 10, "rmse": 1 + seed / 10}
        (out / "metrics.json").write_text(json.dumps({"test": test}))

    return run


def test_an_expensive_row_trains_its_max_seeds_and_says_n(tmp_path, monkeypatch):
    calls: list[list[str]] = []
    monkeypatch.setattr(q, "_cli", _fake_cli(calls))
    small = q.run_row("mp_gap", q.ROWS["mp_gap"], tmp_path, seeds=3)
    big = q.run_row("mp_gap_10k", q.ROWS["mp_gap_10k"], tmp_path, seeds=3)
    trained = [c for c in calls if c[0] == "train"]
    assert len(trained) == 3 + 1  # three seeds of the small row, one of the 10,000-composition row
    assert all("data.options.subsample=10000" in c for c in trained[3:] + calls[-1:])  # its baseline too
    assert small["cells"]["mp_gap_fusion"]["mae"] == [0.5, 0.6, 0.7]
    assert big["cells"]["mp_gap_fusion"]["mae"] == [0.5]
    text = q.render({"mp_gap": small, "mp_gap_10k": big}, seeds=3)
    assert "| mp_gap band gap (eV), 4,000 compositions | mae ↓ | mp_gap_fusion 0.600 ± 0.100 (n=3) |" in text
    assert ("| mp_gap band gap (eV), 10,000 compositions | mae ↓ | mp_gap_fusion 0.500 (n=1) | "
            "composition_rf 1.400 |") in text
    calls.clear()
    assert q.run_row("mp_gap", q.ROWS["mp_gap"], tmp_path, seeds=3) == small and calls == []  # read back


def test_a_named_section_leaves_the_full_table_in_place(tmp_path, monkeypatch):
    from bench._harness import write_section

    monkeypatch.setattr(q, "_cli", _fake_cli([]))
    results = {"mp_gap": q.run_row("mp_gap", q.ROWS["mp_gap"], tmp_path, seeds=2)}
    path = tmp_path / "RESULTS.md"
    write_section("quality", "cpu", q.render(results, seeds=2), path)
    write_section("quality", "tuned", q.render(results, seeds=2, section="tuned"), path)
    text = path.read_text()
    assert text.count("<!-- quality:cpu -->") == 1 and text.count("<!-- /quality:tuned -->") == 1
    assert "`python -m bench.quality --rows mp_gap --seeds 2 --section tuned`" in text


def test_an_ensemble_row_averages_consecutive_seeds_beside_the_single_models(tmp_path, monkeypatch):
    calls: list[list[str]] = []
    monkeypatch.setattr(q, "_cli", _fake_cli(calls))
    result = q.run_row("solubility_ensemble", q.ROWS["solubility_ensemble"], tmp_path, seeds=2)
    trained = [c for c in calls if c[0] == "train"]
    assert [c[c.index("--name") + 1][-6:] for c in trained] == [f"_seed{s}" for s in range(10)]  # 2 x 5 seeds
    ensembles = [c for c in calls if c[0] == "ensemble"]
    assert [[Path(m).name[-5:] for m in c[1:-3]] for c in ensembles] == [
        [f"seed{s}" for s in range(5)], [f"seed{s}" for s in range(5, 10)]]  # fmt: skip
    single = result["cells"]["solubility_descriptors_clipped"]["rmse"]  # every member, alone
    assert single == [1 + s / 10 for s in range(10)]
    assert result["cells"]["solubility_descriptors_clipped ×5"]["rmse"] == [1.2, 1.7]  # ensembles' means
    text = q.render({"solubility_ensemble": result}, seeds=2)
    assert ("solubility_descriptors_clipped 1.450 ± 0.303 (n=10), "
            "solubility_descriptors_clipped ×5 1.450 ± 0.354 (n=2)") in text
    calls.clear()
    assert q.run_row("solubility_ensemble", q.ROWS["solubility_ensemble"], tmp_path, seeds=2) == result
    assert calls == []  # read back


def test_a_row_fits_named_baseline_variants_with_their_own_overrides(tmp_path, monkeypatch):
    # The graph tower reads mat2vec's vectors; its row shows the forest on those and on Magpie's, each named.
    calls: list[list[str]] = []
    monkeypatch.setattr(q, "_cli", _fake_cli(calls))
    result = q.run_row("mp_gap_graph", q.ROWS["mp_gap_graph"], tmp_path, seeds=2)
    fitted = [c for c in calls if c[0] == "baseline"]
    assert [c[c.index("--name") + 1] for c in fitted] == ["mp_gap_graph_magpie", "mp_gap_graph_mat2vec"]
    assert ["data.options.elements=magpie" in c for c in fitted] == [True, False]
    assert (tmp_path / "mp_gap_graph_magpie_composition_rf" / "metrics.json").is_file()
    assert set(result["cells"]) == {"mp_gap_graph", "composition_rf (magpie)", "composition_rf (mat2vec)"}
    text = q.render({"mp_gap_graph": result}, seeds=2)
    assert "composition_rf (magpie) 1.400, composition_rf (mat2vec) 1.400 |" in text
