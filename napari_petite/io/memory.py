"""How much memory this process may still use, and refusing work that would not fit.

A whole-body or high-resolution PET volume can be gigabytes; reading it and running
sliding-window inference over it needs several copies of it at once. When that does not fit,
the kernel's OOM killer ends the process (napari with it) without a word. So the volume's
memory need is estimated from its header *before* anything is allocated and compared with
what the machine (or the container's cgroup limit) still has, and a run that would not fit
is refused with a sentence saying how much it needs.

``PETITE_MAX_MEMORY`` (e.g. ``8G``, ``512M``) caps the budget below that, for shared
workstations and cluster jobs whose limits the kernel does not advertise.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from napari_petite.errors import InputError

ENV_LIMIT = "PETITE_MAX_MEMORY"
_UNITS = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str) -> int:
    """``"8G"`` -> bytes (binary units; a plain number is bytes)."""
    value = text.strip().upper().removesuffix("IB").removesuffix("B")
    unit = value[-1:] if value[-1:] in _UNITS else ""
    number = value[: len(value) - len(unit)]
    try:
        size = float(number) * _UNITS[unit]
    except ValueError:
        raise InputError(f"{ENV_LIMIT}={text!r} is not a size; write it like 8G or 512M.") \
            from None
    if not math.isfinite(size) or size < 1:
        raise InputError(f"{ENV_LIMIT}={text!r} must be a positive, finite size such as 8G.")
    return int(size)


def check_limit_setting() -> None:
    """Refuse a malformed ``PETITE_MAX_MEMORY`` when a command starts, not mid-run."""
    if os.environ.get(ENV_LIMIT, "").strip():
        parse_size(os.environ[ENV_LIMIT])


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cgroup_available() -> int | None:
    """Room left under a cgroup v2 (or v1) memory limit: containers are killed there."""
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
         "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
    ):
        try:
            limit_text = Path(limit_file).read_text().strip()
            if limit_text == "max":
                return None
            limit, usage = int(limit_text), int(Path(usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit >= 1 << 60:  # v1 spells "no limit" as a huge number
            return None
        return max(limit - usage, 0)
    return None


def available_bytes() -> int | None:
    """Bytes this process can still allocate without swapping or being killed (None: unknown).

    The smallest of the kernel's ``MemAvailable``, the room under the cgroup limit and
    ``PETITE_MAX_MEMORY``.
    """
    candidates = [_meminfo_available(), _cgroup_available()]
    if os.environ.get(ENV_LIMIT, "").strip():
        candidates.append(parse_size(os.environ[ENV_LIMIT]))
    known = [c for c in candidates if c is not None]
    if not known:
        try:  # macOS / BSD: no /proc; total physical memory is the best cheap bound
            known = [os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")]
        except (ValueError, OSError, AttributeError):
            return None
    return min(known)


def human_size(n_bytes: float) -> str:
    """``2147483648`` -> ``"2.0 GB"``, ``52428800`` -> ``"50 MB"`` (binary units, as ``free``
    shows them)."""
    if n_bytes >= 1 << 30:
        return f"{n_bytes / (1 << 30):.1f} GB"
    return f"{max(n_bytes / (1 << 20), 1):.0f} MB"


def check_fits_in_memory(needed: int, what: str, hint: str) -> None:
    """Refuse (InputError) when ``needed`` bytes exceed what is available.

    ``what`` names the task ("Reading scan.nii.gz"), ``hint`` says what the user can do.
    """
    free = available_bytes()
    if free is not None and needed > free:
        raise InputError(f"{what} needs about {human_size(needed)} of memory but only "
                         f"{human_size(free)} is available; {hint}")
