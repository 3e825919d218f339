#!/usr/bin/env bash
# One call for a developer lent the GPU machine (under 8 minutes on one H200): CUDA vs CPU
# score parity, the speed rows of the README (ViT-B/16 fp32/bf16/fp16 and ViT-L/14 bf16
# against transformers, end-to-end scoring of 2,000 JPEGs), a training step, torchrun
# with NCCL, and the test suite. Figures go to $OUT (default gpu-check-out/) as JSON and
# one log; paste them into the README's Speed section with the date and machine.
#
#   benchmarks/gpu-check.sh                  # on the GPU machine (repo root; needs torch,
#                                            # transformers, pytest; ftfy from .gpu-wheels/)
#   benchmarks/gpu-check.sh --device cpu     # the same steps, small, to test the script here
#
# Options: --device cuda|cpu, --images DIR (JPEGs for the end-to-end rows; default: 2,000
# made from examples/), --no-tests. The GPU machine has no network: before the call,
# `pip download ftfy wcwidth -d .gpu-wheels` here and carry `.gpu-wheels` (it is ignored).
set -uo pipefail
cd "$(dirname "$0")/.."

device=cuda
images=""
tests=1
while [ $# -gt 0 ]; do
    case "$1" in
        --device) device=$2; shift 2 ;;
        --images) images=$2; shift 2 ;;
        --no-tests) tests=0; shift ;;
        *) echo "gpu-check: unknown argument $1" >&2; exit 2 ;;
    esac
done
out=${OUT:-gpu-check-out}
mkdir -p "$out"
scratch=$(mktemp -d)  # CSVs compared here; $OUT keeps the log and the JSON figures
trap 'rm -rf "$scratch"' EXIT
log="$out/gpu-check.log"
: >"$log"
python=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
if [ -d .gpu-wheels ]; then
    $python -m pip install -q --no-index --find-links .gpu-wheels ftfy >>"$log" 2>&1
fi
# the package from this tree, installed or not
if ! $python -c "import mpiqa" 2>/dev/null; then
    export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
fi
mpiqa() { $python -m mpiqa "$@"; }
failures=0
step() {  # step NAME COMMAND...: run, time, log; a failure is counted, the rest goes on
    local name=$1 start status
    shift
    start=$(date +%s)
    echo "== $name" | tee -a "$log"
    "$@" 2>&1 | tee -a "$log"
    status=${PIPESTATUS[0]}
    echo "-- $name: exit $status in $(( $(date +%s) - start )) s" | tee -a "$log"
    [ "$status" -eq 0 ] || failures=$((failures + 1))
}

if [ "$device" = cuda ]; then
    big=ViT-B-16; large=ViT-L-14; batch=256; large_batch=128; iters=10; limit=2000
    workers=$(( $(nproc) - 1 )); procs=$($python -c "import torch; print(torch.cuda.device_count())")
else  # a smoke run of every step on this machine's CPU
    big=test-tiny; large=test-resnet; batch=8; large_batch=8; iters=2; limit=60
    workers=1; procs=2
fi

step environment $python -c "
import platform, torch
print(platform.platform(), 'python', platform.python_version(), 'torch', torch.__version__)
print('cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"

# JPEGs for the end-to-end rows: random 512 x 512 crops of the example photos, enlarged
if [ -z "$images" ]; then
    images="${TMPDIR:-/tmp}/mpiqa-gpu-check-jpegs"  # not under $OUT: only figures come back
    step make-images $python - "$images" "$limit" <<'EOF'
import sys
from pathlib import Path
import numpy as np
from PIL import Image
folder, n = Path(sys.argv[1]), int(sys.argv[2])
folder.mkdir(parents=True, exist_ok=True)
sources = [Image.open(p).convert("RGB") for p in sorted(Path("examples").glob("*.jpg"))]
rng = np.random.default_rng(0)
for i in range(n):
    image = sources[i % len(sources)]
    image = image.resize((image.width * 2, image.height * 2), Image.BICUBIC)
    x, y = rng.integers(0, image.width - 512), rng.integers(0, image.height - 512)
    image.crop((x, y, x + 512, y + 512)).save(folder / f"img{i:05d}.jpg", quality=int(rng.integers(40, 95)))
print(f"{n} JPEGs in {folder}")
EOF
fi

# 1. the same scores on the device as on the CPU (fp32), and bf16 close to them
step parity $python - "$device" <<'EOF'
import sys
from pathlib import Path
import torch
from scipy import stats
from mpiqa import create_model
device = sys.argv[1]
files = sorted(str(p) for p in Path("examples").glob("*.jpg"))
for name, kwargs in (("mpiqa-small", {}), ("clip-iqa", {"backbone": "ViT-B-16", "weights": "random"})):
    cpu = create_model(name, device="cpu", **kwargs).for_inference().score(files)
    model = create_model(name, device=device, **kwargs).for_inference()
    dev = model.score(files)
    with torch.autocast(torch.device(device).type, dtype=torch.bfloat16):
        bf16 = model.score(files)
    print(f"{name}: {device} fp32 vs cpu max |diff| {(dev - cpu).abs().max():.2e}; "
          f"bf16 vs fp32 max |diff| {(bf16 - dev).abs().max():.3f}, "
          f"SRCC {stats.spearmanr(bf16, dev).statistic:.3f}")
    assert (dev - cpu).abs().max() < 1e-3, "fp32 scores differ between devices"
EOF

# 2. throughput against transformers and the roofline (README's Speed table)
step bench-$big-bf16 mpiqa benchmark --arch "$big" --precision bf16 --device "$device" \
    --batch-size "$batch" --iters "$iters" --warmup 2 --compile mpiqa --json "$out/bench_${big}_bf16.json"
step bench-$big-fp32 mpiqa benchmark --arch "$big" --precision fp32 --device "$device" \
    --batch-size "$batch" --iters "$iters" --warmup 2 --json "$out/bench_${big}_fp32.json"
if [ "$device" = cuda ]; then
    step bench-$big-fp16 mpiqa benchmark --arch "$big" --precision fp16 --device cuda \
        --batch-size "$batch" --iters "$iters" --warmup 2 --json "$out/bench_${big}_fp16.json"
fi
step bench-$large-bf16 mpiqa benchmark --arch "$large" --precision bf16 --device "$device" \
    --batch-size "$large_batch" --iters "$iters" --warmup 2 --json "$out/bench_${large}_bf16.json"

# 3. end to end on real files: start-up, decoding, the model, the whole pipeline
step e2e-$big-bf16 mpiqa benchmark --end-to-end "$images" --model clip-iqa --arch "$big" \
    --weights random --precision bf16 --device "$device" --batch-size "$batch" \
    --workers "$workers" --limit "$limit" --json "$out/e2e_${big}_bf16.json"
step e2e-default mpiqa benchmark --end-to-end "$images" --device "$device" --batch-size 64 \
    --workers "$workers" --limit "$limit" --json "$out/e2e_default.json"
step score-command bash -c "time $python -m mpiqa score '$images' --device $device --batch-size 64 \
    --workers $workers --no-progress --out '$scratch/scores.csv'"

# 4. a training step
step train-step mpiqa benchmark --train --arch "$([ "$device" = cuda ] && echo ViT-B-32 || echo test-tiny)" \
    --device "$device" --batch-size 32 --iters 3 --warmup 1 --no-meta --json "$out/train_step.json"

# 5. torchrun: NCCL on GPUs (gloo on the CPU), the CSV equal to one process's
step torchrun bash -c "$python -m torch.distributed.run --standalone --nproc_per_node=$procs \
    -m mpiqa score examples --device $device --no-progress --out '$scratch/torchrun.csv' &&
    $python -m mpiqa score examples --device $device --no-progress --out '$scratch/single.csv' &&
    $python - '$scratch/torchrun.csv' '$scratch/single.csv' <<'EOF'
import csv, sys
a, b = (list(csv.reader(open(p))) for p in sys.argv[1:])
assert [r[0] for r in a] == [r[0] for r in b], 'rows differ'
diff = max(abs(float(x[1]) - float(y[1])) for x, y in zip(a[1:], b[1:]))
print(f'torchrun CSV: {len(a) - 1} rows in file order, max |score diff| {diff:.2e}')
assert diff < 1e-4
EOF"

# 6. the test suite
if [ "$tests" -eq 1 ]; then
    step tests $python -m pytest -q -x -p no:cacheprovider
fi

echo "gpu-check: $failures step(s) failed; log and figures in $out" | tee -a "$log"
[ "$failures" -eq 0 ]
