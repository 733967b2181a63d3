"""``petite predict``: run the base or adapted model on NIfTI volumes, write NIfTI results.

Each output keeps its input's affine, header and units; nothing is written over an input, and
every destination is checked before any computation so a bad --out fails fast.
"""

from __future__ import annotations

from pathlib import Path

from napari_petite.commands import _options as opt
from napari_petite.errors import ConfigError, InputError


def register(sub) -> None:
    parser = sub.add_parser(
        "predict",
        help="reconstruct full-count estimates of low-count NIfTI volumes",
        description="Run the base model, or the base model with an adapter bundle, on each "
        "input volume by sliding-window inference and write <name>_recon.nii.gz into --out "
        "(same affine, header and units as the input).",
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="low-count .nii/.nii.gz files")
    opt.add_model(parser)
    parser.add_argument("--adapter", metavar="DIR", default=None,
                        help="adapter bundle folder from `petite finetune`")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--no-merge", action="store_true",
                        help="keep PEFT modules unmerged (default merges LoRA/SSF/IA3 exactly)")
    opt.add_output(parser, what="folder for the reconstructed volumes")
    parser.set_defaults(func=run)


def output_name(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", ".nii"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    return f"{name}_recon.nii.gz"


def run(args) -> int:
    from tqdm import tqdm

    from napari_petite.io.atomic import check_destination
    from napari_petite.io.nifti import read_volume, write_like
    from napari_petite.training.device import resolve_device
    from napari_petite.training.inference import predict_volume
    from napari_petite.training.job import model_for_inference
    from napari_petite.training.scaling import robust_scale

    out_dir = Path(args.out).expanduser()
    inputs = [Path(p).expanduser() for p in args.inputs]
    volumes = [read_volume(p) for p in inputs]  # bad inputs fail before any output
    dests = [out_dir / output_name(p) for p in inputs]
    if len(set(dests)) != len(dests):
        raise ConfigError("Two inputs share a file name, so their outputs would collide; "
                              "predict them into different --out folders.")
    for dest in dests:
        check_destination(dest, inputs=inputs, overwrite=args.overwrite)
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
        written.append(str(write_like(dest, recon, vol, overwrite=args.overwrite,
                                      inputs=inputs)))
    opt.emit(args, {"model": description, "outputs": written},
             f"{description}\n" + "\n".join(f"wrote {w}" for w in written))
    return 0
