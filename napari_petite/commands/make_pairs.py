"""``petite make-pairs``: a dynamic scan becomes one training subject (low + full count).

A site's routine dynamic (or list-mode framed) FDG exams are where the pairs fine-tuning needs
come from: the low-count image is the mean of the frames in a short window (default the first
5 minutes, as the PETITE paper), the full-count image the duration-weighted mean of the
frames in a long one (default 0-30 min). Both are decay-corrected activity concentration in
the same units on the same grid, so the pair is aligned by construction.
"""

from __future__ import annotations

from pathlib import Path

from napari_petite.commands import _options as opt
from napari_petite.errors import ConfigError


def _window(text: str) -> tuple[float, float]:
    """``"0:5"`` (minutes) -> (0.0, 300.0) seconds."""
    start, sep, end = text.partition(":")
    try:
        if not sep:
            raise ValueError
        return float(start) * 60.0, float(end) * 60.0
    except ValueError:
        raise ConfigError(f"A window must look like START:END in minutes from the first "
                          f"frame, e.g. 0:5, not {text!r}.") from None


def register(sub) -> None:
    parser = sub.add_parser(
        "make-pairs",
        help="turn a dynamic scan into a training subject (low + full count)",
        description="Read a dynamic PET scan (a 4D NIfTI with its BIDS JSON sidecar giving "
        "FrameTimesStart and FrameDuration, an ECAT 7 .v file with its frame timing, or a "
        "multi-frame DICOM PET series) and write "
        "<out>/low.nii.gz (mean of the frames in --low), full.nii.gz (duration-weighted mean "
        "of the frames in --full) and meta.json (the frames used). Put --out inside "
        "<dataset>/<scanner>/ to add the subject to a dataset.",
    )
    parser.add_argument("input", help="4D NIfTI (+ .json sidecar), ECAT 7 (.v) or DICOM dynamic "
                        "series")
    parser.add_argument("--series", metavar="UID", default=None,
                        help="SeriesInstanceUID when a DICOM folder holds several")
    parser.add_argument("--low", default="0:5", metavar="START:END",
                        help="short (low-count) window in minutes from the first frame "
                        "(default 0:5)")
    parser.add_argument("--full", default="0:30", metavar="START:END",
                        help="long (full-count) window in minutes (default 0:30)")
    opt.add_output(parser, what="subject folder to create (e.g. DATA/site-b/sub-01)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from napari_petite.io.dynamic import make_pair, read_dynamic

    low, full = _window(args.low), _window(args.full)
    dyn = read_dynamic(args.input, args.series)
    with opt.reserve_outputs(args, Path(args.out).expanduser(), kind="folder"):
        meta = make_pair(dyn, Path(args.out).expanduser(), low=low, full=full,
                         overwrite=args.overwrite)
    opt.emit(args, meta, f"wrote {args.out}: low = mean of {len(meta['low']['frames'])} "
             f"frame(s) in {args.low} min, full = mean of {len(meta['full']['frames'])} "
             f"frame(s) in {args.full} min ({dyn.n_frames} frames in the scan)")
    return 0
