"""Sizes refused before any work starts: a problem's stated dimension limit, and what a batch
would take of this machine's memory (its problem, its optimizer's state and its curves)."""

from __future__ import annotations

import inspect

import torch

from optimizers.base import ConfigError

MEMORY_SHARE = 0.8  # of the memory available now that one batch may plan to take


def available_memory() -> int | None:
    """Bytes of memory available now (Linux's MemAvailable), or None where unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _gb(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def problem_dim(problem_cls, kwargs: dict) -> int | None:
    """The dimension a problem will have, where it is a config key (not for data problems)."""
    if "dim" in getattr(problem_cls, "fixed", ()):
        return None
    dim = kwargs.get("dim")
    if dim is None:
        p = inspect.signature(problem_cls).parameters.get("dim")
        dim = None if p is None or p.default is p.empty else p.default
    return dim if isinstance(dim, int) and not isinstance(dim, bool) and dim > 0 else None


def check_sizes(problem_cls, kwargs: dict, members: int, steps: int, dtype: torch.dtype) -> None:
    """Raise :class:`ConfigError` for a dimension above the problem's ``max_dim``, or a batch that would
    not fit in memory (estimated from the problem's ``bytes_per_member`` and the curves' T x B floats)."""
    dim = problem_dim(problem_cls, kwargs)
    name = kwargs.get("name") or getattr(problem_cls, "name", "the problem")
    limit = getattr(problem_cls, "max_dim", None)
    if dim is not None and limit is not None and dim > limit:
        raise ConfigError(
            f"problem.dim={dim} is not allowed for {name}; allowed: an integer 1..{limit} ({problem_cls.max_dim_reason})"
        )
    itemsize = torch.empty(0, dtype=dtype).element_size()
    per_member = problem_cls.bytes_per_member(dim or 0, itemsize) if hasattr(problem_cls, "bytes_per_member") else 0
    curves = (
        (steps + 1) * 8 * (3 + (dim if dim is not None and dim <= 2 else 0))
    )  # loss, grad norm, evals; 1-D/2-D points
    need, avail = members * (per_member + curves), available_memory()
    if avail is not None and need > MEMORY_SHARE * avail:
        what = (
            f"problem.dim={dim}, " if dim is not None else ""
        ) + f"steps={steps} and {members} member{'s' * (members != 1)} in one batch"
        raise ConfigError(
            f"{what} need about {_gb(need)} of memory, {_gb(avail)} available; allowed: at most {_gb(MEMORY_SHARE * avail)}: "
            "a smaller problem.dim, fewer steps, or fewer members per batch (hydra.sweeper.max_batch_size=N)"
        )


def give_back_memory() -> None:
    """Return freed memory to the system: a cyclic collection, then glibc's ``malloc_trim`` (where there
    is one), so that what a sweep's jobs freed is not counted again under the summary's tables."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass
