"""The ``petite`` command line: a thin shell over the same engine the napari docks drive.

Each sub-command lives in ``napari_petite/commands/<name>.py`` and exposes
``register(subparsers)``; the parser sets ``func`` to the function that runs it. A
``PetiteError`` is printed as one sentence and the process exits with code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from napari_petite import __version__
from napari_petite.errors import PetiteError

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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
    except PetiteError as err:
        print(f"petite: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("petite: interrupted; nothing was left under a final file name.", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
