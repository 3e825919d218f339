"""The ``mpiqa`` command: a sub-command per job, each in its own module."""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import sys
from collections.abc import Sequence

from mpiqa import __version__, distributed, errors, runtime
from mpiqa.cli import ablate as ablate_cmd
from mpiqa.cli import benchmark as benchmark_cmd
from mpiqa.cli import distort as distort_cmd
from mpiqa.cli import evaluate as evaluate_cmd
from mpiqa.cli import export as export_cmd
from mpiqa.cli import finetune as finetune_cmd
from mpiqa.cli import list_datasets as list_datasets_cmd
from mpiqa.cli import list_models as list_models_cmd
from mpiqa.cli import meta_pretrain as meta_pretrain_cmd
from mpiqa.cli import pretrain_backbone as pretrain_backbone_cmd
from mpiqa.cli import report as report_cmd
from mpiqa.cli import score as score_cmd
from mpiqa.cli import train as train_cmd

# Exit statuses, as documented in the README.
EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a tool killed by it
# The commands that share their work between torchrun's processes; the others would each
# do all of it, N times, and write the same files at once.
TORCHRUN_COMMANDS = ("score", "train", "meta-pretrain", "ablate")
_COMMANDS = (
    score_cmd,
    report_cmd,
    train_cmd,
    finetune_cmd,
    evaluate_cmd,
    meta_pretrain_cmd,
    pretrain_backbone_cmd,
    ablate_cmd,
    distort_cmd,
    list_models_cmd,
    list_datasets_cmd,
    benchmark_cmd,
    export_cmd,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mpiqa",
        description="Blind image quality assessment with prompt-learned CLIP models.",
    )
    parser.add_argument("--version", action="version", version=f"mpiqa {__version__}")
    _add_log_options(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in _COMMANDS:
        command.add_parser(sub)
    # also after the command (`mpiqa score photos/ -q`), counted with those before it
    for command_parser in sub.choices.values():
        _add_log_options(command_parser, suffix="_after")
    return parser


def _add_log_options(parser: argparse.ArgumentParser, suffix: str = "") -> None:
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, dest=f"verbose{suffix}",
        help="more log output (-vv for debug)",
    )  # fmt: skip
    parser.add_argument(
        "-q", "--quiet", action="store_true", dest=f"quiet{suffix}", help="only errors on stderr"
    )


def _configure_logging(verbose: int, quiet: bool) -> None:
    level = (
        logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    )
    if distributed.env_rank() != 0:
        # under torchrun the other processes' progress lines repeat the first one's
        # (every process loads the model, ...): warnings and errors only
        level = max(level, logging.WARNING)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("mpiqa: %(levelname)s: %(message)s"))
    root = logging.getLogger("mpiqa")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    # Under torchrun every process parses the same command line: the first one alone
    # prints --help, or argparse's refusal of an argument (all exit with its status).
    silenced = contextlib.ExitStack()
    if distributed.env_rank() != 0:
        silenced.enter_context(contextlib.redirect_stdout(io.StringIO()))
        silenced.enter_context(contextlib.redirect_stderr(io.StringIO()))
    try:
        with silenced:
            args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version, or argparse refusing an argument
        return int(exit_.code or 0) if not isinstance(exit_.code, str) else EXIT_USAGE
    _configure_logging(args.verbose + args.verbose_after, args.quiet or args.quiet_after)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and args.command not in TORCHRUN_COMMANDS:
        if distributed.env_rank() == 0:
            print(
                f"mpiqa: error: mpiqa {args.command} runs in one process: start it without "
                f"torchrun, or unset WORLD_SIZE (it says {world} processes); torchrun "
                f"shares the work of {', '.join(TORCHRUN_COMMANDS)}",
                file=sys.stderr,
            )
        return EXIT_USAGE
    # Every command runs forward passes on large tensors; see mpiqa.runtime for why.
    runtime.tune_malloc()
    try:
        code = int(args.run(args) or EXIT_OK)
        sys.stdout.flush()  # a closed pipe shows here, not in Python's exit
        return code
    except distributed.ReportedByFirstProcess:
        return EXIT_USAGE  # under torchrun: the first process printed the error
    except KeyboardInterrupt:
        print("mpiqa: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader closed the pipe (`mpiqa score ... | head`): stop quietly, as Unix
        # tools do, and keep Python from complaining when it flushes stdout at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except Exception as err:
        # Expected failures of the user's setup: one line, no traceback; a bug keeps it.
        message = errors.user_message(err)
        if message is None:
            raise
        print(f"mpiqa: error: {message}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
