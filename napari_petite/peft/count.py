"""What a spec would train, asked without building real weights: for forms and planning.

The Fine-tune dock recounts on every change of the form; building the network on PyTorch's
meta device costs no memory and applying the very spec a run would use gives the exact
count (the same :class:`~napari_petite.peft.apply.PEFTReport` a run gets). Networks and
counts are cached per (backbone, preset, config) and per spec.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from napari_petite.peft.spec import METHODS, MixPEFTSpec, petite_spec, why_not

#: what parameter-efficient means here: at most this share of the network's weights trains
BUDGET_PERCENT = 1.0


class SpecCounter:
    """Feasibility and trainable-parameter counts of specs on one kind of network."""

    def __init__(self) -> None:
        self._nets: dict[str, Any] = {}
        self._counts: dict[str, tuple[int, int, float]] = {}
        self._lock = threading.Lock()  # asked from worker threads

    @staticmethod
    def _key(*parts: Any) -> str:
        return json.dumps(parts, sort_keys=True, default=str)

    @staticmethod
    def _build(backbone: str, preset: str, config: dict | None):
        import torch

        from napari_petite.models.registry import build_model

        with torch.device("meta"):
            return build_model(backbone, preset, **(config or {}))

    def network(self, backbone: str, preset: str, config: dict | None = None):
        """A meta-device network for questions about its structure (not modified, cached)."""
        key = self._key(backbone, preset, config)
        with self._lock:
            if key not in self._nets:
                self._nets[key] = self._build(backbone, preset, config)
            return self._nets[key]

    def reasons(self, backbone: str, preset: str, config: dict | None,
                params: dict | None = None) -> dict[tuple[str, str], str | None]:
        """For every (part, method): None when the method fits, else why not."""
        from napari_petite.peft.config import method_config

        net = self.network(backbone, preset, config)
        params = params or {}
        return {(part, method): why_not(net, part, method,
                                        method_config(backbone, method, params.get(method)))
                for part in ("encoder", "decoder") for method in METHODS}

    def count(self, spec: MixPEFTSpec, config: dict | None = None) -> tuple[int, int, float]:
        """(trainable, total, percent) of ``spec`` on the network ``config`` describes."""
        from napari_petite.peft.apply import apply_spec

        key = self._key(spec.to_dict(), config)
        with self._lock:
            if key not in self._counts:
                report = apply_spec(self._build(spec.backbone, spec.preset, config), spec)
                self._counts[key] = (report.n_trainable, report.n_total, report.percent)
            return self._counts[key]

    def recommended(self, backbone: str, preset: str,
                    config: dict | None = None) -> MixPEFTSpec:
        """The paper's recipe (PETITE) with its LoRA rank halved until it trains at most
        :data:`BUDGET_PERCENT` of this network.

        LoRA's share grows as a network shrinks (its tensors scale with the width, the
        network with its square), so the paper's rank 4 takes 1.1 % of the shipped small
        UNETR; rank 2 keeps the recipe within the budget with the paper's alpha = 2 x rank.
        """
        from napari_petite.peft.config import method_config

        spec = petite_spec(backbone, preset)
        if "lora" not in (spec.encoder, spec.decoder):
            return spec
        rank = paper_rank = method_config(backbone, "lora").rank
        while True:
            params = {} if rank == paper_rank else {"lora": {"rank": rank}}
            spec = MixPEFTSpec(backbone, preset, spec.encoder, spec.decoder, True, params)
            if rank == 1 or self.count(spec, config)[2] <= BUDGET_PERCENT:
                return spec
            rank //= 2
