"""A Hydra sweeper that runs grid points differing only in numbers as one batched job.

``python -m harness optimizer=adam problem=rosenbrock -m lr=0.001,0.01,0.1 seed=0,1`` expands,
as Hydra's BasicSweeper does, to the Cartesian product of the sweep overrides. Jobs whose
overrides differ only in numeric values of ``lr``, ``seed`` or ``optimizer.*`` form a
*group*: the group is composed once and handed to the launcher as one job whose config
carries the members (``+members=[[lr=0.001,seed=0], ...]``). The task runs them as one
batched tensor program and still logs one MLflow run per member. Anything else (another
problem, a torch.optim class, a boolean flag) makes separate groups, so nothing changes
for the user except speed.

Before anything runs, every group is validated, the tracking store is checked and the
sweep's parent run is created here, in the launching process.

The basic launcher runs groups one after another. Any other launcher (``hydra/launcher=joblib``,
``submitit_local``, ``submitit_slurm`` or the ``slurm`` preset) gets every group at once and runs
them side by side; with ``hydra.launcher.n_jobs=N`` a sweep of fewer than N groups is split into
N, each still one batched program. Progress is then read from the store, where each group's runs
appear together when it ends, in whatever order groups finish.
"""

import gc
import hashlib
import json
import logging
import math
import os
import signal
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
    def __init__(self, max_batch_size: int | None = None, params=None):
        self.max_batch_size = max_batch_size
        self.params = dict(params or {})
        self.config: DictConfig | None = None
        self.launcher: Launcher | None = None
        self.hydra_context: HydraContext | None = None
        self.search: str | None = None  # the sampled search space, as the parent run's tag harness.search

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        self.hydra_context, self.config = hydra_context, config
        # Launchers log every job's overrides, here a list of all members: our progress line replaces it.
        for name in ("hydra._internal.core_plugins.basic_launcher", "hydra_plugins.hydra_joblib_launcher", "hydra_plugins.hydra_submitit_launcher"):
            logging.getLogger(name).setLevel(logging.WARNING)
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )
        # Any launcher but the basic one runs jobs side by side: hand it every group at once.
        self.parallel = type(self.launcher).__name__ != "BasicLauncher"

    def workers(self) -> int:
        """How many jobs the launcher runs at once, where its config says (joblib's n_jobs), else 1."""
        n = (self.config.hydra.get("launcher") or {}).get("n_jobs")
        if not isinstance(n, int) or n == 0:
            return 1
        return max(1, n if n > 0 else (os.cpu_count() or 1) + 1 + n)  # joblib: -1 = all cores, -2 = all but one

    # 1. expand the grid and group it -------------------------------------------------
    def groups(self, arguments: list[str]) -> list[tuple[list[str], list[list[str]]]]:
        """[(common overrides, [member overrides, ...]), ...] in grid order."""
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

        from harness.plan import _plain_number

        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        args = [f"{k}={v}" for k, v in self.params.items()] + list(arguments)
        grid, points = self.search_points(parser.parse_overrides(args))
        jobs = [job + point for job in BasicSweeper.split_arguments(grid, None)[0] for point in points]
        # each distinct override string parsed once (100,000 jobs share ~1,000 of them), and each
        # one's key and value read once
        one: dict[str, tuple[str, Any]] = {}
        for job in jobs:
            for text in job:
                if text not in one:
                    kv = _plain_number(text)  # lr=0.01 as Hydra's parser reads it, at a thousandth of its cost
                    if kv is None:
                        o = parser.parse_overrides([text])[0]
                        kv = (o.key_or_group, o.value())
                    one[text] = kv
        values: dict[str, list] = defaultdict(list)
        for key, value in one.values():
            values[key].append(value)
        batchable = {
            k
            for k, vs in values.items()
            if (k in BATCHABLE_KEYS or k.startswith(BATCHABLE_PREFIXES)) and all(_is_numeric(v) for v in vs)
        }
        self.varied = {k for k, vs in values.items() if len({str(v) for v in vs}) > 1}
        self.swept = sorted(k for k in self.varied if k not in ("problem", "optimizer"))
        in_member = {text: key in batchable for text, (key, _) in one.items()}
        grouped: dict[tuple, list[list[str]]] = {}
        for job in jobs:
            common = tuple(s for s in job if not in_member[s])
            member = [s for s in job if in_member[s]]
            grouped.setdefault(common, []).append(member)
        out = []
        size = self.max_batch_size or math.inf
        for common, members in grouped.items():
            for i in range(0, len(members), int(min(size, len(members)))):
                out.append((list(common), members[i : i + int(min(size, len(members)))]))
        return out

    def search_points(self, overrides: list) -> tuple[list, list[list[str]]]:
        """The grid overrides, and the sampled points of the ``interval(a, b)`` ones (harness/search.py):
        one override list per trial, crossed with every grid point; [[]] without intervals."""
        from hydra.core.override_parser.types import IntervalSweep

        spaces = [o for o in overrides if isinstance(o.value(), IntervalSweep)]
        if not spaces:
            return overrides, [[]]
        from harness.search import Interval, sample

        search = self.config.get("search") or {}
        intervals = [Interval(o.key_or_group, float(o.value().start), float(o.value().end), "log" in o.value().tags) for o in spaces]
        grid = [o for o in overrides if not isinstance(o.value(), IntervalSweep)]
        points = sample(intervals, search.get("trials"), search.get("seed", 0))
        self.search = "; ".join(i.spelled() for i in intervals) + f"; {len(points)} Sobol trials, seed {search.get('seed', 0)}"
        return grid, points

    def search_tag(self) -> dict[str, str]:
        return {"harness.search": self.search} if self.search else {}

    def job_overrides(self, common: list[str], members: list[list[str]], extra: list[str], index: int) -> list[str]:
        """A batched job's overrides: its common ones, and ``+members=<file>``, a JSON file in the sweep
        directory that lists the members' overrides (Hydra's parser would take ~1 s for 2,000 of them)."""
        import hashlib
        import json
        from pathlib import Path

        folder = Path(str(self.config.hydra.sweep.dir)).resolve() / ".members"
        folder.mkdir(parents=True, exist_ok=True)
        text = json.dumps(members)
        # named by content: sweeps started in the same second share Hydra's sweep directory
        path = folder / f"job{index}-{hashlib.sha256(text.encode()).hexdigest()[:16]}.json"
        part = path.with_name(f".{path.name}.{os.getpid()}")
        part.write_text(text)
        os.replace(part, path)
        return list(common) + extra + [f"+members={_quote(str(path))}"]

    @staticmethod
    def collect(groups, returns: Sequence[JobReturn], results: dict) -> list:
        """Add the tallies of finished jobs (``{"runs": n, "diverged": k}``, ``harness.job.tally``) to
        ``results``; return [(group, error), ...] of failed ones."""
        from hydra.core.utils import JobStatus

        failed = []
        for group, r in zip(groups, returns):
            if r.status == JobStatus.FAILED:
                e = r._return_value
                if _interrupted(e):
                    raise KeyboardInterrupt from e
                failed.append((group, e))
            else:
                for k, v in r.return_value.items():
                    results[k] = results.get(k, 0) + v
        return failed

    # 2. validate everything, then run group by group ----------------------------------
    def sweep(self, arguments: list[str]) -> Any:
        from harness.interrupts import deferred_interrupts
        from harness.plan import batches
        from harness.store import (
            CODE_FILES,
            Tracker,
            check_reachable,
            experiment_name,
            resolve_uri,
            shown_uri,
        )
        from optimizers.base import ConfigError

        signal.signal(signal.SIGTERM, _terminate)  # a scheduler's time limit ends the sweep like Ctrl-C
        t_start = time.perf_counter()
        uri = resolve_uri(self.config.tracking.uri)
        shown = shown_uri(uri)
        groups: list = []
        state = Validated()
        collecting = gc.isenabled()  # validation builds ~10 containers a member and frees none of them:
        gc.disable()  # the cyclic collector would rescan every live object (torch's too) ~100 times for nothing
        try:
            groups = self.groups(arguments)
            for common, members in groups:
                cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(common))
                with open_dict(cfg):
                    del cfg["hydra"]
                state.add(members, batches(cfg, members))
            check_reachable(uri)
            tracker = Tracker(uri, experiment_name(self.config.tracking.experiment))
            total = sum(len(m) for _, m in groups)
        except ConfigError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        except Exception as e:
            if _interrupted(e):  # Ctrl-C inside composition can surface as a secondary error
                _stop("interrupted while validating: nothing was stored")
            raise
        except KeyboardInterrupt:
            _stop("interrupted while validating: nothing was stored")
        finally:
            if collecting:
                gc.enable()
                gc.collect()  # what validation left in cycles (its batches' problems), before the runs: ~100 MB of peak
        log.info(f"Sweep: {total} runs in {len(groups)} batched job(s); validated in {time.perf_counter() - t_start:.1f} s")

        code_files = json.dumps(state.code_files(), sort_keys=True)
        sweep_hash = hashlib.sha256("\n".join(sorted(state.all_hashes())).encode()).hexdigest()[:20]
        parent = tracker.find_sweep(sweep_hash) if self.config.tracking.get("resume", True) else None
        resumed = None
        if parent is not None:  # the same sweep ran before: run only the members not stored yet, or stored from other code
            stored = tracker.stored_hashes(parent)
            todo = state.todo(stored)  # per group: its members not stored from the current code
            groups = [(c, [m for m, t in zip(ms, flags) if t]) for (c, ms), flags in zip(groups, todo)]
            groups = [(c, ms) for c, ms in groups if ms]
            if not groups:
                print(f"Sweep already complete: all {total} runs are stored under parent run {parent} in {shown}; nothing to run "
                      "(tracking.resume=false starts a fresh sweep).")
                return []
            stale = state.stale(stored, todo)  # the code files of each member stored from other code
            resumed = resume_line(parent, total, total - sum(len(ms) for _, ms in groups), stale, json.loads(tracker.tags_of(parent).get(CODE_FILES) or "{}"))
        todo = sum(len(m) for _, m in groups)
        workers = self.workers()
        if workers > len(groups):
            groups = split(groups, workers)
            log.info(f"Split into {len(groups)} batched jobs for {workers} workers")
        status, results, failed = "FAILED", {"runs": 0, "diverged": 0}, []
        before = total - todo
        try:
            try:
                with deferred_interrupts():  # the parent is RUNNING only inside this try, whose finally ends it
                    parent = self.open_parent(tracker, parent, resumed, total, sweep_hash, code_files)
                extra = [f"tracking.uri={_quote(uri)}", f"+tracking.parent_run_id={parent}", "+tracking.swept=[" + ",".join(_quote(k) for k in self.swept) + "]"]
                os.environ["HARNESS_SWEEP_PID"] = str(os.getpid())  # workers end with this process (harness/__main__.py)
                if self.parallel:  # every group at once; progress comes from the store
                    batch = [self.job_overrides(c, m, extra, i) for i, (c, m) in enumerate(groups)]
                    with Progress(tracker, parent, before, todo):
                        returns: Sequence[JobReturn] = self.launcher.launch(batch, initial_job_idx=0)
                    failed = self.collect(groups, returns, results)
                else:
                    done, t0 = 0, time.perf_counter()
                    for i, (common, members) in enumerate(groups):
                        job = [self.job_overrides(common, members, extra, i)]
                        failed += self.collect([(common, members)], self.launcher.launch(job, initial_job_idx=i), results)
                        done += len(members)
                        el = time.perf_counter() - t0
                        eta = el / done * (todo - done)
                        div = results["diverged"]
                        log.info(f"[{done}/{todo} runs] {i + 1}/{len(groups)} jobs, {div} diverged, {el:.1f} s elapsed, ETA {eta:.1f} s")
                status = "FAILED" if failed else "FINISHED"
            except KeyboardInterrupt:
                status = "KILLED"
            except Exception as e:
                if not _interrupted(e):
                    raise
                status = "KILLED"
            finally:
                if parent is not None:
                    with deferred_interrupts():  # the status is written whole; a Ctrl-C meanwhile is raised after it
                        tracker.end(parent, status)
        except KeyboardInterrupt:  # once the parent's status was written
            if status == "FINISHED":
                _stop(f"interrupted: all {total} runs are stored under sweep {parent} in {shown}; the summary and more: {self.report_command(uri)}")
            status = "KILLED"
        if status != "FINISHED":
            n = len(tracker.stored_hashes(parent) & state.member_keys())
            where = f"{n} of {total} runs are stored under sweep {parent} in {shown}"
            if status == "KILLED":
                _stop(f"interrupted: {where}; run the same command again to resume")
            (common, members), e = failed[0]
            what = " ".join(o for o in common if o.lstrip("+~").split("=", 1)[0] in self.varied) or "the sweep"
            more = f" (and {len(failed) - 1} more batched job(s))" if len(failed) > 1 else ""
            print(f"error: a batched job of {len(members)} runs failed ({what}){more}: {type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}; "
                  f"{where}; run the same command again to run the missing ones", file=sys.stderr)
            sys.exit(1)
        from harness.limits import give_back_memory
        from harness.summary import sweep_summary

        del state, groups  # the members' validation state: 1,000,000 members hold ~200 MB
        try:  # every run is stored by now: a Ctrl-C here (a million runs take a minute to summarise) loses nothing
            give_back_memory()
            text = sweep_summary(uri, tracker.experiment_name, tracker.experiment_id, parent, time.perf_counter() - t_start, total)
        except KeyboardInterrupt:
            _stop(f"interrupted: all {total} runs are stored under sweep {parent} in {shown}; the summary and more: {self.report_command(uri)}")
        print(text.replace("python -m harness.report", self.report_command(uri)))
        return results

    @staticmethod
    def report_command(uri: str) -> str:
        from harness.store import resolve_uri

        return "python -m harness.report" + ("" if uri == resolve_uri(None) else f" --uri {uri}")

    def open_parent(self, tracker, parent: str | None, resumed: str | None, total: int, sweep_hash: str, code_files: str) -> str:
        """The sweep's parent run, RUNNING: ``parent`` reopened (``resumed``: the line saying what reruns), or a new one."""
        from harness.provenance import tags as provenance
        from harness.store import CODE_FILES, SWEEP_HASH

        if parent is not None:
            tracker.reopen(parent)
            tracker.set_tags(parent, {CODE_FILES: code_files, **provenance(), **self.search_tag()})
            log.info(resumed)
            return parent
        name = f"sweep {time.strftime('%Y-%m-%d %H:%M:%S')} ({total} runs)"
        return tracker.start_parent(name, {"harness.sweep": "true", "harness.runs": str(total), SWEEP_HASH: sweep_hash,
                                           CODE_FILES: code_files, **provenance(), **self.search_tag()})


def resume_line(parent: str, total: int, kept: int, stale: list[dict], old_files: dict) -> str:
    """What a resumed sweep reruns and why: members not stored yet, and members stored from other code
    ("optimizers/adam.py changed since the stored runs: 2 runs to rerun"); ``stale``: the code files of
    each member to rerun for that reason."""
    from harness.fingerprint import changed

    parts = [f"Resuming sweep {parent}: {kept} of {total} runs stored from the current code"]
    missing = total - kept - len(stale)
    if stale:
        runs = f"{len(stale)} run{'s' * (len(stale) != 1)} to rerun"
        if not old_files:  # stored by a harness that recorded no fingerprint
            parts.append(f"the stored runs record no code fingerprint (an older harness): {runs}")
        else:
            names = changed(old_files, {k: v for f in stale for k, v in f.items()}, {n for f in stale for n in f})
            parts.append(", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "") + f" changed since the stored runs: {runs}")
    if missing:
        parts.append(f"{missing} run{'s' * (missing != 1)} not stored yet")
    return "; ".join(parts)


class Validated:
    """What validation learnt of each member, kept per group in the group's member order: its config
    hash and its batch's code (hash and files, shared by the batch). Lists, not dicts keyed by the
    overrides: a million members fit in ~100 MB."""

    def __init__(self):
        self.hashes: list[list[str]] = []
        self.codes: list[list[tuple[str, dict]]] = []

    def add(self, members: list[list[str]], built) -> None:
        """One group's ``members`` and its ``built`` batches (``plan.batches``: each yields its members' override lists)."""
        at: dict[int, list[int]] = {}
        for i, m in enumerate(members):
            at.setdefault(id(m), []).append(i)
        hashes, codes = [""] * len(members), [("", {})] * len(members)
        for b, ovs in built:
            code = (b.code_hash, b.code)
            for ov, h in zip(ovs, b.hashes):
                i = at[id(ov)].pop(0)
                hashes[i], codes[i] = h, code
        self.hashes.append(hashes)
        self.codes.append(codes)

    def all_hashes(self):
        return (h for hs in self.hashes for h in hs)

    def code_files(self) -> dict:
        files = {id(f): f for cs in self.codes for _, f in cs}
        return {k: v for f in files.values() for k, v in f.items()}

    def member_keys(self) -> set[str]:
        """:func:`harness.store.member_key` of every member: configuration and code."""
        from harness.store import member_key

        return {member_key(h, c) for hs, cs in zip(self.hashes, self.codes) for h, (c, _) in zip(hs, cs)}

    def todo(self, stored: set[str]) -> list[list[bool]]:
        """Per group, per member: not among the ``stored`` member keys."""
        from harness.store import member_key

        return [[member_key(h, c) not in stored for h, (c, _) in zip(hs, cs)] for hs, cs in zip(self.hashes, self.codes)]

    def stale(self, stored: set[str], todo: list[list[bool]]) -> list[dict]:
        """The code files of each member to run whose configuration is stored, from other code."""
        configs = {s.split("/", 1)[0] for s in stored}
        return [f for hs, cs, ts in zip(self.hashes, self.codes, todo) for h, (_, f), t in zip(hs, cs, ts) if t and h in configs]


def split(groups: list[tuple[list[str], list[list[str]]]], workers: int) -> list[tuple[list[str], list[list[str]]]]:
    """Halve the largest group until there are at least ``workers`` groups (or every group has one
    member), so that no worker idles; each part is still one batched program."""
    groups = list(groups)
    while len(groups) < workers:
        i = max(range(len(groups)), key=lambda j: len(groups[j][1]), default=None)
        if i is None or len(groups[i][1]) < 2:
            break
        common, members = groups[i]
        half = (len(members) + 1) // 2
        groups[i : i + 1] = [(common, members[:half]), (common, members[half:])]
    return groups


class Progress:
    """Progress of a parallel launch, read from the store: the finished member runs under the sweep's
    parent, counted every ``every`` seconds in a thread, so groups may finish in any order."""

    def __init__(self, tracker, parent: str, before: int, todo: int, every: float = 1.0):
        import threading

        self.tracker, self.parent, self.before, self.todo, self.every = tracker, parent, before, todo, every
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.t0 = time.perf_counter()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, kind, *exc):
        self.stop.set()
        self.thread.join()
        if kind is None:
            self.tick()

    def run(self) -> None:
        while not self.stop.wait(self.every):
            self.tick()

    shown = 0

    def tick(self) -> None:
        try:
            done = len(self.tracker.stored_hashes(self.parent)) - self.before
        except Exception:  # a writer holds the store's lock: ask again next time
            return
        if done > self.shown:
            self.shown = done
            el = time.perf_counter() - self.t0
            log.info(f"[{done}/{self.todo} runs] {el:.1f} s elapsed, ETA {el / done * (self.todo - done):.1f} s")


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled as Ctrl-C."""


def _terminate(signum, frame):
    raise Terminated()


def _interrupted(e: BaseException) -> bool:
    """Whether ``e`` is, or was raised while handling, a Ctrl-C or SIGTERM."""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, KeyboardInterrupt):
            return True
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return False


def _stop(line: str) -> None:
    """End the process after an interrupt: one line, exit code 130, no traceback."""
    print(line, file=sys.stderr)
    sys.exit(130)
