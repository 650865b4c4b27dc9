"""Command line: ``python -m harness [overrides] [-m sweep overrides]``."""

from __future__ import annotations

import os
import signal
import sys


def _stopped_while_starting(signum, frame) -> None:
    """Ctrl-C or SIGTERM while Python imports torch, Hydra and MLflow: nothing exists yet."""
    print("interrupted: nothing was stored", file=sys.stderr)
    os._exit(130)


if __name__ == "__main__":  # until the imports below are done (the sweeper and main() take over then)
    signal.signal(signal.SIGINT, _stopped_while_starting)
    signal.signal(signal.SIGTERM, _stopped_while_starting)

import logging  # noqa: E402

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from harness import CONF  # noqa: E402
from optimizers.base import ConfigError  # noqa: E402

log = logging.getLogger("harness")


@hydra.main(version_base="1.3", config_path=str(CONF), config_name="config")
def main(cfg: DictConfig) -> list[dict] | dict:
    """A single run's result rows; for a sweep's job, the tally its sweep counts (not a row per member)."""
    from harness.job import job_rows, run_job, tally

    _end_with_the_sweep()
    try:
        if cfg.tracking.get("parent_run_id") is not None:
            return tally(job_rows(cfg))
        out = run_job(cfg)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    if cfg.get("members") is None:
        for r in out:
            sub = r.get("final_suboptimality", r["final_loss"])
            log.info(f"{r['name']}: {r['stop_reason']} after {int(r['steps'])} steps, final {'f - f*' if 'final_suboptimality' in r else 'loss'} {sub:.3e} (run {r['run_id']})")
    return out


def _end_with_the_sweep() -> None:
    """In a worker process of a parallel launcher (joblib, submitit_local), have the kernel kill this
    process when the sweep's process dies, even by ``kill -9``: otherwise the worker would go on
    running the groups already handed to it, unattended. Ctrl-C is left to the sweep's process."""
    pid = os.environ.get("HARNESS_SWEEP_PID")
    if not pid or not sys.platform.startswith("linux") or os.getppid() != int(pid):
        return
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != int(pid):  # the sweep died before the call
        os._exit(1)
    # Ctrl-C reaches every process of the terminal's foreground group; the sweep's process answers it
    # (one line, parent run KILLED) and ends its workers. A worker must not print a traceback of its
    # own, including between two jobs, so it ignores SIGINT from its first job on.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _flags_first(argv: list[str]) -> list[str]:
    """Hydra's argparse stops reading overrides at the first flag, so
    ``python -m harness optimizer=adam -m lr=0.1,1`` would lose ``lr``: move -m/--multirun
    in front of the overrides (their order among themselves is kept)."""
    flags = [a for a in argv if a in ("-m", "--multirun")]
    return flags + [a for a in argv if a not in ("-m", "--multirun")]


def cli(argv: list[str]) -> None:
    """``python -m harness ARGV``: the checks on the command line, then Hydra. Exits 2 with one line on
    bad input. Callable in-process (the tests do): it leaves the signal handlers as it found them."""
    from harness.composition import compose_once
    from harness.overrides import preflight

    argv = _flags_first(argv)
    try:
        preflight(argv)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _raise_interrupt)  # a sweep's own handler replaces it
    saved, sys.argv = sys.argv, [sys.argv[0], *argv]
    try:
        with compose_once():  # Hydra composes the config once, not once per look at it (harness/composition.py)
            main()
    except KeyboardInterrupt:  # a single run writes its run only once it has finished
        print("interrupted: nothing was stored", file=sys.stderr)
        sys.exit(130)
    finally:
        sys.argv = saved
        signal.signal(signal.SIGINT, handlers[0])
        signal.signal(signal.SIGTERM, handlers[1])


if __name__ == "__main__":
    import gc

    # What the imports above built (torch's and Hydra's modules: ~180,000 objects the cyclic collector
    # tracks) lives as long as the process. Frozen, no collection rescans it (70 ms each with torch
    # loaded): neither the sweep's nor the interpreter's passes at exit (~0.3 s of a run's wall time).
    gc.freeze()
    cli(sys.argv[1:])
