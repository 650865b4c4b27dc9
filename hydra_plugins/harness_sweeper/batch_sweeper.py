"""A Hydra sweeper that runs grid points differing only in numbers as one batched job.

``python -m harness optimizer=adam problem=rosenbrock -m lr=0.001,0.01,0.1 seed=0,1`` expands,
as Hydra's BasicSweeper does, to the Cartesian product of the sweep overrides. Jobs whose
overrides differ only in numeric values of ``lr``, ``seed`` or ``optimizer.*`` form a
*group*: the group is composed once and handed to the launcher as one job whose config
carries the members (``members=[[lr=0.001,seed=0], ...]``). The task runs them as one
batched tensor program and still logs one MLflow run per member. Anything else (another
problem, a torch.optim class, a boolean flag) makes separate groups, so nothing changes
for the user except speed.

Before anything runs, every group is validated, the tracking store is checked and the
sweep's parent run is created here, in the launching process.
"""



import logging
import math
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, open_dict

log = logging.getLogger("harness")

BATCHABLE_PREFIXES = ("optimizer.",)
BATCHABLE_KEYS = ("lr", "seed")


@dataclass
class BatchSweeperConf:
    _target_: str = "hydra_plugins.harness_sweeper.batch_sweeper.BatchSweeper"
    max_batch_size: int | None = None  # most members per batched job (None: no limit)
    groups_per_launch: int = 1  # groups handed to the launcher at once (raise for parallel launchers)
    params: dict[str, str] | None = None  # sweep overrides from config, as BasicSweeper's


ConfigStore.instance().store(group="hydra/sweeper", name="batch", node=BatchSweeperConf, provider="harness")


def _is_numeric(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True
    return isinstance(value, list) and bool(value) and all(_is_numeric(v) for v in value)


def _quote(s: str) -> str:
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


class BatchSweeper(Sweeper):
    def __init__(self, max_batch_size: int | None = None, groups_per_launch: int = 1, params=None):
        self.max_batch_size = max_batch_size
        self.groups_per_launch = max(1, int(groups_per_launch))
        self.params = dict(params or {})
        self.config: DictConfig | None = None
        self.launcher: Launcher | None = None
        self.hydra_context: HydraContext | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        self.hydra_context, self.config = hydra_context, config
        # BasicLauncher logs every job's overrides, here a list of all members: our progress line replaces it.
        logging.getLogger("hydra._internal.core_plugins.basic_launcher").setLevel(logging.WARNING)
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    # 1. expand the grid and group it -------------------------------------------------
    def groups(self, arguments: list[str]) -> list[tuple[list[str], list[list[str]]]]:
        """[(common overrides, [member overrides, ...]), ...] in grid order."""
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        args = [f"{k}={v}" for k, v in self.params.items()] + list(arguments)
        jobs = BasicSweeper.split_arguments(parser.parse_overrides(args), None)[0]
        values: dict[str, list] = defaultdict(list)
        parsed = [parser.parse_overrides(job) for job in jobs]
        for job in parsed:
            for o in job:
                values[o.key_or_group].append(o.value())
        batchable = {
            k
            for k, vs in values.items()
            if (k in BATCHABLE_KEYS or k.startswith(BATCHABLE_PREFIXES)) and all(_is_numeric(v) for v in vs)
        }
        grouped: dict[tuple, list[list[str]]] = {}
        for job, overrides in zip(parsed, jobs):
            common = tuple(s for o, s in zip(job, overrides) if o.key_or_group not in batchable)
            member = [s for o, s in zip(job, overrides) if o.key_or_group in batchable]
            grouped.setdefault(common, []).append(member)
        out = []
        size = self.max_batch_size or math.inf
        for common, members in grouped.items():
            for i in range(0, len(members), int(min(size, len(members)))):
                out.append((list(common), members[i : i + int(min(size, len(members)))]))
        return out

    @staticmethod
    def job_overrides(common: list[str], members: list[list[str]], extra: list[str]) -> list[str]:
        encoded = "[" + ",".join("[" + ",".join(_quote(m) for m in mem) + "]" for mem in members) + "]"
        return list(common) + extra + [f"members={encoded}"]

    # 2. validate everything, then run group by group ----------------------------------
    def sweep(self, arguments: list[str]) -> Any:
        from harness.plan import plan
        from harness.tracking import Tracker, check_reachable, experiment_name, resolve_uri
        from optimizers.base import ConfigError

        t_start = time.perf_counter()
        uri = resolve_uri(self.config.tracking.uri)
        groups = self.groups(arguments)
        total = sum(len(m) for _, m in groups)
        try:
            for common, members in groups:
                cfg = self.hydra_context.config_loader.load_sweep_config(
                    self.config, self.job_overrides(common, members, [])
                )
                with open_dict(cfg):
                    del cfg["hydra"]
                plan(cfg)
            check_reachable(uri)
            tracker = Tracker(uri, experiment_name(self.config.tracking.experiment))
        except ConfigError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        log.info(f"Sweep: {total} runs in {len(groups)} batched job(s); validated in {time.perf_counter() - t_start:.1f} s")

        name = f"sweep {time.strftime('%Y-%m-%d %H:%M:%S')} ({total} runs)"
        from harness.provenance import tags as provenance

        parent = tracker.start_parent(name, {"harness.sweep": "true", "harness.runs": str(total), **provenance()})
        extra = [f"tracking.uri={_quote(uri)}", f"tracking.parent_run_id={parent}"]
        status, results = "FAILED", []
        try:
            done, t0 = 0, time.perf_counter()
            for i in range(0, len(groups), self.groups_per_launch):
                chunk = groups[i : i + self.groups_per_launch]
                batch = [self.job_overrides(c, m, extra) for c, m in chunk]
                returns: Sequence[JobReturn] = self.launcher.launch(batch, initial_job_idx=i)
                for r in returns:
                    results.extend(r.return_value)  # raises if the job failed
                done += sum(len(m) for _, m in chunk)
                el = time.perf_counter() - t0
                eta = el / done * (total - done)
                div = sum(int(r.get("diverged", 0)) for r in results)
                log.info(f"[{done}/{total} runs] {min(i + len(chunk), len(groups))}/{len(groups)} jobs, {div} diverged, {el:.1f} s elapsed, ETA {eta:.1f} s")
            status = "FINISHED"
        except KeyboardInterrupt:
            status = "KILLED"
            raise
        finally:
            tracker.end(parent, status)
        print(summary(results, uri, tracker.experiment_id, parent, time.perf_counter() - t_start))
        return results


def summary(results: list[dict], uri: str, experiment_id: str, parent: str, seconds: float) -> str:
    """One screen: runs, divergences, the best learning rate per problem and optimizer, where to look."""
    by: dict[tuple, dict[float, list]] = defaultdict(lambda: defaultdict(list))
    for r in results:
        by[(r["problem"], r["optimizer"])][r["lr"]].append(r)
    n_div = sum(int(r["diverged"]) for r in results)
    lines = [f"\nSweep done: {len(results)} runs in {seconds:.1f} s, {n_div} diverged.", ""]
    lines.append(f"{'problem':<20} {'optimizer':<10} {'best lr':>9} {'median final':>13} {'diverged':>9} {'global min':>11}")
    for (prob, opt), lrs in sorted(by.items()):
        def score(rs):
            vals = [r.get("final_suboptimality", r["final_loss"]) for r in rs]
            vals = [v if not r["diverged"] and math.isfinite(v) else math.inf for v, r in zip(vals, rs)]
            return statistics.median(vals)

        def rank(lr, lrs=lrs):  # as the report: lowest median; among solved ones (<= 1e-12), fewest steps to 1e-6
            steps = [r.get("steps_to_1e-06", math.inf) for r in lrs[lr]]
            sc = score(lrs[lr])
            return (0.0 if sc <= 1e-12 else sc, statistics.median(steps), lr)

        best = min(lrs, key=rank)
        n = sum(len(v) for v in lrs.values())
        d = sum(int(r["diverged"]) for v in lrs.values() for r in v)
        glob = sum(int(r.get("global_min_reached", 0)) for r in lrs[best])
        lines.append(f"{prob:<20} {opt:<10} {best:>9.3g} {score(lrs[best]):>13.3e} {d:>4}/{n:<4} {glob:>5}/{len(lrs[best]):<5}")
    import os

    shown = uri.replace("sqlite:///" + os.getcwd() + "/", "sqlite:///")  # relative when in the launch dir
    ui = f"open {uri}" if uri.startswith("http") else f"mlflow ui --backend-store-uri {shown}  (then open http://127.0.0.1:5000)"
    lines += ["", "final = median f - f* (loss when f* is unknown) at the best lr; global min = runs at the best lr that"]
    lines += ["ended at a global minimum; diverged counts all lrs.", f"Runs: experiment {experiment_id}, parent run {parent} in {shown if not uri.startswith('http') else uri}", f"Browse: {ui}"]
    return "\n".join(lines)
