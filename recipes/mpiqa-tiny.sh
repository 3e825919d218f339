#!/usr/bin/env bash
# Reproduce mpiqa-tiny, the default model shipped in src/mpiqa/weights/, from scratch.
# Needs: pip install -c constraints.txt -e '.[pretrain]' and the data folder (../shared/data
# layout: biq2021/ with its training CSV, pristine/ with clean images). CPU only is fine.
#   recipes/mpiqa-tiny.sh [DATA_DIR] [OUT_DIR]
# Stage 4 overwrites the packaged weights; `git diff --stat` then shows what changed.
set -euo pipefail
DATA=${1:-../shared/data}
OUT=${2:-runs/mpiqa-tiny}
MPIQA=${MPIQA:-mpiqa}

# 1. Backbone: frozen EfficientNet-Lite0 stem + small transformers, on BIQ2021's training
#    part (validation part carved out, saved as split.json) and synthetic distortions.
$MPIQA -v pretrain-backbone --root "$DATA/biq2021" --clean "$DATA/pristine" --out "$OUT/backbone"

# 2. Meta-prompt pre-training (GRMP-IQA) over synthetic distortion tasks of the clean images.
$MPIQA -v meta-pretrain --config configs/mpiqa-tiny.toml --root "$DATA/pristine" \
    --weights "$OUT/backbone/backbone.safetensors" --out "$OUT/meta"

# 3. Multi-modal prompt training on the same training part; the same validation part
#    selects the epoch.
$MPIQA -v train --config configs/mpiqa-tiny.toml --dataset biq2021 --root "$DATA/biq2021" \
    --split-file "$OUT/backbone/split.json" --weights "$OUT/backbone/backbone.safetensors" \
    --init-prompts "$OUT/meta/meta_prompts.safetensors" --out "$OUT/prompts"

# 4. Ship it.
"${PYTHON:-python}" -m mpiqa.training.package --backbone "$OUT/backbone/backbone.safetensors" \
    --checkpoint "$OUT/prompts/best.safetensors"
