#!/usr/bin/env bash
# Reproduce mpiqa-small, the default model shipped in src/mpiqa/weights/, from scratch.
# Needs: pip install -c constraints.txt -e '.[pretrain]' and the data folder (../shared/data
# layout: biq2021/ with its training CSV, pristine/ with clean images). CPU only is fine
# (about 20 minutes on 2 cores); DEVICE=cuda runs it on a GPU.
#   recipes/mpiqa-small.sh [DATA_DIR] [OUT_DIR]
# Stage 2 overwrites the packaged weights; `git diff --stat` then shows what changed.
set -euo pipefail
DATA=${1:-../shared/data}
OUT=${2:-runs/mpiqa-small}
MPIQA=${MPIQA:-mpiqa}
DEVICE=${DEVICE:-cpu}

# 1. Backbone: frozen EfficientNet-Lite0 stem at 384 x 384 + small transformers, on
#    BIQ2021's training part (validation part carved out, saved as split.json) and
#    synthetic distortions of 80% of the clean images; the other 20% are held apart, and
#    their distortions are a second validation part. The mean of both validation SRCCs
#    selects the epoch. The stem's feature maps are cached in $OUT/feature-cache.
$MPIQA -v pretrain-backbone --arch mpiqa-small --root "$DATA/biq2021" --clean "$DATA/pristine" \
    --val-clean-fraction 0.2 --device "$DEVICE" --feature-cache "$OUT/feature-cache" \
    --out "$OUT/backbone"

# 2. Ship it: the model reads the backbone out zero-shot over its five quality words
#    (learned prompts on top did not generalise; see the model card's ablations).
"${PYTHON:-python}" -m mpiqa.training.package --name mpiqa-small \
    --backbone "$OUT/backbone/backbone.safetensors"

# Optional check of the shipped models on the held-apart synthetic distortions:
#   python recipes/synthetic_check.py "$OUT/backbone/pretrain.json" mpiqa-small mpiqa-tiny
