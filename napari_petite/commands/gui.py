"""``petite gui``: open napari with the three napari-petite docks and a dataset ready.

Without a display it says so and runs the headless demo instead, so ``make demo`` works on a
workstation and over SSH alike.
"""

from __future__ import annotations

import os
import sys


def register(sub) -> None:
    parser = sub.add_parser(
        "gui",
        help="open napari with the napari-petite docks and the sample dataset",
        description="Open napari with the 'Scanner data', 'Fine-tune' and 'Reconstruct & "
        "compare' docks and a dataset listed (the sample dataset unless --data is given; it is "
        "simulated on first use). Without a display (no $DISPLAY or $WAYLAND_DISPLAY on Linux) "
        "it says so and runs the headless demo instead.",
    )
    parser.add_argument("files", nargs="*", help="NIfTI files to open as layers")
    parser.add_argument("--data", metavar="DIR", default=None,
                        help="dataset folder to list (default: the sample dataset)")
    parser.add_argument("--base", metavar="FILE", default=None,
                        help="base checkpoint (.safetensors) to preselect in 'Fine-tune'")
    parser.add_argument("--out", default="demo-output",
                        help="output folder of the headless demo (default: demo-output)")
    parser.set_defaults(func=run)


def has_display() -> bool:
    """True when a GUI can open: always on macOS/Windows, with X11 or Wayland on Linux."""
    if not sys.platform.startswith("linux"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def run(args) -> int:
    if not has_display():
        print("petite gui: no display found ($DISPLAY and $WAYLAND_DISPLAY are unset), so napari "
              "cannot open a window; running the headless demo instead (petite demo).",
              file=sys.stderr)
        try:
            from napari_petite.commands import demo
        except ImportError:
            print("petite gui: the headless demo is not part of this installation; run "
                  "`xvfb-run -a petite gui` or use the `petite` sub-commands.", file=sys.stderr)
            return 2
        return int(demo.run_demo(out=args.out) or 0)
    import napari

    from napari_petite._widgets.window import open_viewer

    viewer, _ = open_viewer(data=args.data, base=args.base, files=args.files)
    viewer.window._qt_window.showMaximized()  # the canvas gets most of the screen
    napari.run()
    return 0
