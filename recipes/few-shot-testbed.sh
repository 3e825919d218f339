#!/usr/bin/env bash
# The few-shot testbed (README "Few-shot testbed"): a model that never saw a human label,
# then 50-shot fine-tuning on BIQ2021, 10 rounds, each GRMP component against its absence.
# Needs: pip install -c constraints.txt -e '.[pretrain]' and the data folder (../shared/data).
#   recipes/few-shot-testbed.sh [DATA_DIR] [OUT_DIR]
set -euo pipefail
DATA=${1:-../shared/data}
OUT=${2:-runs/testbed}
MPIQA=${MPIQA:-mpiqa}
PYTHON=${PYTHON:-python}
shift $(( $# < 2 ? $# : 2 ))  # the rest goes to few_shot_testbed.py

# 1. Backbone from synthetic distortions of the clean images only (no BIQ2021 labels); a
#    fifth of the clean images is held apart and selects the epoch.
$MPIQA -v pretrain-backbone --dataset none --clean "$DATA/pristine" --synthetic-per-image 40 \
    --out "$OUT/backbone"

# 2. Meta-prompts over synthetic distortion tasks (Reptile; an outer step that moves the
#    reset learner, see README "GRMP-IQA: where we differ").
$MPIQA -v meta-pretrain --config configs/mpiqa-tiny.toml --root "$DATA/pristine" \
    --weights "$OUT/backbone/backbone.safetensors" --inner-lr 0.001 --outer-lr 1.0 \
    --out "$OUT/meta"

# 3. 50-shot fine-tuning on a 1,162-image sample of BIQ2021, 10 rounds, every variant on
#    the same splits; writes $OUT/fewshot/table.md.
"$PYTHON" recipes/few_shot_testbed.py --backbone "$OUT/backbone/backbone.safetensors" \
    --meta "$OUT/meta/meta_prompts.safetensors" --root "$DATA/biq2021" --out "$OUT/fewshot" "$@"
