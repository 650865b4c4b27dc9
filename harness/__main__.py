"""Command line: ``python -m harness [overrides] [-m sweep overrides]``."""

from __future__ import annotations

import logging
import sys

import hydra
from omegaconf import DictConfig

from optimizers.base import ConfigError

log = logging.getLogger("harness")


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> list[dict]:
    from harness.job import run_job

    try:
        out = run_job(cfg)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    if cfg.get("members") is None and cfg.tracking.parent_run_id is None:
        for r in out:
            sub = r.get("final_suboptimality", r["final_loss"])
            log.info(f"{r['name']}: {r['stop_reason']} after {int(r['steps'])} steps, final {'f - f*' if 'final_suboptimality' in r else 'loss'} {sub:.3e} (run {r['run_id']})")
    return out


def _flags_first(argv: list[str]) -> list[str]:
    """Hydra's argparse stops reading overrides at the first flag, so
    ``python -m harness optimizer=adam -m lr=0.1,1`` would lose ``lr``: move -m/--multirun
    in front of the overrides (their order among themselves is kept)."""
    flags = [a for a in argv if a in ("-m", "--multirun")]
    return flags + [a for a in argv if a not in ("-m", "--multirun")]


if __name__ == "__main__":
    sys.argv[1:] = _flags_first(sys.argv[1:])
    from harness.overrides import preflight

    try:
        preflight(sys.argv[1:])
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    try:
        main()
    except KeyboardInterrupt:  # a single run writes its run only once it has finished
        print("interrupted: nothing was stored", file=sys.stderr)
        sys.exit(130)
