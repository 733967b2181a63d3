"""How much memory one training step needs, known before the first step allocates it.

A batch that does not fit ends a run in the allocator (or the kernel's OOM killer) after the
subjects have been read and the base loaded. The same network, with the same spec, is built
on PyTorch's meta device and run once on a batch of the run's patch size: the sizes of every
layer's outputs are the forward activations, which the backward pass keeps and roughly
doubles, and the trainable tensors cost their gradients and two AdamW moments. The estimate
is held against the budget :mod:`napari_petite.io.memory` gives (RAM, cgroup, and
``PETITE_MAX_MEMORY``), as reading and inference are.
"""

from __future__ import annotations

from collections.abc import Sequence

#: measured: a train step's peak growth is ~1.8x the forward outputs (UNETR-small 358 MB
#: at 32x64x64 x 2, forward outputs 195 MB); rounded up for margin
BACKWARD_FACTOR = 2.5
#: gradient + two AdamW moments per trainable weight, float32
OPTIMIZER_BYTES_PER_PARAM = 3 * 4


def estimate_step_bytes(model, window: Sequence[int], batch_size: int) -> int:
    """Bytes one optimizer step on a (batch, 1, *window) batch adds above the loaded model."""
    import copy

    import torch

    from napari_petite.models.registry import build_model
    from napari_petite.peft.apply import apply_spec, peft_state

    with torch.device("meta"):
        net = build_model(model.name, model.preset, **copy.deepcopy(dict(model.config)))
    state = peft_state(model)
    if state is not None:
        apply_spec(net, state.spec)
    net.eval()  # the same output sizes; batch norm in training refuses a 1-voxel batch of one
    total = 0

    def count(_module, _inputs, output) -> None:
        nonlocal total
        for item in output if isinstance(output, tuple | list) else (output,):
            if torch.is_tensor(item):
                total += item.numel() * item.element_size()

    leaves = [m for m in net.modules() if not any(True for _ in m.children())]
    hooks = [m.register_forward_hook(count) for m in leaves]
    try:
        with torch.no_grad():
            x = torch.zeros((batch_size, 1, *(int(w) for w in window)), device="meta")
            y = net(x)
            if getattr(net, "is_gan", False):
                net.discriminate(x, y)
    finally:
        for hook in hooks:
            hook.remove()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return int(BACKWARD_FACTOR * total) + OPTIMIZER_BYTES_PER_PARAM * trainable


def check_step_memory(model, window: Sequence[int], batch_size: int, device=None) -> None:
    """Refuse a batch × patch whose training step would not fit in the memory available
    (the GPU's free memory when training on CUDA, else the process's budget)."""
    from napari_petite.errors import InputError
    from napari_petite.io.memory import check_fits_in_memory, human_size

    needed = estimate_step_bytes(model, window, batch_size)
    what = (f"A training step of {batch_size} patches of "
            f"{'x'.join(str(int(w)) for w in window)} voxels")
    hint = "lower --batch (or the patch size), or use a machine with more memory."
    if device is not None and getattr(device, "type", str(device)) == "cuda":
        import torch

        free, _ = torch.cuda.mem_get_info(device)
        if needed > free:
            raise InputError(f"{what} needs about {human_size(needed)} of GPU memory but only "
                             f"{human_size(free)} is free; {hint}")
        return
    check_fits_in_memory(needed, what, hint)
