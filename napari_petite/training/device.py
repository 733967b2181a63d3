"""Device choice: CUDA, then Apple MPS, then CPU — never required, always stated.

Training plugins are often criticised for hard-coding CUDA or silently falling back to the
CPU; here ``auto`` picks the best device present and the choice is reported in the events.
"""

from __future__ import annotations

from napari_petite.errors import ConfigError

CHOICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(name: str = "auto"):
    """Return a ``torch.device`` for ``auto``/``cpu``/``cuda[:N]``/``mps``.

    Raises ConfigError when the requested accelerator is not available here.
    """
    import torch

    name = (name or "auto").lower()
    mps = getattr(torch.backends, "mps", None)
    mps_ok = bool(mps and mps.is_available())
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if mps_ok else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError("CUDA was requested but no CUDA GPU is available to PyTorch here; "
                              "use --device auto or cpu (or install a CUDA build of torch).")
        return torch.device(name)
    if name == "mps":
        if not mps_ok:
            raise ConfigError("MPS was requested but Apple's Metal backend is not available; "
                              "use --device auto or cpu.")
        return torch.device("mps")
    raise ConfigError(f"Unknown device {name!r}; choose one of {', '.join(CHOICES)} "
                      "(or cuda:N).")
