"""``petite methods``: which PEFT methods fit which backbone, and what each would train.

For every backbone it lists the methods that fit its encoder and decoder, the single-method
baselines and the paper's Mix-PEFT grid, each with trainable parameters, total and
percentage. The numbers are counted, not quoted: each model is built on the ``meta`` device
(shapes only, no memory, no weights) and the spec is really applied to it.
"""

from __future__ import annotations

import json

#: trainable percentages the paper reports (docs/paper.md), for comparison
PAPER_PERCENT = {
    ("cvtgan", "petite"): 0.32,
    ("unetr", "petite"): 0.51,
    ("cvtgan", "layernorm"): 0.041,
    ("cvtgan", "bitfit"): 0.12,
}


def register(sub) -> None:
    parser = sub.add_parser(
        "methods",
        help="list PEFT methods, feasible Mix-PEFT combinations and their parameter counts",
        description="List the backbones, the PEFT methods that fit each part, the single-method "
        "baselines and the feasible Mix-PEFT combinations (encoder method + decoder method + "
        "BitFit), each with its trainable parameters, total and percentage of the denoiser.",
    )
    parser.add_argument("--backbone", default=None, help="only this backbone (default: all)")
    parser.add_argument("--preset", default="small", help="model preset (small or paper)")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    parser.set_defaults(func=run)


def _row(base, spec, tag: str) -> dict:
    import copy

    from napari_petite.peft.apply import apply_spec

    report = apply_spec(copy.deepcopy(base), spec)
    row = {
        "kind": tag,
        "encoder": spec.encoder,
        "decoder": spec.decoder,
        "bitfit": spec.bitfit,
        "label": spec.label,
        "params": {m: spec.method_config(m).to_dict() for m in {spec.encoder, spec.decoder}
                   if spec.method_config(m).to_dict()},
        "trainable": report.n_trainable,
        "total": report.n_total,
        "percent": round(report.percent, 4),
        "notes": report.notes,
    }
    return row


def describe(backbone: str, preset: str) -> dict:
    """Everything ``petite methods`` prints for one backbone."""
    import torch

    from napari_petite.models.registry import build_model
    from napari_petite.peft.spec import (
        METHODS,
        MixPEFTSpec,
        feasible_combinations,
        fitting_methods,
        petite_spec,
    )

    with torch.device("meta"):
        model = build_model(backbone, preset)
    fits = {part: fitting_methods(model, part) for part in ("encoder", "decoder")}
    baselines = []
    for method in METHODS:
        enc = method if method in fits["encoder"] else "none"
        dec = method if method in fits["decoder"] else "none"
        if method != "none" and enc == dec == "none":
            continue
        row = _row(model, MixPEFTSpec(backbone, preset, enc, dec, False), "baseline")
        row["paper_percent"] = PAPER_PERCENT.get((backbone, method))
        baselines.append(row)
    petite = petite_spec(backbone, preset) if backbone in ("unetr", "cvtgan") else None
    grid = []
    for spec in feasible_combinations(model):
        is_petite = petite is not None and spec == petite
        row = _row(model, spec, "petite" if is_petite else "mix-peft")
        row["paper_percent"] = PAPER_PERCENT.get((backbone, "petite")) if is_petite else None
        grid.append(row)
    return {
        "backbone": backbone,
        "preset": preset,
        "denominator": "all parameters of the denoiser (encoder + decoder, including the added "
                       "PEFT tensors); the discriminator is excluded",
        "fits": fits,
        "baselines": baselines,
        "mix_peft": grid,
        "petite": next((r for r in grid if r["kind"] == "petite"), None),
    }


def run(args) -> int:
    from napari_petite.errors import ConfigError
    from napari_petite.models.registry import backbone_names, preset_names
    from napari_petite.peft.spec import METHODS

    names = backbone_names() if args.backbone is None else [args.backbone]
    for name in names:
        if name not in backbone_names():
            raise ConfigError(f"Unknown backbone {name!r}; choose one of "
                              f"{', '.join(backbone_names())}.")
        if args.preset not in preset_names(name):
            raise ConfigError(f"Unknown preset {args.preset!r} for {name}; choose one of "
                              f"{', '.join(preset_names(name))}.")
    result = {"methods": list(METHODS), "backbones": [describe(n, args.preset) for n in names]}
    result["n_mix_peft"] = sum(len(b["mix_peft"]) for b in result["backbones"])
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"methods: {', '.join(METHODS)}")
    for b in result["backbones"]:
        print(f"\n{b['backbone']} ({b['preset']}): encoder fits {', '.join(b['fits']['encoder'])};"
              f" decoder fits {', '.join(b['fits']['decoder'])}")
        for title, rows in (("baselines", b["baselines"]),
                            (f"Mix-PEFT ({len(b['mix_peft'])} combinations)", b["mix_peft"])):
            print(f"  {title}:")
            for r in rows:
                paper = f"  (paper {r['paper_percent']} %)" if r.get("paper_percent") else ""
                star = "  <- PETITE" if r["kind"] == "petite" else ""
                print(f"    {r['label']:<44} {r['trainable']:>12,} / {r['total']:>12,}"
                      f"  {r['percent']:>8.3f} %{paper}{star}")
    print(f"\n{result['n_mix_peft']} feasible Mix-PEFT combinations; percentages are of "
          "the denoiser (discriminator excluded).")
    return 0
