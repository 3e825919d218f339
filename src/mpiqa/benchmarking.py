"""Scoring throughput against transformers and against the machine's roofline.

For one architecture with random weights at its input size:
- images/s of mpiqa's zero-shot scorer (image tower + prompt logits) on preprocessed input;
- images/s of ``transformers.CLIPVisionModelWithProjection`` holding the same weights
  (their ratio), when transformers is installed;
- the roofline: the measured matmul FLOP/s of this device and precision, divided by the
  model's FLOPs per image, and the fraction of it reached;
- peak resident memory of the process.

A benchmark measures speed; it is not part of the test suite.
"""

from __future__ import annotations

import contextlib
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

from mpiqa import runtime
from mpiqa.backbones.config import CLIPConfig, get_config
from mpiqa.backbones.factory import build_random_clip
from mpiqa.models.clip_iqa import CLIPIQA

# The roofline's matmul: large enough to reach the practical peak of the device. 2048^3
# saturates a CPU; a GPU needs far more work per call (on an H200, 2048^3 measured 23-39
# TFLOP/s against a bf16 peak near 790), so GPUs are probed with 8192^3.
MATMUL_SIZE = 2048
GPU_MATMUL_SIZE = 8192


def matmul_size(device: torch.device) -> int:
    """Side of the square matmul that probes ``device``'s peak."""
    return GPU_MATMUL_SIZE if device.type == "cuda" else MATMUL_SIZE


PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def vision_flops_per_image(
    config: CLIPConfig, image_size: int | None = None, readout_only: bool = False
) -> float:
    """Multiply-adds x 2 of the image tower for one image (matmuls and convolution;
    norms, softmax and activations are left out, as is usual for rooflines).

    ``readout_only``: the last block computes only the class token (keys and values of
    every token, the rest for one), as mpiqa's towers do (``Transformer(keep=1)``); the
    full count is what an implementation returning every token (transformers) does."""
    v = config.vision
    size = image_size or v.image_size
    if v.is_resnet:
        return _resnet_flops_per_image(config, size)
    patches = (size // v.patch_size) ** 2
    tokens = patches + 1
    width, hidden = v.width, int(v.width * v.mlp_ratio)
    if v.stem == "patch":
        patch_embed = patches * 3 * v.patch_size**2 * width
    else:
        from mpiqa.backbones.efficientnet import stem_macs

        patch_embed = stem_macs(v.stem_stages, size, v.stem) + patches * v.token_channels * width
    per_block = (
        tokens * width * 3 * width
        + 2 * tokens * tokens * width
        + tokens * width * width
        + 2 * tokens * width * hidden
    )
    projection = width * config.embed_dim
    blocks = v.layers * per_block
    if readout_only and v.layers:
        last = (
            tokens * width * 2 * width  # keys and values of every token
            + width * width  # the class token's query
            + 2 * tokens * width  # its attention
            + width * width
            + 2 * width * hidden
        )
        blocks += last - per_block
    return 2.0 * (patch_embed + blocks + projection)


def _resnet_flops_per_image(config: CLIPConfig, size: int) -> float:
    """A ResNet tower's multiply-adds x 2, counted on a forward pass of one image at
    meta size (no arithmetic runs): every convolution and projection, and the attention
    pool's two products."""
    from mpiqa.backbones.resnet import AttentionPool, ModifiedResNet

    with torch.device("meta"):
        tower = ModifiedResNet(config.vision, config.embed_dim)
    macs = 0

    def count(module, inputs, output) -> None:
        nonlocal macs
        if isinstance(module, torch.nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            macs += output.numel() * module.in_channels * k // module.groups
        elif isinstance(module, torch.nn.Linear):
            macs += output.numel() * module.in_features
        elif isinstance(module, AttentionPool):
            n, width, h, w = inputs[0].shape
            macs += 2 * (h * w + 1) * width  # one query against every position, twice

    hooks = [m.register_forward_hook(count) for m in tower.modules()]
    with torch.no_grad():
        tower(torch.empty(1, 3, size, size, device="meta"))
    for hook in hooks:
        hook.remove()
    return 2.0 * macs


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_time(fn: Callable[[], object], device: torch.device, warmup: int, iters: int) -> float:
    """Median seconds per call, after ``warmup`` untimed calls."""
    return _time_interleaved({"fn": fn}, device, warmup, iters)["fn"]


def _time_interleaved(
    fns: dict[str, Callable[[], object]], device: torch.device, warmup: int, iters: int
) -> dict[str, float]:
    """Median seconds per call of each function, timed in rounds that call every function
    once (in a rotating order), so that a machine whose speed drifts during the run (a
    shared host, thermal limits) affects each alike and their ratios stay fair."""
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    _sync(device)
    times: dict[str, list[float]] = {name: [] for name in names}
    for i in range(iters):
        for name in names[i % len(names) :] + names[: i % len(names)]:
            start = time.perf_counter()
            fns[name]()
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return {name: sorted(t)[len(t) // 2] for name, t in times.items()}


def _matmul(device: torch.device, dtype: torch.dtype, size: int) -> Callable[[], object]:
    """A large ``linear`` (size x size x size, 2 size³ FLOPs) under the same autocast as
    the model: its FLOP/s are the practical peak of this device and precision. (A bare
    bf16 ``@`` on a CPU without native bf16 takes a slower path than autocast linears.)"""
    x = torch.randn(size, size, device=device)
    w = torch.randn(size, size, device=device)

    @torch.inference_mode()
    def run():
        with _autocast(device, dtype):
            return torch.nn.functional.linear(x, w)

    return run


@dataclass
class BenchmarkResult:
    arch: str
    precision: str
    device: str
    batch_size: int
    threads: int
    images_per_s: float
    transformers_images_per_s: float | None
    ratio_vs_transformers: float | None
    gflops_per_image: float  # what mpiqa computes (its last block reads out one token)
    matmul_tflops: float
    roofline_images_per_s: float
    roofline_fraction: float
    peak_rss_mb: float | None  # None where unknown (Windows)
    machine: str
    # which implementations also ran through torch.compile with weights frozen:
    # "none", "mpiqa" or "both" (their eager forms are always measured)
    compiled: str = "none"
    compiled_images_per_s: float | None = None
    transformers_compiled_images_per_s: float | None = None
    # mpiqa.runtime.tune_malloc in effect (process-wide: both implementations share it)
    malloc_tuned: bool = False
    # what transformers computes (every token through every block); its share of the
    # roofline is taken against this count
    transformers_gflops_per_image: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    def table(self) -> str:
        rows = []
        peak = self.matmul_tflops * 1e12
        theirs = self.transformers_gflops_per_image or self.gflops_per_image
        for name, rate, gflops in (
            ("mpiqa", self.images_per_s, self.gflops_per_image),
            ("mpiqa, compiled", self.compiled_images_per_s, self.gflops_per_image),
            ("transformers", self.transformers_images_per_s, theirs),
            ("transformers, compiled", self.transformers_compiled_images_per_s, theirs),
        ):
            if rate is not None:
                share = rate * gflops * 1e9 / peak
                rows.append((name, f"{rate:.1f}", f"{gflops:.2f}", f"{share:.1%}"))
        rows.append(("roofline (mpiqa's FLOPs)", f"{self.roofline_images_per_s:.1f}", "", "100%"))
        lines = [
            f"{self.arch} {self.precision} on {self.device} ({self.machine}), batch {self.batch_size}, {self.threads} threads"
            + (
                f", torch.compile with frozen weights: {self.compiled}"
                if self.compiled != "none"
                else ""
            )
            + (", malloc tuned (both)" if self.malloc_tuned else ""),
            f"matmul {self.matmul_tflops:.3f} TFLOP/s"
            + (f"; peak RSS {self.peak_rss_mb:.0f} MB" if self.peak_rss_mb is not None else ""),
            "| implementation | images/s | GFLOP/image | of roofline |",
            "|---|---:|---:|---:|",
            *[f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows],
        ]
        if self.ratio_vs_transformers is not None:
            lines.append(f"mpiqa / transformers (both eager): {self.ratio_vs_transformers:.2f}x")
            hf = self.transformers_images_per_s
            if self.compiled_images_per_s is not None and hf:
                lines.append(
                    f"mpiqa compiled / transformers eager: {self.compiled_images_per_s / hf:.2f}x"
                )
            if self.compiled_images_per_s and self.transformers_compiled_images_per_s:
                ratio = self.compiled_images_per_s / self.transformers_compiled_images_per_s
                lines.append(f"mpiqa compiled / transformers compiled: {ratio:.2f}x")
        return "\n".join(lines)


def _autocast(device: torch.device, dtype: torch.dtype):
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def run_benchmark(
    arch: str = "ViT-B-16",
    precision: str = "fp32",
    device: str = "cpu",
    batch_size: int = 32,
    warmup: int = 2,
    iters: int = 5,
    compare: bool = True,
    compile: str = "none",
) -> BenchmarkResult:
    """Measure; see the module docstring. ``compare=False`` skips transformers;
    ``compile="mpiqa"`` (or ``"both"``) also times mpiqa's model (and transformers')
    through ``torch.compile`` with its weights frozen into the graph, the inference
    setting that lets the compiler pre-pack them (the warm-up calls, at least one, pay
    the compilation). The eager forms are always timed beside them."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
    if compile not in COMPILE_CHOICES:
        raise ValueError(f"compile must be one of {COMPILE_CHOICES}, got {compile!r}")
    dev = torch.device(device)
    dtype = PRECISIONS[precision]
    config = get_config(arch)
    model = CLIPIQA(build_random_clip(config, seed=0)).to(dev).eval()
    warmup = max(warmup, 1) if compile != "none" else warmup
    pixels = torch.randn(
        batch_size, 3, config.vision.image_size, config.vision.image_size, device=dev
    )

    def timed(fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[], object]:
        @torch.inference_mode()
        def run():
            with _autocast(dev, dtype):
                return fn(pixels)

        return run

    size = matmul_size(dev)
    fns = {"mpiqa": timed(model), "matmul": _matmul(dev, dtype, size)}
    if compile != "none":
        fns["mpiqa, compiled"] = timed(compile_frozen(model))
    if compare:
        hf = _transformers_vision(model.backbone, config)
        if hf is not None:
            hf = hf.to(dev).eval()
            fns["transformers"] = timed(lambda x: hf(pixel_values=x).image_embeds)
            if compile == "both":
                hf_compiled = compile_frozen(hf)
                fns["transformers, compiled"] = timed(
                    lambda x: hf_compiled(pixel_values=x).image_embeds
                )
    seconds = _time_interleaved(fns, dev, warmup, iters)
    hf_rate = batch_size / seconds["transformers"] if "transformers" in seconds else None

    def rate_of(name: str) -> float | None:
        return batch_size / seconds[name] if name in seconds else None

    flops = vision_flops_per_image(config, readout_only=True)
    peak = 2.0 * size**3 / seconds["matmul"]
    rate = batch_size / seconds["mpiqa"]
    roofline = peak / flops
    return BenchmarkResult(
        arch=config.name or arch, precision=precision, device=str(dev), batch_size=batch_size,
        threads=torch.get_num_threads(), images_per_s=rate, transformers_images_per_s=hf_rate,
        ratio_vs_transformers=rate / hf_rate if hf_rate else None, gflops_per_image=flops / 1e9,
        matmul_tflops=peak / 1e12, roofline_images_per_s=roofline, roofline_fraction=rate / roofline,
        peak_rss_mb=runtime.peak_rss_mb(), machine=f"{platform.machine()} {platform.processor() or ''}".strip(),
        compiled=compile, malloc_tuned=runtime.malloc_tuned(),
        compiled_images_per_s=rate_of("mpiqa, compiled"),
        transformers_compiled_images_per_s=rate_of("transformers, compiled"),
        transformers_gflops_per_image=vision_flops_per_image(config) / 1e9 if hf_rate else None,
    )  # fmt: skip


#: what ``run_benchmark(compile=...)`` accepts
COMPILE_CHOICES = ("none", "mpiqa", "both")


def compile_frozen(module: torch.nn.Module) -> torch.nn.Module:
    """``torch.compile`` for inference: the weights are frozen into the graph as
    constants, so that the compiler may fold them and pre-pack them for its matmul
    kernels (on a CPU, oneDNN/MKL packed layouts); only valid while they do not change."""
    return torch.compile(module, options={"freezing": True})


def _transformers_vision(backbone, config: CLIPConfig):
    """transformers' CLIP vision model with the same weights, or None if not installed
    or the tower is a hybrid or a ResNet (transformers has no such CLIP)."""
    if config.vision.stem != "patch" or config.vision.is_resnet:
        return None
    try:
        from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection
    except ImportError:
        return None
    from mpiqa.backbones.convert import to_hf_vision_state_dict

    v = config.vision
    hf_config = CLIPVisionConfig(
        hidden_size=v.width, intermediate_size=int(v.width * v.mlp_ratio), num_attention_heads=v.heads,
        num_hidden_layers=v.layers, image_size=v.image_size, patch_size=v.patch_size,
        projection_dim=config.embed_dim, hidden_act=config.act,
    )  # fmt: skip
    model = CLIPVisionModelWithProjection(hf_config)
    result = model.load_state_dict(to_hf_vision_state_dict(backbone.state_dict()), strict=False)
    missing = [k for k in result.missing_keys if not k.endswith("position_ids")]
    if missing or result.unexpected_keys:
        raise RuntimeError(
            f"transformers model does not hold our weights: missing {missing[:3]}, unexpected {result.unexpected_keys[:3]}"
        )
    return model
