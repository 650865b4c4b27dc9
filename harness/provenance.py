"""What a report needs to reproduce a sweep: the command, package versions, the git commit."""

from __future__ import annotations

import shlex
import subprocess
import sys
from importlib import metadata
from pathlib import Path

PACKAGES = ("torch", "numpy", "hydra-core", "mlflow", "pandas", "matplotlib")
ROOT = Path(__file__).resolve().parent.parent


def command() -> str:
    return "python -m harness " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def versions() -> str:
    out = [f"python={sys.version.split()[0]}"]
    for p in PACKAGES:
        try:
            out.append(f"{p}={metadata.version(p)}")
        except metadata.PackageNotFoundError:
            pass
    return " ".join(out)


def git_commit() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (sha + ("+dirty" if dirty else "")) if sha else "unknown"


def tags() -> dict[str, str]:
    return {"harness.command": command()[:5000], "harness.versions": versions(), "harness.git_commit": git_commit()}
