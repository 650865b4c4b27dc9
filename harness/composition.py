"""Hydra composes the config once per command, not once per look at it.

For one command line, Hydra composes the whole config (the defaults list: ~60 config files read and
merged, ~60 ms) several times: once to read ``hydra.mode`` (``Hydra.get_mode``), once for the run or the
sweep, and for a sweep once per batched job in the sweeper (to validate it) and once more per job in the
launcher (its config, with ``+members=...`` and the tracking keys). Each later composition differs from an
earlier one only by overrides that a composition applies last, one by one, to the composed config: config
overrides appended after the earlier ones (``hydra.mode=RUN``, a job's ``+members``), or sweep overrides,
which a composition skips.

:class:`ComposeOnce` (Hydra's config loader, installed by :func:`compose_once` while ``python -m harness``
runs) makes such a composition from the earlier one: a copy, the appended overrides applied by Hydra's own
code, then what Hydra computes from the override list redone (``hydra.overrides``,
``hydra.job.override_dirname``, ``hydra.runtime.cwd``, ``hydra.job.env_set``). That is the config Hydra's
composition returns. Anything else (another config group choice, a search path, a ``hydra.*`` setting other
than ``hydra.mode``, a config group left ``???``) is composed from the files as before.
"""

from __future__ import annotations

import copy
import os
from contextlib import contextmanager
from dataclasses import dataclass

from hydra._internal.config_loader_impl import ConfigLoaderImpl, get_overrides_dirname
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict

HYDRA = "1.3.8"  # the version whose composition ComposeOnce follows (_load_configuration_impl, after the overrides)
KEEP = 16  # compositions from the files kept to start from (the first one, the command's, is always kept)


@dataclass
class _Composed:
    config_name: str | None
    hydra_lines: list[tuple]  # what the applied hydra.* overrides do (sweeps skipped), in order (_effect)
    task_lines: list[tuple]  # what the applied task overrides do, in order
    listed: tuple[int, int]  # how many lines the composition appended to hydra.overrides.hydra / .task
    cfg: DictConfig  # a copy no caller holds
    repo: object  # the composition's config repository (which keys are config groups)
    missing: bool = False  # a config group left ???: a multirun composition skips it, a run's fails on it

    def __post_init__(self) -> None:
        choices = self.cfg.hydra.runtime.choices
        self.missing = any(OmegaConf.is_missing(choices, k) for k in choices)


def _applied(parsed: list[Override]) -> tuple[list[tuple], list[tuple]]:
    """What each applied override does, hydra.* and task ones apart (sweeps are skipped by a composition)."""
    hydra = [_effect(o) for o in parsed if not o.is_sweep_override() and o.is_hydra_override()]
    task = [_effect(o) for o in parsed if not o.is_sweep_override() and not o.is_hydra_override()]
    return hydra, task


def _effect(o: Override) -> tuple:
    """An override as its key (with its +, ++ or ~ and its @package) and its value, types included: the same for
    ``uri=sqlite:///x`` and the sweeper's ``uri=sqlite\\:///x``, different for ``x=1`` and ``x=1.0``."""
    return o.get_key_element(), _typed(o.value())


def _typed(v):
    if isinstance(v, dict):
        return ("dict", tuple((_typed(k), _typed(x)) for k, x in v.items()))
    if isinstance(v, list):
        return ("list", tuple(_typed(x) for x in v))
    return (type(v).__name__, v)


class ComposeOnce(ConfigLoaderImpl):
    """Hydra's config loader, making a composition from an earlier one where that gives the same config."""

    def __init__(self, config_search_path) -> None:
        super().__init__(config_search_path=config_search_path)
        self._composed: list[_Composed] = []
        self._repo = None
        self.composed = self.derived = 0  # compositions from the files / made from an earlier one

    def __getstate__(self) -> dict:  # a launcher's worker gets the loader without the kept configs
        state = dict(self.__dict__)
        state.update(_composed=[], _repo=None)
        return state

    def _parse_overrides_and_create_caching_repo(self, config_name, overrides):
        parsed, self._repo = super()._parse_overrides_and_create_caching_repo(config_name, overrides)  # which keys are groups
        return parsed, self._repo

    def _load_configuration_impl(self, config_name, overrides, run_mode: RunMode, from_shell: bool = True,
                                 validate_sweep_overrides: bool = True) -> DictConfig:
        def compose() -> DictConfig:
            return super(ComposeOnce, self)._load_configuration_impl(config_name=config_name, overrides=overrides, run_mode=run_mode,
                                                                     from_shell=from_shell, validate_sweep_overrides=validate_sweep_overrides)

        try:
            parsed = OverridesParser.create().parse_overrides(overrides=list(overrides))
        except Exception:
            return compose()  # Hydra reports it, after what it checks first
        hydra_lines, task_lines = _applied(parsed)
        found = self._start(config_name, hydra_lines, task_lines, parsed)
        if found is None:
            cfg = compose()
            self.composed += 1
            self._keep(_Composed(config_name, hydra_lines, task_lines, _listed(parsed), copy.deepcopy(cfg), self._repo))
            return cfg
        base, extra = found
        if validate_sweep_overrides:
            self.validate_sweep_overrides_legal(overrides=parsed, run_mode=run_mode, from_shell=from_shell)
        cfg = copy.deepcopy(base.cfg)
        OmegaConf.clear_cache(cfg)  # a composition resolves ${now:...} afresh
        ConfigLoaderImpl._apply_overrides_to_config(extra, cfg)
        # what Hydra's composition computes from the override list, after applying it
        hydra_all = [o.input_line for o in parsed if o.is_hydra_override()]
        task_all = [o.input_line for o in parsed if not o.is_hydra_override()]
        cfg.hydra.overrides.hydra = list(cfg.hydra.overrides.hydra)[: len(cfg.hydra.overrides.hydra) - base.listed[0]] + hydra_all
        cfg.hydra.overrides.task = list(cfg.hydra.overrides.task)[: len(cfg.hydra.overrides.task) - base.listed[1]] + task_all
        with open_dict(cfg.hydra):
            for key in cfg.hydra.job.env_copy:
                cfg.hydra.job.env_set[key] = os.environ[key]
        cfg.hydra.runtime.cwd = os.getcwd()
        names = cfg.hydra.job.config.override_dirname
        cfg.hydra.job.override_dirname = get_overrides_dirname(overrides=[o for o in parsed if not o.is_hydra_override()],
                                                               kv_sep=names.kv_sep, item_sep=names.item_sep, exclude_keys=names.exclude_keys)
        self.derived += 1  # not kept: a later composition is made from ``base`` as well, to the same config
        return cfg

    def _start(self, config_name, hydra_lines: list[tuple], task_lines: list[tuple], parsed: list[Override]):
        """(a kept composition, the overrides to apply to it), or None: the composition whose applied hydra.*
        and task overrides begin these (the two apart: their keys never meet), the rest config overrides."""
        best = None
        for c in self._composed:
            if (c.config_name == config_name and not c.missing and hydra_lines[: len(c.hydra_lines)] == c.hydra_lines
                    and task_lines[: len(c.task_lines)] == c.task_lines
                    and (best is None or len(c.hydra_lines) + len(c.task_lines) >= len(best.hydra_lines) + len(best.task_lines))):
                best = c
        if best is None:
            return None
        extra, skip = [], {True: len(best.hydra_lines), False: len(best.task_lines)}
        for o in parsed:
            if o.is_sweep_override():
                continue
            if skip[o.is_hydra_override()]:
                skip[o.is_hydra_override()] -= 1
                continue
            if o.package is not None:
                return None
            if o.is_hydra_override():
                if o.key_or_group != "hydra.mode" or o.is_delete():
                    return None
            elif best.repo is None or best.repo.group_exists(o.key_or_group):
                return None
            extra.append(o)
        return best, extra

    def _keep(self, c: _Composed) -> None:
        self._composed.append(c)
        if len(self._composed) > KEEP:
            del self._composed[1]


def _listed(parsed: list[Override]) -> tuple[int, int]:
    n = sum(o.is_hydra_override() for o in parsed)
    return n, len(parsed) - n


@contextmanager
def compose_once():
    """While in the block, the Hydra that ``hydra.main`` makes loads configs with :class:`ComposeOnce`: with the
    Hydra it redoes the bookkeeping of (requirements.lock); with another, Hydra composes every time as it would."""
    import hydra
    from hydra._internal import hydra as internal

    if hydra.__version__ != HYDRA:
        yield
        return
    saved = internal.ConfigLoaderImpl
    internal.ConfigLoaderImpl = ComposeOnce
    try:
        yield
    finally:
        internal.ConfigLoaderImpl = saved
