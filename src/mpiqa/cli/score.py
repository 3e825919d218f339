"""``mpiqa score``: score image files and folders into a CSV."""

from __future__ import annotations

import argparse
import contextlib
import csv
import logging
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch
from tqdm import tqdm

from mpiqa import distributed, errors
from mpiqa.cli import arguments
from mpiqa.data.files import discover_images, read_path_list
from mpiqa.data.images import DEFAULT_MAX_PIXELS, ImageDecodeError, codec_hint
from mpiqa.data.transforms import CROP_MODES
from mpiqa.models.checkpoint import load_checkpoint
from mpiqa.models.registry import (
    ALIASES,
    DEFAULT_MODEL,
    ZERO_SHOT_MODEL,
    create_model,
    list_models,
    model_for,
    resolve_device,
)
from mpiqa.scoring import PRECISIONS, precision_context, score_files

logger = logging.getLogger("mpiqa.cli.score")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "score",
        help="score images; writes a CSV (path,score)",
        description=(
            "Score image files and folders. Rows come in natural sort order. A file that "
            "cannot be scored gets one line on stderr; exit status 1 says some failed, "
            "2 a usage or setup error."
        ),
    )
    p.add_argument("paths", nargs="*", metavar="PATH", help="image files or folders")
    p.add_argument(
        "--files-from", metavar="FILE",
        help="also the paths listed in FILE, one per line ('-': standard input), e.g. "
        "from find; folders in it are expanded as PATHs are",
    )  # fmt: skip
    p.add_argument("-r", "--recursive", action="store_true", help="descend into sub-folders")
    p.add_argument(
        "--model",
        default=None,
        choices=list_models() + sorted(ALIASES),
        help=f"quality model (default {DEFAULT_MODEL}, which ships with mpiqa; "
        f"{ZERO_SHOT_MODEL} when --backbone or --weights names a CLIP)",
    )
    p.add_argument(
        "--backbone",
        default=None,
        metavar="ARCH",
        help="backbone architecture, e.g. ViT-B/32, ViT-B/16, test-tiny",
    )
    p.add_argument(
        "--weights",
        default=None,
        metavar="FILE|random",
        help="backbone checkpoint (OpenAI .pt, open_clip, transformers dir); 'random' for seeded "
        "random weights (smoke tests, benchmarks); default: the backbone's registered weights, "
        "looked for in $MPIQA_CACHE_DIR",
    )
    p.add_argument(
        "--checkpoint",
        default=None,
        metavar="FILE",
        help="a trained prompt model (best.safetensors from mpiqa train); adds the predicted "
        "distortion type and scene as columns when it was trained with their labels (see "
        "--describe). --weights then overrides its backbone weights",
    )
    p.add_argument(
        "--describe",
        action="store_true",
        help="also print the distortion/scene class of prompt models trained without labels "
        "for them (by default only families trained with labels get columns: the others are "
        "rough guesses; see the model card for their measured accuracy)",
    )
    p.add_argument(
        "--seed",
        type=arguments.seed,
        default=0,
        help="seed of --weights random (default %(default)s)",
    )
    p.add_argument("--batch-size", type=arguments.batch_size, default=32, metavar="N")
    p.add_argument(
        "--workers",
        type=arguments.non_negative,
        default=None,
        metavar="N",
        help="decoding processes (default: none on 1-2 cores, where decoding in-process is "
        "faster; else cores - 1, at most 8)",
    )
    p.add_argument(
        "--device", default="cpu", type=arguments.device,
        help="cpu, cuda, cuda:1, ..., or auto: CUDA when available (default %(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--precision",
        choices=tuple(PRECISIONS),
        default="fp32",
        help="forward pass in float32 (default), or bfloat16 / float16 autocast (fp16 on CUDA "
        "only); bf16 moved the default model's scores of the example photos by up to 0.011 "
        "and swapped two that fp32 puts 0.005 apart",
    )
    p.add_argument(
        "--crop",
        choices=CROP_MODES,
        default=None,
        help="center: CLIP's resize + centre crop; multi: mean over native-resolution "
        "crops; full: the whole image (default: the model's own: full for clip-iqa on a "
        "ResNet backbone, as published, else center)",
    )
    p.add_argument(
        "--n-crops",
        type=arguments.integer(1),
        default=5,
        metavar="K",
        help="crops per image with --crop multi",
    )
    p.add_argument(
        "--full-decode", action="store_true",
        help="decode every JPEG at full size (default: at 1/2, 1/4 or 1/8 when the model "
        "resizes below that anyway, several times faster on large photos; scores move by "
        "the decoder's own downscaling, see the README)",
    )  # fmt: skip
    p.add_argument(
        "--max-pixels",
        type=arguments.integer(1),
        default=DEFAULT_MAX_PIXELS,
        metavar="N",
        help="refuse larger images (default %(default)s)",
    )
    p.add_argument(
        "--out", default=None, metavar="FILE.csv",
        help="write the CSV here (default: stdout; missing folders are made); rows are "
        "flushed as they are scored, and an interrupted run (Ctrl-C, SIGTERM) keeps them",
    )  # fmt: skip
    p.add_argument(
        "--sort", choices=("score",), default=None,
        help="score: rows by ascending score, worst first (written when the run ends)",
    )  # fmt: skip
    p.add_argument(
        "--resume", action="store_true",
        help="score only the files --out lacks and append them (same model and options)",
    )  # fmt: skip
    p.add_argument(
        "--on-error",
        choices=("skip", "fail"),
        default="skip",
        help="skip: report bad files and score the rest; fail: stop at the first",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def _build_model(args: argparse.Namespace, device: str):
    model = _load_model(args, device).for_inference()
    if args.describe and hasattr(model, "labelled_families"):
        model.labelled_families = None
    return model


def _load_model(args: argparse.Namespace, device: str):
    if args.checkpoint:
        return load_checkpoint(
            args.checkpoint, weights=args.weights, device=device, n_crops=args.n_crops,
            crop=args.crop or "center",
        )  # fmt: skip
    name = model_for(args.model, args.backbone, args.weights)
    crop = {"crop": args.crop} if args.crop else {}  # else the model's default
    return create_model(
        name, weights=args.weights, backbone=args.backbone, device=device,
        seed=args.seed, n_crops=args.n_crops, **crop,
    )  # fmt: skip


def _score_into(
    write, model, paths: list[str], args, columns, show_progress: bool, index_of=None
) -> tuple[int, bool]:
    """Score ``paths`` and ``write`` one row each (prefixed by its global index when
    ``index_of`` is given). Returns (number failed, stopped by --on-error fail)."""
    failed = 0
    results = score_files(
        model,
        paths,
        batch_size=args.batch_size,
        workers=args.workers,
        on_error=args.on_error,
        max_pixels=args.max_pixels,
        precision=args.precision,
        reduced_decode=not args.full_decode,
    )
    progress = tqdm(
        total=len(paths),
        unit="img",
        file=sys.stderr,
        disable=True if args.no_progress or not show_progress else None,
    )
    try:
        for position, result in enumerate(results):
            progress.update()
            if result.error is not None:
                failed += 1
                progress.clear()
                print(f"mpiqa: error: {result.path}: {result.error}", file=sys.stderr)
                continue
            extra = result.extra or {}
            row = [result.path, f"{result.score:.6f}", *(extra.get(c, "") for c in columns)]
            write(row if index_of is None else [index_of[position], *row])
    except ImageDecodeError as err:
        print(f"mpiqa: error: {err} (stopping: --on-error fail)", file=sys.stderr)
        return failed + 1, True
    finally:
        progress.close()
    return failed, False


def sort_rows(rows: list[list[str]]) -> list[list[str]]:
    """Rows by ascending score (column 2), worst first; ties keep file order."""
    return sorted(rows, key=lambda row: float(row[1]))


def _merged_parts(part_dir: Path, world_size: int) -> list[list[str]]:
    """Rows of every rank's part, back in the order of the file list."""
    rows = []
    for rank in range(world_size):
        with open(part_dir / f"part{rank}.csv", newline="", encoding="utf-8") as f:
            rows += [(int(r[0]), r[1:]) for r in csv.reader(f)]
    rows.sort(key=lambda item: item[0])
    return [row for _, row in rows]


def _open_shared_output(args, model, header: list[str], context: distributed.Context):
    """Under torchrun, the first process opens ``--out`` before any image is scored,
    so that a path it cannot write (a missing disk, a folder, another run's file) stops
    every process at the start instead of losing their work at the end. Returns the
    open :class:`CSVOutput` on the first process (None elsewhere, or without --out).

    Raises:
        OutputError: on the first process, when ``--out`` cannot be written (the others
            raise :class:`~mpiqa.distributed.ReportedByFirstProcess`).
    """
    from mpiqa.cli.score_output import CSVOutput

    with errors.reported_once(context):
        if not (context.is_main and args.out):
            return None
        output = CSVOutput(args.out, header, _settings(args, model), args.resume)
        return output.__enter__()


def _score_shared(
    args, model, files: list[str], header: list[str], columns, context: distributed.Context
) -> tuple[int, bool, int]:
    """torchrun: each process scores every world_size-th file (with ``--resume``, of the
    files ``--out`` lacks, as the first process read it). With ``--out``, every process
    appends each row to the one file as it is scored (a killed run keeps them, and
    ``--resume`` completes the file); at the end the first process puts them in file
    order. To stdout, the first process merges the processes' parts. Either way the CSV
    is the one a single process writes. Returns (failed, stopped, files already in a
    resumed ``--out``) over all processes."""
    from mpiqa.cli.score_output import RowAppender, file_key, sort_file

    output = _open_shared_output(args, model, header, context)
    if args.resume:  # the first process read the file; the others append to it after
        done = set(distributed.broadcast_object(sorted(output.done) if output else None, context))
        todo = [f for f in files if file_key(f) not in done]
        skipped = len(files) - len(todo)
    else:
        todo, skipped = files, 0
    mine = distributed.shard(todo, context)
    paths, index_of = [p for _, p in mine], [i for i, _ in mine]
    # torchrun passes its SIGTERM on to every process: the first keeps the rows, as one
    # process does (the others' rows are in the same file)
    with _keeping_rows(output):
        if args.out:
            target = distributed.broadcast_object(str(output.writing) if output else None, context)
            with errors.reported_once(context):
                appender = RowAppender(target)
            try:
                failed, stopped = _score_into(
                    appender.write, model, paths, args, columns, show_progress=context.is_main
                )
            finally:
                appender.close()
        else:
            part_dir = distributed.broadcast_object(
                tempfile.mkdtemp(prefix="mpiqa-score-") if context.is_main else None, context
            )
            part = Path(part_dir) / f"part{context.rank}.csv"
            with open(part, "w", newline="", encoding="utf-8") as f:
                failed, stopped = _score_into(
                    csv.writer(f, lineterminator="\n").writerow, model, paths, args, columns,
                    show_progress=context.is_main, index_of=index_of,
                )  # fmt: skip
        failed = distributed.sum_over_ranks(failed, context)
        stopped = bool(distributed.sum_over_ranks(int(stopped), context))
        distributed.barrier(context)
        if context.is_main and output is not None:
            # a resumed file's earlier rows stay first, as one process leaves them
            position = {path: i for i, path in enumerate(todo)}

            def in_file_order(rows: list[list[str]]) -> list[list[str]]:
                rows = sorted(rows, key=lambda row: position.get(row[0], -1))
                return sort_rows(rows) if args.sort else rows

            sort_file(output.writing, in_file_order)
            output.finish()
        elif context.is_main:
            rows = _merged_parts(Path(part_dir), context.world_size)
            writer = csv.writer(sys.stdout, lineterminator="\n")
            writer.writerow(header)
            writer.writerows(sort_rows(rows) if args.sort else rows)
            shutil.rmtree(part_dir, ignore_errors=True)
        distributed.barrier(context)
    return failed, stopped, skipped


def _first_few(names: list[str], n: int = 3) -> str:
    return ", ".join(names[:n]) + (" ..." if len(names) > n else "")


def _prepare(args: argparse.Namespace, context: distributed.Context, device: str):
    """The checks, the files and the model of a run: (found files, model), or None when
    a folder could not be listed and ``--on-error fail`` stops the run."""
    if args.resume and not args.out:
        raise ValueError("--resume needs --out FILE.csv (the file to complete)")
    # fp16 on a CPU: refused here, before any output is made (it was found at the first
    # batch, after the CSV's header was written)
    precision_context(args.precision, torch.device(device))
    if args.files_from == "-" and context.active:
        raise ValueError("--files-from - reads standard input, which torchrun does not share")
    if context.active and (machines := distributed.spans_machines()):
        # appends to one file from several machines are not atomic on NFS (rows could be
        # lost), and rank 0's temporary folder for stdout is its machine's own
        raise ValueError(
            f"mpiqa score under torchrun runs on one machine (--nnodes=1); this run has "
            f"{machines}: its processes share --out (or a temporary folder), which "
            "processes on other machines cannot append to safely. Score each machine's "
            "share of the files in a run of its own (--files-from)"
        )
    paths = list(args.paths) + (read_path_list(args.files_from) if args.files_from else [])
    if not paths:
        where = f"--files-from {args.files_from} lists no path" if args.files_from else ""
        raise ValueError(where or "give image files or folders (PATH), or --files-from FILE")
    found = discover_images(paths, recursive=args.recursive)
    left_out = ""
    if found.ignored:
        left_out = (
            f"left out {len(found.ignored)} file(s) whose extension is not an image format read here: "
            f"{_first_few(found.ignored)} "
            "(name a file to score it whatever its extension)"
        )
        if hint := codec_hint(found.ignored):
            left_out += f"; {hint}"
    # a folder that cannot be listed is reported like a bad file: the rest is scored
    stop = " (stopping: --on-error fail)" if args.on_error == "fail" else ""
    for folder in found.unreadable[: 1 if stop else None]:
        if context.is_main:
            print(f"mpiqa: error: cannot list folder {folder}{stop}", file=sys.stderr)
    if found.unreadable and stop:
        return None
    hidden = ""
    if found.hidden:
        hidden = (
            f"left out {len(found.hidden)} hidden image file(s) (a name starting with '.', or "
            "in such a folder: macOS's ._ copies of file metadata, thumbnail caches): "
            f"{_first_few(found.hidden)} (name one, or its folder, to score it)"
        )
    if not found.files:
        notes = "".join(f"; {note}" for note in (left_out, hidden) if note)
        raise FileNotFoundError(f"no image files in {_first_few(paths)}{notes}")
    if left_out and context.is_main:
        logger.warning("%s", left_out)  # files the user may expect scored (RAW, HEIC ...)
    if hidden and context.is_main:
        logger.warning("%s", hidden)
    if found.links and context.is_main:
        logger.warning(
            "did not follow %d symbolic link(s) to folders: %s (name one to score it)",
            len(found.links), _first_few(found.links),
        )  # fmt: skip
    if args.weights == "random" and not args.checkpoint and context.is_main:
        logger.warning(
            "--weights random: randomly initialised backbone (seed %d); its scores mean nothing",
            args.seed,
        )
    return found, _build_model(args, device)


def run(args: argparse.Namespace) -> int:
    args.device = str(resolve_device(args.device))
    context = distributed.init_from_env(args.device)
    device = (
        f"cuda:{context.local_rank}" if context.active and args.device == "cuda" else args.device
    )
    skipped = 0
    try:
        with errors.reported_once(context):  # under torchrun: one line, not one per process
            prepared = _prepare(args, context, device)
        if prepared is None:
            return 1
        found, model = prepared
        columns = list(model.extra_columns)
        header = ["path", "score", *columns]
        if not context.active and args.out:
            failed, stopped, skipped = _score_to_file(args, model, found.files, header, columns)
        elif not context.active:
            writer = csv.writer(sys.stdout, lineterminator="\n")
            writer.writerow(header)
            held: list[list[str]] = []
            failed, stopped = _score_into(
                held.append if args.sort else writer.writerow, model, found.files, args,
                columns, show_progress=True,
            )  # fmt: skip
            writer.writerows(sort_rows(held))
        else:
            failed, stopped, skipped = _score_shared(
                args, model, found.files, header, columns, context
            )
    finally:
        distributed.shutdown(context)
    if stopped:
        return 1
    scored = len(found.files) - failed - skipped
    if failed or found.unreadable:
        if context.is_main:
            print(
                f"mpiqa: {failed} of {len(found.files)} file(s) could not be scored; {scored} scored"
                + (
                    f"; {len(found.unreadable)} folder(s) could not be listed"
                    if found.unreadable
                    else ""
                ),
                file=sys.stderr,
            )
        return 1
    if not context.is_main:  # one line for the run, from the first process
        return 0
    logger.info(
        "scored %d file(s)%s%s", scored, f" into {args.out}" if args.out else "",
        f" ({skipped} already there)" if skipped else "",
    )  # fmt: skip
    return 0


def _settings(args: argparse.Namespace, model) -> dict:
    """What decides the scores: a resumed file must have been scored the same way."""
    checkpoint = None
    if args.checkpoint:
        from mpiqa.backbones.pretrained import sha256_of

        checkpoint = sha256_of(args.checkpoint)
    return {
        "model": args.model, "checkpoint_sha256": checkpoint, "backbone": args.backbone,
        "weights": args.weights, "seed": args.seed, "crop": model.crop, "n_crops": args.n_crops,
        # only when not the default, so files written before the option still resume
        **({"precision": args.precision} if args.precision != "fp32" else {}),
        **({"decode": "full"} if args.full_decode else {}),
    }  # fmt: skip


@contextlib.contextmanager
def _keeping_rows(output) -> Iterator[None]:
    """The scoring of a run into ``output`` (a :class:`CSVOutput`, or None: nothing to
    keep). SIGTERM ends it as Ctrl-C does, and an interrupted run keeps every finished
    row (``--resume`` completes the file); any other failure leaves an earlier ``--out``
    as it was and the run's rows in its hidden file, for ``--resume`` to take up."""
    if output is None:
        yield
        return
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    except KeyboardInterrupt:
        output.finish()
        raise
    except BaseException:
        output.abort()
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)


class _Terminated(KeyboardInterrupt):
    """SIGTERM, handled as Ctrl-C: finished rows are kept."""


def _on_sigterm(signum, frame):  # pragma: no cover - exercised in a subprocess test
    raise _Terminated()


def _score_to_file(args, model, files: list[str], header, columns) -> tuple[int, bool, int]:
    """Score into ``--out`` through :class:`CSVOutput` (see its module). Returns
    (failed, stopped, files already in a resumed ``--out``)."""
    from mpiqa.cli.score_output import CSVOutput, file_key

    output = CSVOutput(args.out, header, _settings(args, model), args.resume)
    with output:
        missing = [i for i, f in enumerate(files) if file_key(f) not in output.done]
        skipped = len(files) - len(missing)
        # Whole batches of the original run are scored again and only missing rows
        # written: the same batches give bit-identical scores to an uninterrupted run.
        size = args.batch_size
        batches = sorted({i // size for i in missing})
        todo = [files[j] for b in batches for j in range(b * size, min((b + 1) * size, len(files)))]

        def write(row: list[str]) -> None:
            if file_key(row[0]) not in output.done:
                output.write(row)

        with _keeping_rows(output):
            failed, stopped = _score_into(write, model, todo, args, columns, show_progress=True)
        output.finish()
    if args.sort and not stopped:
        from mpiqa.cli.score_output import sort_file

        sort_file(args.out, sort_rows)
    return failed, stopped, skipped
