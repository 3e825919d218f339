"""The probe's share in the mix, swept again with the sixth version's probe (½ fitted
across sources + ½ within each source). Reads the parts saved by within_probe.py
(towers and both probes' scores on the validation parts and the left-out sources); pairs
each share with the shipped ½ by bootstrap (300 resamples of images).

    python recipes/experiments/biq_sources/share_within.py
"""

import numpy as np
from bootstrap import paired_difference
from bootstrap import srcc as r
from within_parts import load_parts

SHARES = (0.0, 0.25, 0.4, 0.5, 0.6, 0.75, 1.0)


def main():
    parts = load_parts()
    rng = np.random.default_rng(0)
    for share in SHARES:
        line = f"share {share:.2f}:"
        for name, (towers, probes, y) in parts.items():
            probe = 0.5 * probes["shipped"] + 0.5 * probes["within"]
            base = 0.5 * towers + 0.5 * probe
            mix = (1 - share) * towers + share * probe
            if share == 0.5:
                line += f" | {name} {r(mix, y):.4f}"
                continue
            line += f" | {name} {paired_difference(mix, base, y, rng, 300)}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
