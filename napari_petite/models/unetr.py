"""UNETR (Hatamizadeh et al., WACV 2022) as a Mix-PEFT backbone, built on MONAI's ``UNETR``.

The PETITE paper fine-tunes MONAI's UNETR: a 12-layer ViT encoder on 16³ patches whose
hidden states 3/6/9/12 feed a CNN decoder through skip connections. This module keeps MONAI's
layers and module names (so a MONAI UNETR state dict loads here and vice versa) and adds what
Mix-PEFT needs:

* the ViT honours VPT prompt tokens (shallow ``prompts`` and ``deep_prompts``, optionally
  behind a zero-initialised ``prompt_gate``), stripped from every hidden state before the
  decoder sees it;
* an explicit encoder (the ViT) / decoder (every CNN block) split and the attachment sites of
  each PEFT method;
* InstanceNorm *with* affine parameters in the CNN decoder (``norm_affine``, on in both
  presets). MONAI's default ``"instance"`` norm has none (and its convolutions have no
  bias), so norm tuning and BitFit would find almost nothing to train in the decoder. With
  affine norms the decoder SSF of the paper (after the InstanceNorms of the last up-block)
  starts from a learnt scale and shift. ``norm_affine=False`` builds MONAI's default norms,
  so a MONAI base imports as it was trained (:mod:`napari_petite.models.monai_import`).
* ``qkv_bias=True`` (MONAI's default is False; configurable for the same reason): the
  query/key/value biases are the ones the BitFit paper found most useful, and 3·hidden
  extra parameters per block cost nothing.
* MONAI's ``TransformerBlock`` always builds a ``norm_cross_attn`` LayerNorm, unused without
  cross-attention. Its parameters never receive a gradient, so norm tuning would "train"
  dead tensors; it is replaced by ``nn.Identity`` here (MONAI does the same for
  ``cross_attn``). :meth:`UNETRBackbone.load_monai_state_dict` drops those keys from a MONAI
  state dict.
* an optional global residual, ``output = input + UNETR(input)`` (config ``residual``; on in
  the ``small`` preset, off in ``paper``, which stays MONAI's network). A low-count image is
  already close to its full-count target, so the network only has to learn the correction,
  as CVT-GAN's global residual does. Without it a small UNETR trained from scratch for a few
  hundred CPU steps stayed 3.4 dB *below* its own low-count input (21.7 vs 25.1 dB PSNR in
  the head on the sample data's mCT test subjects); it has to rebuild the whole image first.

Training step (MSE, AdamW, all parameters) on a batch of two 64³ patches, 2 CPU threads,
torch 2.13, MONAI 1.6.1, minimum over repeats (``benchmarks/bench_backbone_step.py`` and
interleaved runs on the project's shared 2-core machine, other jobs running)::

    hidden mlp  heads feature  params    step, min per run (range over runs)
    768    3072 12    16       92.70 M   3.40-8.5 s; 3.3-4.0 s on an idle machine  paper
    192    768  12    12        7.83 M   1.62-1.95 s; 1.26 s on an idle machine
    192    768  12    10        7.37 M   1.25-1.77 s
    192    768  12    8         6.98 M   0.73-1.03 s quiet, up to 1.4 s busy            small

(glibc's default allocator; keeping freed memory with ``mallopt``, see the benchmark, took
the small preset from 1.03 s to 0.82 s and the paper preset from 3.40 s to 2.52 s.)

The full-resolution decoder convolutions, not the ViT (64 tokens at 64³), dominate the step,
so the small preset keeps the reduced ViT and narrows the decoder to feature size 8: the only
candidate measured under the 1.5 s budget in every run here, with room for the GUI's thread.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from monai.networks.blocks.selfattention import SABlock
from monai.networks.nets import UNETR
from monai.networks.nets.vit import ViT
from torch import nn

from napari_petite.errors import ConfigError
from napari_petite.models.base import (
    Backbone,
    PartSites,
    PromptSite,
    Site,
    start_near_identity,
)

#: MONAI's UNETR always stacks 12 ViT layers and takes skips after layers 3, 6, 9 and 12.
N_LAYERS = 12
PATCH = 16
#: the CNN blocks that form the decoder part, in forward order
DECODER_BLOCKS: tuple[str, ...] = (
    "encoder1", "encoder2", "encoder3", "encoder4",
    "decoder5", "decoder4", "decoder3", "decoder2", "out",
)
#: paper (Jia et al. VPT as used in PETITE): 50 shallow prompt tokens on the ViT
VPT_TOKENS = 50


class PromptAttention(SABlock):
    """MONAI's self-attention that can gate prompt keys (zero-initialised VPT).

    With ``gate`` set, the first ``n_prompts`` tokens are attended through their own softmax
    scaled by the gate, ``softmax(q K_img) V_img + gate * softmax(q K_p) V_p`` (the zero-init
    attention of LLaMA-Adapter, see :mod:`napari_petite.peft.vpt`), so prompts with a zero
    gate leave the image tokens exactly as without prompts. Without a gate it is MONAI's.
    """

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None,
                n_prompts: int = 0, gate: torch.Tensor | None = None) -> torch.Tensor:
        if gate is None or n_prompts == 0:
            return super().forward(x, attn_mask=attn_mask)
        if attn_mask is not None or self.causal or self.use_flash_attention \
                or self.rel_positional_embedding is not None or not self.use_combined_linear:
            raise ValueError("gated prompts support UNETR's plain self-attention only")
        q, k, v = self.input_rearrange(self.qkv(x))  # each (batch, heads, tokens, head width)

        def attend(keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
            att = (torch.einsum("blxd,blyd->blxy", q, keys) * self.scale).softmax(dim=-1)
            return torch.einsum("bhxy,bhyd->bhxd", self.drop_weights(att), values)

        out = attend(k[:, :, n_prompts:], v[:, :, n_prompts:]) \
            + gate.to(q.dtype) * attend(k[:, :, :n_prompts], v[:, :, :n_prompts])
        out = self.out_rearrange(out)
        if self.include_fc:
            out = self.out_proj(out)
        return self.drop_output(out)


class PromptViT(ViT):
    """MONAI's ViT whose forward honours VPT prompt tokens.

    ``prompts`` (``(1, n, hidden)``) are prepended after patch + position embedding;
    ``deep_prompts`` (``(depth, n, hidden)``) replace the ``n`` extra tokens before each block;
    ``prompt_gate`` (``(depth,)``), when set, scales the prompts' attention in block ``i`` by
    ``prompt_gate[i]`` (see :class:`PromptAttention`). All three are registered as ``None``
    parameters so PEFT code can install them with either ``setattr`` or ``register_parameter``.
    The extra tokens are removed from every returned hidden state and from the output, so the
    decoder sees exactly the patch tokens.
    """

    def __init__(self, *, hidden_size: int, num_heads: int, dropout_rate: float,
                 qkv_bias: bool, **kwargs: Any):
        super().__init__(hidden_size=hidden_size, num_heads=num_heads,
                         dropout_rate=dropout_rate, qkv_bias=qkv_bias, **kwargs)
        if self.classification:
            raise ValueError("PromptViT serves UNETR: classification must be False")
        self.register_parameter("prompts", None)
        self.register_parameter("deep_prompts", None)
        self.register_parameter("prompt_gate", None)
        for blk in self.blocks:
            # same arguments as MONAI's TransformerBlock gives its SABlock: same state dict
            blk.attn = PromptAttention(hidden_size, num_heads, dropout_rate, qkv_bias=qkv_bias)
            # never used without cross-attention; would be a trainable tensor with no gradient
            blk.norm_cross_attn = nn.Identity()

    def _prompt_tensors(self) -> tuple[torch.Tensor | None, ...]:
        shallow = getattr(self, "prompts", None)
        deep = getattr(self, "deep_prompts", None)
        gate = getattr(self, "prompt_gate", None)
        hidden, depth = self.norm.normalized_shape[0], len(self.blocks)
        if shallow is not None and deep is not None:
            raise ConfigError(
                "The ViT has both shallow and deep VPT prompts; deep prompts replace the "
                "shallow ones at every block, so install only one of them."
            )
        if shallow is not None and (shallow.ndim != 3 or shallow.shape[0] != 1
                                    or shallow.shape[2] != hidden):
            raise ConfigError(
                f"VPT prompts must have shape (1, n, {hidden}); got {tuple(shallow.shape)}."
            )
        if deep is not None and (deep.ndim != 3 or deep.shape[0] != depth
                                 or deep.shape[2] != hidden):
            raise ConfigError(
                f"Deep VPT prompts must have shape ({depth}, n, {hidden}); "
                f"got {tuple(deep.shape)}."
            )
        if gate is not None and tuple(gate.shape) != (depth,):
            raise ConfigError(
                f"The VPT prompt gate must have shape ({depth},); got {tuple(gate.shape)}."
            )
        return shallow, deep, gate

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        shallow, deep, gate = self._prompt_tensors()
        x = self.patch_embedding(x)
        batch = x.shape[0]
        n_extra = 0
        if shallow is not None:
            n_extra = shallow.shape[1]
            x = torch.cat((shallow.expand(batch, -1, -1).to(x.dtype), x), dim=1)
        elif deep is not None:
            n_extra = deep.shape[1]
            x = torch.cat((deep[0].expand(batch, -1, -1).to(x.dtype), x), dim=1)
        hidden_states_out = []
        for i, blk in enumerate(self.blocks):
            if deep is not None and i > 0:
                x = torch.cat((deep[i].expand(batch, -1, -1).to(x.dtype), x[:, n_extra:]), dim=1)
            if n_extra and gate is not None:  # TransformerBlock.forward with a gated attention
                x = x + blk.attn(blk.norm1(x), n_prompts=n_extra, gate=gate[i])
                x = x + blk.mlp(blk.norm2(x))
            else:
                x = blk(x)
            hidden_states_out.append(x[:, n_extra:] if n_extra else x)
        if n_extra:
            x = x[:, n_extra:]
        return self.norm(x), hidden_states_out


class UNETRBackbone(Backbone):
    """UNETR denoiser: ``(B, 1, D, H, W)`` low-count window -> full-count estimate.

    Parameters
    ----------
    preset : ``"paper"`` (ViT-B, as in PETITE) or ``"small"`` (CPU-sized ViT)
    **overrides : any of ``hidden_size, mlp_dim, num_heads, feature_size, patch_size,
        qkv_bias, norm_affine, dropout_rate, residual`` replacing the preset's value

    The network only accepts windows of exactly ``patch_size`` (its position embedding is
    fixed); whole volumes go through sliding-window inference.
    """

    name: ClassVar[str] = "unetr"
    size_multiple: ClassVar[int] = PATCH
    is_gan: ClassVar[bool] = False
    PRESETS: ClassVar[dict[str, dict]] = {
        # ViT-B as in the paper and MONAI's defaults (92.7 M parameters with qkv_bias False)
        "paper": dict(hidden_size=768, mlp_dim=3072, num_heads=12, feature_size=16,
                      patch_size=(64, 64, 64), qkv_bias=True, norm_affine=True,
                      dropout_rate=0.0, residual=False),
        # train step 64³ x 2 on 2 CPU threads 0.73-0.87 s (budget 1.5 s), 6.98 M parameters;
        # feature size 12 (1.26 s on an idle machine) measured 1.6-1.95 s on the shared machine
        # residual: output = input + UNETR(input), see the module docstring
        "small": dict(hidden_size=192, mlp_dim=768, num_heads=12, feature_size=8,
                      patch_size=(64, 64, 64), qkv_bias=True, norm_affine=True,
                      dropout_rate=0.0, residual=True),
    }

    def __init__(self, preset: str = "small", **overrides: Any):
        config = _resolve_config(self.PRESETS, preset, overrides)
        super().__init__(preset, config)
        img_size = tuple(config["patch_size"])
        common = dict(hidden_size=config["hidden_size"], mlp_dim=config["mlp_dim"],
                      num_heads=config["num_heads"], dropout_rate=config["dropout_rate"],
                      qkv_bias=config["qkv_bias"])
        # MONAI builds the CNN blocks; its own ViT is replaced by the prompt-aware subclass.
        # Building on the meta device avoids initialising a ViT that would be thrown away.
        with torch.device("meta"):
            net = UNETR(in_channels=1, out_channels=1, img_size=img_size,
                        feature_size=config["feature_size"],
                        norm_name=("instance", {"affine": bool(config["norm_affine"])}),
                        **common)
        self.vit = PromptViT(in_channels=1, img_size=img_size, patch_size=PATCH,
                             num_layers=N_LAYERS, classification=False, **common)
        device = self.vit.norm.weight.device  # wherever tensors are created by default
        for name in DECODER_BLOCKS:
            block = getattr(net, name).to_empty(device=device)
            for module in block.modules():
                if hasattr(module, "reset_parameters"):  # torch's default init, as MONAI's
                    module.reset_parameters()
            self.add_module(name, block)
        self.hidden_size = config["hidden_size"]
        self.residual = bool(config["residual"])
        if self.residual:
            start_near_identity(self.out.conv.conv)
        self.feat_size = tuple(s // PATCH for s in img_size)

    # -- forward ---------------------------------------------------------------------
    def _tokens_to_volume(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, hidden) ViT tokens -> (B, hidden, d, h, w) feature map (MONAI's proj_feat)."""
        x = x.view(x.size(0), *self.feat_size, self.hidden_size)
        return x.permute(0, 4, 1, 2, 3).contiguous()

    def check_input(self, x: torch.Tensor) -> None:
        """Refuse tensors the fixed-size ViT cannot take, with what to do instead."""
        window = self.patch_size
        if x.ndim != 5 or x.shape[1] != 1:
            raise ConfigError(
                f"UNETR expects a (batch, 1, D, H, W) tensor; got shape {tuple(x.shape)}."
            )
        if tuple(x.shape[2:]) != window:
            raise ConfigError(
                f"This UNETR takes windows of exactly {window} voxels (its position embedding "
                f"is fixed) but got {tuple(x.shape[2:])}; run larger volumes through "
                "sliding-window inference with that window size."
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        tokens, hidden = self.vit(x)
        enc1 = self.encoder1(x)
        enc2 = self.encoder2(self._tokens_to_volume(hidden[3]))
        enc3 = self.encoder3(self._tokens_to_volume(hidden[6]))
        enc4 = self.encoder4(self._tokens_to_volume(hidden[9]))
        dec3 = self.decoder5(self._tokens_to_volume(tokens), enc4)
        dec2 = self.decoder4(dec3, enc3)
        dec1 = self.decoder3(dec2, enc2)
        out = self.out(self.decoder2(dec1, enc1))
        return x + out if self.residual else out

    # -- Mix-PEFT contract -------------------------------------------------------------
    def group_prefixes(self) -> dict[str, tuple[str, ...]]:
        return {"encoder": ("vit.",), "decoder": tuple(f"{b}." for b in DECODER_BLOCKS)}

    def sites(self, part: str) -> PartSites:
        if part == "encoder":
            return self._encoder_sites()
        if part == "decoder":
            return self._decoder_sites()
        raise ConfigError(f"UNETR has parts 'encoder' and 'decoder', not {part!r}.")

    def _encoder_sites(self) -> PartSites:
        h = self.hidden_size
        blocks = [f"vit.blocks.{i}" for i in range(N_LAYERS)]
        # SABlock's qkv Linear is rearranged "b h (qkv l d)": output rows are q | k | v
        return PartSites(
            # q and k as two sites, so LoRA gives each its own rank-r pair (as the paper's
            # separate q and k projections would have)
            attention_qk=tuple(Site(f"{b}.attn.qkv", "tokens", rows) for b in blocks
                               for rows in ((0, h), (h, 2 * h))),
            attention_v=tuple(Site(f"{b}.attn.qkv", "tokens", (2 * h, 3 * h)) for b in blocks),
            ffn=tuple(Site(f"{b}.mlp", "tokens") for b in blocks),
            # SSF after every operation of a block (attention, MLP, both LayerNorms) and the
            # final LayerNorm, as Lian et al. place it on ViTs
            ssf=(
                *(Site(f"{b}.{op}", "tokens") for b in blocks
                  for op in ("norm1", "attn", "norm2", "mlp")),
                Site("vit.norm", "tokens"),
            ),
            # IA³ rescales keys, values (rows h..3h of qkv) and the FFN hidden activation:
            # the output of the GELU ``mlp.fn`` = the input of ``mlp.linear2`` (what the IA³
            # paper scales; merge it into linear2's weight columns)
            ia3=tuple(
                s for b in blocks
                for s in (Site(f"{b}.attn.qkv", "tokens", (h, 3 * h)),
                          Site(f"{b}.mlp.fn", "tokens"))
            ),
            prompts=(PromptSite("vit", h, N_LAYERS, VPT_TOKENS),),
        )

    def _decoder_sites(self) -> PartSites:
        convs = tuple(
            Site(name, "channels") for name, module in self.modules_in("decoder")
            if isinstance(module, nn.Conv3d | nn.ConvTranspose3d)
        )
        # the paper's decoder SSF: after each InstanceNorm of the last up-block
        last_norms = tuple(
            Site(name, "channels") for name, module in self.named_modules()
            if name.startswith("decoder2.") and isinstance(module, nn.InstanceNorm3d)
        )
        # the CNN blocks (conv + norm + residual units) play the role of the FFN
        block_outputs = tuple(Site(b, "channels") for b in DECODER_BLOCKS if b != "out")
        return PartSites(convs=convs, ffn=block_outputs, ssf=last_norms, ia3=block_outputs)

    # -- interoperability ----------------------------------------------------------------
    def load_monai_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Load weights of a MONAI ``UNETR`` of the same config (strict, dropping the unused
        ``norm_cross_attn`` LayerNorms MONAI keeps in every block)."""
        state = {k: v for k, v in state.items() if ".norm_cross_attn." not in k}
        self.load_state_dict(state, strict=True)


def _resolve_config(presets: dict[str, dict], preset: str, overrides: dict) -> dict:
    """Preset values updated by ``overrides``, with every problem named in one sentence."""
    if preset not in presets:
        raise ConfigError(
            f"Unknown UNETR preset {preset!r}; choose one of {', '.join(sorted(presets))}."
        )
    config = dict(presets[preset])
    unknown = sorted(set(overrides) - set(config))
    if unknown:
        raise ConfigError(
            f"Unknown UNETR option(s) {', '.join(unknown)}; valid options are "
            f"{', '.join(sorted(config))}."
        )
    config.update(overrides)
    size = config["patch_size"]
    size = (int(size),) * 3 if isinstance(size, int) else tuple(int(s) for s in size)
    if len(size) != 3 or any(s <= 0 or s % PATCH for s in size):
        raise ConfigError(
            f"UNETR patch_size must be three positive multiples of {PATCH} (its ViT patch); "
            f"got {config['patch_size']!r}."
        )
    config["patch_size"] = size
    if config["hidden_size"] % config["num_heads"]:
        raise ConfigError(
            f"UNETR hidden_size {config['hidden_size']} is not divisible by num_heads "
            f"{config['num_heads']}; pick sizes with hidden_size = heads x head width."
        )
    return config
