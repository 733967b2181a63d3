"""``petite predict``: run the base or adapted model on low-count volumes (NIfTI files or
DICOM PET series) and write the results as NIfTI or as derived DICOM series.

Each output keeps its input's geometry, units and SUV factor; nothing is written over an
input (nor into a DICOM source's folder), and every destination is checked before any
computation so a bad --out fails fast.
"""

from __future__ import annotations

from pathlib import Path

from napari_petite.commands import _options as opt
from napari_petite.errors import ConfigError, InputError


def register(sub) -> None:
    parser = sub.add_parser(
        "predict",
        help="reconstruct full-count estimates of low-count volumes (NIfTI or DICOM)",
        description="Run the base model, or the base model with an adapter bundle, on each "
        "input volume by sliding-window inference and write <name>_recon.nii.gz (or, with "
        "--format dicom, a derived DICOM series folder <name>_recon/) into --out, with the "
        "input's geometry, units and SUV factor.",
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="low-count .nii/.nii.gz files, ECAT 7 .v files, DICOM series "
                        "folders or .dcm files")
    parser.add_argument("--series", metavar="UID", default=None,
                        help="SeriesInstanceUID to read when a DICOM folder holds several")
    parser.add_argument("--format", choices=("nifti", "dicom"), default="nifti",
                        help="nifti (default) or dicom: a derived PET series for PACS (needs "
                        "DICOM inputs; keeps patient, study, frame of reference and SUV tags)")
    opt.add_model(parser)
    parser.add_argument("--adapter", metavar="DIR", default=None,
                        help="adapter bundle folder from `petite finetune`")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--no-merge", action="store_true",
                        help="keep PEFT modules unmerged (default merges LoRA/SSF/IA3 exactly)")
    opt.add_output(parser, what="folder for the reconstructed volumes")
    parser.set_defaults(func=run)


def output_name(path: Path, fmt: str = "nifti") -> str:
    name = path.name
    for suffix in (".nii.gz", ".nii", ".dcm", ".v"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    return f"{name}_recon" if fmt == "dicom" else f"{name}_recon.nii.gz"


def run(args) -> int:
    import contextlib

    from napari_petite.io.atomic import reserve
    from napari_petite.io.volumes import read_any

    out_dir = Path(args.out).expanduser()
    inputs = [Path(p).expanduser() for p in args.inputs]
    volumes = [read_any(p, series=args.series) for p in inputs]  # bad inputs fail first
    dests = [out_dir / output_name(p, args.format) for p in inputs]
    if len(set(dests)) != len(dests):
        raise ConfigError("Two inputs share a file name, so their outputs would collide; "
                              "predict them into different --out folders.")
    with contextlib.ExitStack() as claims:  # every output claimed before any work
        for vol, dest in zip(volumes, dests, strict=True):
            for path, kind in outputs_of(args, vol, dest):
                claims.enter_context(reserve(path, inputs=opt.command_inputs(args)
                                             + source_paths(vol), overwrite=args.overwrite,
                                             kind=kind, needed=vol.data.nbytes))
        return _predict(args, volumes, dests, inputs)


def source_paths(vol) -> list[Path]:
    """What a volume was read from: its file (and sidecar), or its DICOM files."""
    from napari_petite.io.nifti import input_paths

    files = [Path(f) for f in vol.extra.get("dicom", {}).get("files", [])] \
        if isinstance(vol.extra.get("dicom"), dict) else []
    return input_paths([vol.path] if vol.path else []) + files


def outputs_of(args, vol, dest: Path) -> list[tuple[Path, str]]:
    """(path, kind) of what predicting ``vol`` into ``dest`` writes."""
    from napari_petite.io.nifti import output_paths

    if args.format == "dicom":
        check_dicom_destination(vol)
        return [(dest, "folder")]
    sidecar = bool(vol.units or vol.extra.get("suv_factor"))
    return [(path, "file") for path in output_paths(dest, sidecar)]


def _predict(args, volumes, dests, inputs) -> int:
    from tqdm import tqdm

    from napari_petite.training.device import resolve_device
    from napari_petite.training.inference import predict_volume
    from napari_petite.training.job import model_for_inference
    from napari_petite.training.scaling import robust_scale

    for vol in volumes:  # every input usable before anything is computed or written
        try:
            robust_scale(vol.data)
        except InputError as err:
            raise InputError(f"{vol.path.name}: {err}") from None
    device = resolve_device(args.device)
    model, description = model_for_inference(args.base, args.adapter, backbone=args.backbone,
                                             merge=not args.no_merge)
    model.to(device)
    written = []
    for vol, dest in zip(volumes, dests, strict=True):
        with tqdm(desc=vol.path.name, unit="window", disable=args.json) as bar:
            def progress(done, total, bar=bar):
                bar.total = total
                bar.update(done - bar.n)

            recon = predict_volume(model, vol.data, device=device, progress=progress)
        written.append(str(write_output(args, dest, recon, vol, description, inputs)))
    opt.emit(args, {"model": description, "outputs": written},
             f"{description}\n" + "\n".join(f"wrote {w}" for w in written))
    return 0


def check_dicom_destination(vol) -> None:
    """A DICOM output needs a DICOM input (it keeps the source's patient and study)."""
    if vol.extra.get("format") != "dicom":
        raise ConfigError(f"--format dicom needs DICOM inputs (a derived series keeps the "
                          f"source's patient and study), but {vol.path} is NIfTI; use "
                          "--format nifti for it.")


def write_output(args, dest: Path, recon, vol, description: str, inputs) -> Path:
    if args.format == "dicom":
        from napari_petite.io.dicom_export import write_derived_series

        return write_derived_series(recon, vol, dest, description=f"PETITE {description}"[:64],
                                    overwrite=args.overwrite)
    from napari_petite.io.nifti import write_like

    return write_like(dest, recon, vol, overwrite=args.overwrite, inputs=inputs)
