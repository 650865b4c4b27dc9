"""The code that computes a member, as a fingerprint: an edited update rule reruns, an untouched one resumes.

As benchopt hashes each solver's source into its cache key, a member's fingerprint is the hash of the
source files that compute it:

1. the module that defines its optimizer (``optimizers/adam.py``, or ``torch/optim/nadam.py`` for a
   torch.optim class) and its problem class, every base class's module, and the modules those modules
   take names from within the same package tree (``optimizers/base.py``, ``problems/base.py``);
2. the engine every member runs through: the loop, its statistics and the lr schedules, plus the
   torch.optim drivers for a torch.optim class.

Files are named relative to the project (``optimizers/adam.py``) or to the installed package's
site directory (``torch/optim/nadam.py``), so a message can say which one changed.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENGINE = ("harness.runner", "harness.stats", "harness.schedules")
TORCH_DRIVERS = ("harness.job", "optimizers.torch_batched")


@functools.cache
def file_hash(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def _module_file(module) -> Path | None:
    try:
        f = inspect.getsourcefile(module)
    except TypeError:  # a built-in module
        return None
    return Path(f).resolve() if f else None


def _installed(path: Path) -> Path | None:
    """The site directory holding an installed module's file, or None for the project's own files."""
    homes = [Path(p).resolve() for p in sys.path if p and "-packages" in p and path.is_relative_to(Path(p).resolve())]
    return max(homes, key=lambda h: len(h.parts)) if homes else None


def _name(path: Path) -> str:
    home = _installed(path) or (ROOT if path.is_relative_to(ROOT) else path.parent)
    return str(path.relative_to(home))


def _modules_of(obj) -> list:
    """The modules defining ``obj`` (a class: every class in its MRO but ``object``)."""
    objs = [c for c in obj.__mro__ if c is not object] if inspect.isclass(obj) else [obj]
    mods = [sys.modules.get(getattr(o, "__module__", "")) for o in objs]
    return [m for m in dict.fromkeys(mods) if m is not None]


@functools.cache
def _files_of_module(name: str) -> tuple[Path, ...]:
    """A module's file and, for the project's own modules (not installed packages), the files of the
    project modules it takes names from (``optimizers/base.py`` for ``optimizers/adam.py``)."""
    module = sys.modules[name]
    own = _module_file(module)
    if own is None:
        return ()
    files = [own]
    if _installed(own) is not None or not own.is_relative_to(ROOT):
        return tuple(files)
    for value in vars(module).values():
        src = value if inspect.ismodule(value) else sys.modules.get(getattr(value, "__module__", None) or "")
        f = _module_file(src) if src is not None and src is not module and inspect.ismodule(src) else None
        if f is not None and f.is_relative_to(ROOT) and _installed(f) is None and f not in files:
            files.append(f)
    return tuple(files)


def source_files(*objs) -> list[Path]:
    """Every source file that computes a member whose optimizer and problem are ``objs``."""
    import importlib

    files: list[Path] = []
    for m in (m for o in objs for m in _modules_of(o)):
        files += [f for f in _files_of_module(m.__name__) if f not in files]
    engine = ENGINE + (TORCH_DRIVERS if any(inspect.isclass(o) and _is_torch_optimizer(o) for o in objs) else ())
    for n in engine:
        f = _module_file(importlib.import_module(n))
        if f is not None and f not in files:
            files.append(f)
    return files


def _is_torch_optimizer(cls) -> bool:
    import torch

    return issubclass(cls, torch.optim.Optimizer)


def fingerprint(*objs) -> dict[str, str]:
    """{file name: content hash} of the code computing a member (see the module docstring)."""
    return {_name(f): file_hash(str(f)) for f in source_files(*objs)}


def code_hash(files: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()[:20]


def changed(old: dict[str, str], new: dict[str, str], among: set[str] | None = None) -> list[str]:
    """Files whose content differs between two fingerprints (or that one of them lacks)."""
    names = sorted((set(old) | set(new)) if among is None else among)
    return [n for n in names if old.get(n) != new.get(n)]
