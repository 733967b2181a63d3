"""``petite import-base``: a MONAI UNETR state dict becomes a base checkpoint.

The weights are read without unpickling objects (``torch.load`` with ``weights_only=True``, or
safetensors), the network options are read from the tensors or given here, the imported
network is checked against MONAI's own on a test window, and the result is written as the
project's safetensors checkpoint with its card (:mod:`napari_petite.models.monai_import`).
"""

from __future__ import annotations

import argparse
import shlex
import sys

from napari_petite.commands import _options as opt


def register(sub) -> None:
    parser = sub.add_parser(
        "import-base",
        help="turn a MONAI UNETR state dict (.pt/.pth/.safetensors) into a base checkpoint",
        description="Read a MONAI UNETR state dict (a .pt/.pth file saved with "
        "torch.save(model.state_dict()), read with weights_only=True, or .safetensors), build "
        "the UNETR it belongs to (options read from the tensor shapes unless given; the number "
        "of heads is MONAI's default 12 unless given), check it computes what MONAI's UNETR "
        "computes with the same weights, and write OUT (.safetensors) and its JSON card.",
    )
    parser.add_argument("input", help="MONAI UNETR state dict (.pt, .pth or .safetensors)")
    group = parser.add_argument_group("MONAI UNETR options (default: read from the weights)")
    group.add_argument("--img-size", type=int, nargs="+", metavar="N",
                       help="window size: one number (a cube) or D H W")
    group.add_argument("--hidden-size", type=int, metavar="N")
    group.add_argument("--mlp-dim", type=int, metavar="N")
    group.add_argument("--num-heads", type=int, metavar="N",
                       help="attention heads (not readable from the weights; default 12)")
    group.add_argument("--feature-size", type=int, metavar="N")
    group.add_argument("--qkv-bias", action=argparse.BooleanOptionalAction, default=None)
    group.add_argument("--norm-affine", action=argparse.BooleanOptionalAction, default=None,
                       help="instance norms with affine parameters (MONAI's default: without)")
    parser.add_argument("--source", metavar="ID", default=None,
                        help="scanner the base was trained on (recorded in the card)")
    opt.add_output(parser, what="checkpoint to write (.safetensors; the .json card beside it)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from napari_petite.models.monai_import import import_base

    size = args.img_size
    given = {"img_size": None if size is None else (size * 3 if len(size) == 1 else size),
             "hidden_size": args.hidden_size, "mlp_dim": args.mlp_dim,
             "num_heads": args.num_heads, "feature_size": args.feature_size,
             "qkv_bias": args.qkv_bias, "norm_affine": args.norm_affine}
    command = shlex.join(["petite", *sys.argv[1:]]) if sys.argv[1:2] == ["import-base"] \
        else None
    path, card = import_base(args.input, args.out, given=given, source=args.source,
                             command=command, overwrite=args.overwrite)
    options = card["monai_options"]
    opt.emit(args, {"checkpoint": str(path), "card": card},
             f"imported {card['imported_from']['file']} as {path} (UNETR, "
             f"{card['n_params']:,} weights, options {options}; output equals MONAI's within "
             f"{card['max_abs_diff_vs_monai']:.2g})")
    return 0
