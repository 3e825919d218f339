"""Paired comparison of two `recipes/synthetic_check.py --json` reports of the same
held-apart distortions: SRCC difference with a bootstrap over the clean images (2,000
resamples; an image's 31 versions stay together, they share content), and the paired
Wilcoxon test of the per-image SRCCs.
    python paired_synthetic.py NEW.json OLD.json [MODEL]"""

import json
import sys

import numpy as np
from scipy.stats import spearmanr, wilcoxon

new, old = (json.load(open(p)) for p in sys.argv[1:3])
model = sys.argv[3] if len(sys.argv) > 3 else "mpiqa-small"
assert new["sources"] == old["sources"] and new["targets"] == old["targets"]
sources = np.array(new["sources"])
target = np.array(new["targets"])
a, b = (np.array(r["models"][model]["scores"]) for r in (new, old))
groups = [np.nonzero(sources == s)[0] for s in dict.fromkeys(new["sources"])]
rng = np.random.default_rng(0)
d = []
for _ in range(2000):
    i = np.concatenate([groups[g] for g in rng.integers(0, len(groups), len(groups))])
    d.append(spearmanr(a[i], target[i])[0] - spearmanr(b[i], target[i])[0])
diff = spearmanr(a, target)[0] - spearmanr(b, target)[0]
lo, hi = np.percentile(d, [2.5, 97.5])
per = np.array(new["models"][model]["per_image_srcc"]) - np.array(
    old["models"][model]["per_image_srcc"]
)
print(f"SRCC {diff:+.4f} ({lo:+.4f}, {hi:+.4f}) over {len(groups)} clean images")
print(
    f"per image: median {np.median(per):+.4f}, {int((per > 0).sum())} of {len(per)} higher, "
    f"Wilcoxon p = {wilcoxon(per).pvalue:.3g}"
)
