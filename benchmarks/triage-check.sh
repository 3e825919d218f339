#!/usr/bin/env bash
# The photographer's check of `mpiqa score` + `mpiqa report`, end to end on real JPEGs:
#   1. a clean run over N photos;
#   2. the same run killed with SIGTERM after S seconds must leave a valid CSV;
#   3. `--resume` completes it to exactly N distinct rows equal to the clean run's;
#   4. `mpiqa report` writes a page, and a headless Chromium screenshot of it shows the
#      worst photo (skipped when no `chromium` is installed).
# Usage: benchmarks/triage-check.sh [PHOTO_DIR] [N=600] [S=12]   (default photos: the
# BIQ2021 training images in ../shared). Needs the project's .venv. Prints PASS or exits 1.
set -euo pipefail
cd "$(dirname "$0")/.."
source_dir=${1:-../shared/data/biq2021/Images}
n=${2:-600}
after=${3:-12}
mpiqa=${MPIQA:-.venv/bin/mpiqa}
python=${PYTHON:-.venv/bin/python}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

mkdir "$work/photos"
# the first N photos in name order, linked (nothing copied)
mapfile -d '' photos < <(find "$source_dir" -maxdepth 1 -type f -iname '*.jpg' -print0 | sort -z)
for f in "${photos[@]:0:$n}"; do ln -s "$(realpath "$f")" "$work/photos/"; done
echo "photos: $(find "$work/photos" -maxdepth 1 | tail -n +2 | wc -l)"

start=$(date +%s)
"$mpiqa" score "$work/photos" --out "$work/clean.csv" --no-progress
echo "clean run: $(( $(date +%s) - start )) s"

"$mpiqa" score "$work/photos" --out "$work/s.csv" --no-progress &
pid=$!
sleep "$after"
kill -TERM "$pid"
set +e
wait "$pid"
echo "SIGTERM after ${after} s: exit $?, $(( $(wc -l < "$work/s.csv") - 1 )) rows on disk"
set -e

"$mpiqa" score "$work/photos" --out "$work/s.csv" --resume --no-progress

"$python" - "$work/clean.csv" "$work/s.csv" "$n" <<'EOF'
import csv, sys
clean, resumed, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
read = lambda p: list(csv.reader(open(p, newline="", encoding="utf-8", errors="surrogateescape")))
a, b = read(clean), read(resumed)
assert a[0] == b[0], (a[0], b[0])
paths = [r[0] for r in b[1:]]
assert len(paths) == n == len(set(paths)), (len(paths), len(set(paths)))
assert dict(map(tuple, a[1:])) == dict(map(tuple, b[1:])), "scores differ from the clean run"
print(f"resumed: {len(paths)} distinct rows, scores equal to the clean run's")
EOF

"$mpiqa" report "$work/s.csv" --out "$work/r.html"
chromium=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$chromium" ]; then
    echo "no chromium: screenshot skipped"
else
    "$chromium" --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1280,900 \
        --screenshot="$work/shot.png" "file://$work/r.html" 2>/dev/null
    # the worst photo's embedded thumbnail must be drawn where the page puts it: compare
    # the screenshot's first thumbnail with the worst photo itself
    "$python" - "$work/s.csv" "$work/shot.png" <<'EOF'
import csv, sys
import numpy as np
from PIL import Image, ImageOps
rows = list(csv.reader(open(sys.argv[1], newline="", encoding="utf-8", errors="surrogateescape")))[1:]
worst = min(rows, key=lambda r: float(r[1]))
shot = Image.open(sys.argv[2]).convert("RGB")
# the first figure's box (200 x 150 CSS px, background #eee, the photo centred inside)
grey = np.all(np.asarray(shot) == 238, axis=-1)
y0 = int(np.nonzero(grey.sum(axis=1) >= 20)[0][0])  # text antialiasing has stray #eee
x0 = int(np.nonzero(grey[y0])[0][0])
expected = Image.new("RGB", (200, 150), (238, 238, 238))
photo = ImageOps.exif_transpose(Image.open(worst[0])).convert("RGB")  # as mpiqa reads it
photo.thumbnail((200, 150))
expected.paste(photo, ((200 - photo.width) // 2, (150 - photo.height) // 2))
# compared at 1/5 scale: the browser's and Pillow's resampling differ in fine detail
small = lambda im: np.asarray(im.resize((40, 30), Image.BOX)).astype(float)
diff = np.abs(small(shot.crop((x0, y0, x0 + 200, y0 + 150))) - small(expected)).mean()
print(f"worst photo {worst[0]} ({float(worst[1]):.3f}): first thumbnail at x={x0}, y={y0}, "
      f"mean abs difference {diff:.1f} / 255")
assert diff < 6, "the first thumbnail is not the worst photo"
EOF
    cp "$work/shot.png" "${SHOT_OUT:-/tmp/mpiqa-report-shot.png}"
fi
echo PASS
