"""The ``petite`` command line: a thin shell over the same engine the napari docks drive.

Each sub-command lives in ``napari_petite/commands/<name>.py`` and exposes
``register(subparsers)``; the parser sets ``func`` to the function that runs it. A
``PetiteError`` is printed as one sentence and the process exits with code 2; warnings
(skipped subjects, leftovers of an interrupted run cleaned up) are one line each on stderr.

SIGTERM and SIGINT unwind the command like an exception, so every temporary file and
reservation is removed on the way out (a training run instead finishes its step and saves:
``commands/_options.stop_on_sigterm`` replaces the handler while it trains).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
import warnings

from napari_petite import __version__
from napari_petite.errors import PetiteError, PetiteWarning

#: sub-command modules, in the order ``petite --help`` lists them
COMMANDS = [
    "info",
    "make_sample_data",
    "make_pairs",
    "methods",
    "pretrain",
    "import_base",
    "finetune",
    "predict",
    "evaluate",
    "sweep",
    "pacs",
    "demo",
    "gui",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="petite",
        description="Adapt a pre-trained 3D PET denoising network to a new scanner (Mix-PEFT).",
    )
    parser.add_argument("--version", action="version", version=f"napari-petite {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(f"napari_petite.commands.{name}").register(sub)
    return parser


class Terminated(BaseException):
    """SIGTERM as an exception (a BaseException, so no ``except Exception`` swallows it)."""


def _terminate(signum, frame) -> None:
    raise Terminated


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    if issubclass(category, PetiteWarning):
        print(f"petite: warning: {message}", file=sys.stderr)
    else:
        _default_show(message, category, filename, lineno, file, line)


_default_show = warnings.showwarning


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    previous = signal.getsignal(signal.SIGTERM)
    warnings.showwarning = _show_warning
    # nibabel logs the header fields it repairs ("setting 0 dims to 1"); the checks in
    # io/grid.py refuse those headers with a sentence of their own
    logging.getLogger("nibabel").setLevel(logging.ERROR)
    try:
        signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # not the main thread (embedded use): leave signals alone
        previous = None
    try:
        from napari_petite.io.memory import check_limit_setting

        check_limit_setting()
        result = args.func(args)
    except PetiteError as err:
        print(f"petite: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("petite: interrupted; nothing was left under a final file name.", file=sys.stderr)
        return 130
    except Terminated:
        print("petite: stopped by SIGTERM; nothing was left under a final file name.",
              file=sys.stderr)
        return 143
    finally:
        warnings.showwarning = _default_show
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
