"""``mnist-pipeline``: inspect and compare what the pipeline wrote (the console script of this package).

Subcommands (one module each; the logic lives in :mod:`pipeline.inspect`)::

    status [--task T] [luigi flags]   the task tree, each task COMPLETE, PENDING or STALE and why
    ls                                every output under the data and report directories, rehashed
    show PATH|TASK [luigi flags] [--file F] [--key K] [--export FILE.npz|.csv]
    diff RUN_A RUN_B                  parameters, metrics, McNemar's test, per-class changes
    gc [--keep N] [--reports] [--yes] remove what the newest N runs do not use

Exit codes: 0 ok, 1 usage error or not found, 2 integrity failure (a file does not
match its manifest, or is not the pipeline's and was refused).
"""
from __future__ import annotations

import argparse
import sys

from tasks.cli.errors import INTEGRITY, OK, USAGE, UsageError

PROG = "mnist-pipeline"
EPILOG = ("Exit codes: 0 ok, 1 usage error or not found, 2 integrity failure. "
          "Directories default to [storage] in luigi.cfg of the current directory.")


class Parser(argparse.ArgumentParser):
    """argparse, exiting with :data:`USAGE` (1) on a usage error rather than argparse's 2 (our integrity code)."""

    def error(self, message: str):
        self.print_usage(sys.stderr)
        self.exit(USAGE, f"{self.prog}: error: {message}\n")


def _storage_options(parser: argparse.ArgumentParser, default) -> None:
    parser.add_argument("--data-dir", default=default, help="the data directory (default: [storage] data_dir)")
    parser.add_argument("--report-dir", default=default, help="the report directory (default: [storage] report_dir)")


def _format_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=("text", "json"), default="text", help="output format")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; flags it does not know are handed to Luigi's parser (status, show)."""
    parser = Parser(prog=PROG, description="Inspect and compare what the MNIST pipeline wrote.",
                                     epilog=EPILOG, allow_abbrev=False)
    _storage_options(parser, None)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, help: str, description: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=description, epilog=EPILOG, allow_abbrev=False)
        _storage_options(p, argparse.SUPPRESS)  # given after the command too; the top-level value stays otherwise
        return p

    p = command("status", "the task tree, each task COMPLETE, PENDING or STALE and why",
                "The task tree of a run with these parameters (the flags of `luigi --module tasks RunPipeline`, "
                "e.g. --epochs 2 --train-limit 3000 --preset simple), each task COMPLETE, PENDING (no output) "
                "or STALE (with the reasons: missing output, newer input, changed code, changed parameters).")
    p.add_argument("--task", default="RunPipeline", help="the root task (default RunPipeline)")
    _format_option(p)

    p = command("ls", "every output with its task, parameters, size and integrity",
                "Every output under the data and report directories: stage, task, parameters that differ from "
                "the defaults, created, size, and integrity (every file rehashed against its manifest).")
    _format_option(p)

    p = command("show", "a safe, readable summary of a pickle or JSON file the pipeline wrote",
                "Summarise a file the pipeline wrote (keys, array shapes and statistics, DataFrame heads, the "
                "model summary, JSON). PATH is a file or output directory (also relative to the data or report "
                "directory); TASK is a task name followed by its luigi flags, e.g. `show TrainCNN --epochs 2`. "
                "The file is verified against its manifest before it is read: a changed or foreign pickle is "
                "refused, never unpickled.")
    p.add_argument("target", metavar="PATH|TASK")
    p.add_argument("--file", help="with TASK: another file of its output directory (default: its primary file)")
    p.add_argument("--key", help="show only this part: a dict key, a dotted path (normalization.mean) or a column")
    p.add_argument("--export", metavar="FILE", help="write the object (or --key part) to FILE.npz or FILE.csv")

    p = command("diff", "compare two runs: parameters, metrics, McNemar's test, per-class changes",
                "Compare run B with run A: parameters that differ, metrics with deltas (B - A), McNemar's test "
                "on the two runs' test predictions and per-class changes. A run is a run id (or its unique "
                "beginning), latest, previous or latest~N.")
    p.add_argument("run_a", metavar="RUN_A")
    p.add_argument("run_b", metavar="RUN_B")
    p.add_argument("--alpha", type=float, default=0.05, help="significance level (default 0.05)")
    _format_option(p)

    p = command("gc", "remove outputs the newest N runs do not use (prints the plan unless --yes)",
                "Plan the removal of every output the newest N runs do not use (each run uses the output of "
                "every task in its tree), with the bytes it frees; remove only with --yes. Reports are kept "
                "unless --reports; the download (raw/) and the bundled copy (mirror/) are never removed. "
                "Do not run it with --yes while a pipeline is running.")
    p.add_argument("--keep", type=int, default=1, help="how many of the newest runs to keep (default 1)")
    p.add_argument("--reports", action="store_true", help="remove the reports of runs that are not kept too")
    p.add_argument("--yes", action="store_true", help="remove (without it, only print the plan)")
    _format_option(p)
    return parser


def _command(name: str):
    from tasks.cli import diff, gc, ls, show, status

    return {"status": status, "ls": ls, "show": show, "diff": diff, "gc": gc}[name]


def main(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command not in ("status", "show"):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    from pipeline.inspect.errors import NotFound
    from pipeline.inspect.export import ExportError
    from pipeline.store import IntegrityError
    from tasks.cli.tasktree import configure_storage

    configure_storage(args.data_dir, args.report_dir)
    try:
        return _command(args.command).run(args, extra)
    except IntegrityError as exc:
        print(f"{PROG}: refused: {exc}", file=sys.stderr)
        return INTEGRITY
    except (UsageError, NotFound, ExportError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        from tasks.luigi_config import missing_project_config

        why = missing_project_config()
        if why:  # the likely cause of a missing setting: run from outside the project
            print(f"{PROG}: note: {why}", file=sys.stderr)
        return USAGE
    except BrokenPipeError:  # `mnist-pipeline ls | head`
        return OK

