#!/usr/bin/env bash
# The text-views study's comparison at small scale on Rotten Tomatoes, from the CLI: the classic baselines, then CE,
# CE + R-Drop, CE + SupCon and the best token-level setting (k and weight chosen on validation with seed 0
# from the study's grid), each trained with seeds 0..SEEDS-1 on one split (a seed gives every arm the same
# initial weights), then one comparison and a mean ± sd table of test accuracy.
#   RUNS=runs/rt_grid SEEDS=3 recipes/text/rt_grid.sh
# (TOKEN_K=8,16 TOKEN_WEIGHTS=0.5 narrows the token-level grid: each point is one more run.)
set -euo pipefail
cd "$(dirname "$0")/../.."
runs="${RUNS:-runs/rt_grid}"
seeds="${SEEDS:-3}"
cl="${CONTRASTLAB:-contrastlab}"
here=recipes/text

"$cl" baseline "$here/rt_ce.yaml" --seeds "$seeds" --runs-dir "$runs" --name rt
for recipe in rt_ce rt_rdrop_one_stage rt_supcon; do
    for ((s = 0; s < seeds; s++)); do
        [ -f "$runs/${recipe}_seed$s/metrics.json" ] && continue
        "$cl" train "$here/$recipe.yaml" trainer.seed=$s --name "${recipe}_seed$s" --runs-dir "$runs" --overwrite
    done
done
"$cl" sweep "$here/rt_token_topk.yaml" --param "objective.token_supcon.k=${TOKEN_K:-8,16,32}" \
    --param "objective.token_supcon.weight=${TOKEN_WEIGHTS:-0.2,0.5}" --out "$runs/token_sweep"
best=$("${PYTHON:-python}" -c "import json,sys; b=json.load(open(sys.argv[1]))['best']['params']; \
print(' '.join(f'{k}={v}' for k, v in b.items()))" "$runs/token_sweep/sweep.json")
echo "best token-level setting on validation: $best"
for ((s = 0; s < seeds; s++)); do
    [ -f "$runs/rt_token_best_seed$s/metrics.json" ] && continue
    "$cl" train "$here/rt_token_topk.yaml" $best trainer.seed=$s --name "rt_token_best_seed$s" \
        --runs-dir "$runs" --overwrite
done
"$cl" compare "$runs"/*_seed* --out "$runs/comparison"
"${PYTHON:-python}" - "$runs" <<'PY'
import json, pathlib, re, statistics, sys
arms = {}
for m in sorted(pathlib.Path(sys.argv[1]).glob("*_seed*/metrics.json")):
    arm = re.sub(r"_seed\d+$", "", m.parent.name)
    arms.setdefault(arm, []).append(json.loads(m.read_text())["test"]["accuracy"])
print(f"{'arm':28} {'seeds':>5}  test accuracy (mean ± sd)")
for arm, acc in arms.items():
    sd = statistics.stdev(acc) if len(acc) > 1 else float("nan")
    print(f"{arm:28} {len(acc):5d}  {statistics.mean(acc):.4f} ± {sd:.4f}")
PY
