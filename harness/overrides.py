"""Preflight checks on the command line's overrides, before Hydra composes anything.

Hydra reports a malformed override, an unknown group option or key over several lines; these
checks name the key, the bad value and what is allowed in one line (with the nearest name). Values are checked later, in
:mod:`harness.plan`, once the config is composed.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from harness import CONF
from harness.plan import SEARCH_KEYS, STATS_KEYS, STOP_KEYS, TOP_KEYS, TRACKING_KEYS
from optimizers.base import ConfigError

GROUPS = ("problem", "optimizer", "schedule", "instruments", "grid")
SECTIONS = {"stop": STOP_KEYS, "stats": STATS_KEYS, "tracking": TRACKING_KEYS, "search": SEARCH_KEYS}


def options(group: str, dirs: list[Path] = [CONF]) -> list[str]:  # noqa: B006 - read only
    return sorted({p.stem for d in dirs for p in (d / group).glob("*.yaml")})


def _option_file(group: str, option: str, dirs: list[Path]) -> Path:
    return next((d / group / f"{option}.yaml" for d in dirs if (d / group / f"{option}.yaml").is_file()), CONF / group / f"{option}.yaml")


def search_dirs(parsed) -> list[Path]:
    """conf/, then the ``file://`` entries of ``hydra.searchpath`` (your own config directories)."""
    dirs = [CONF]
    for o in parsed:
        if o.key_or_group == "hydra.searchpath":
            entries = o.value() if isinstance(o.value(), list) else [o.value()]
            dirs += [Path(str(e)[len("file://") :]).expanduser().resolve() for e in entries if str(e).startswith("file://")]
    return dirs


INFO_FLAGS = ("--help", "-h", "--hydra-help", "--cfg", "-c", "--info", "-i", "--shell-completion", "-sc")
GRAMMAR = "key=value, a sweep key=a,b,c or key=range(start,stop) (https://hydra.cc/docs/advanced/override_grammar/basic/)"


def nearest(value: str, allowed: list[str]) -> str:
    """`` (did you mean gd?)`` for a near miss among ``allowed``, else nothing."""
    import difflib

    close = difflib.get_close_matches(value, allowed, n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def parse(tokens: list[str]):
    """Hydra's parse of the overrides; a malformed one is named in one line (Hydra's message spans several)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    parser = OverridesParser.create()
    try:
        return parser.parse_overrides(tokens)
    except OverrideParseException:
        for t in tokens:
            try:
                parser.parse_overrides([t])
            except OverrideParseException as e:
                lines = [s for s in str(e).splitlines() if s.strip() and not s.startswith(("Error parsing override", "See "))]
                raise ConfigError(f"cannot parse {t!r}: {(lines or [str(e).strip()])[0]}; allowed: {GRAMMAR}") from None
        raise


VALUE_FLAGS = ("--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd", "--info", "-i",
               "--experimental-rerun")


def overrides(args: list[str]) -> list[str]:
    """The overrides among the arguments: not flags, nor the value of a flag (``--cfg job``)."""
    return [a for i, a in enumerate(args) if not a.startswith("-") and ("=" in a or i == 0 or args[i - 1] not in VALUE_FLAGS)]


def preflight(args: list[str]) -> None:
    """Raise :class:`ConfigError` for a malformed override, an unknown group option or key (not added
    with +), a grid without -m, or the learning rate set twice."""
    parsed = parse(overrides(args))
    dirs = search_dirs(parsed)
    sweeping = any(a in ("-m", "--multirun") for a in args)
    only_showing = any(a.split("=")[0] in INFO_FLAGS for a in args)
    _check_groups(parsed, dirs, sweeping or only_showing)
    _check_lr_once(parsed)
    _check_keys(parsed, dirs)


def _check_groups(parsed, dirs: list[Path], sweeping: bool) -> None:
    for o in parsed:
        key = o.key_or_group
        if key in GROUPS and o.package is None:
            if o.is_interval_sweep():
                raise ConfigError(f"{key}={o.input_line.split('=', 1)[1]} is not allowed; allowed: a list of {key} names (intervals are for numbers)")
            values = list(o.sweep_string_iterator()) if o.is_sweep_override() else [o.get_value_element_as_str()]
            allowed = options(key, dirs)
            for v in values:
                if v not in allowed and not (key == "grid" and v == "null"):
                    raise ConfigError(f"{key}={v} is not allowed; allowed: {', '.join(allowed)}{nearest(v, allowed)}")
                if key == "grid" and v != "null" and not sweeping:
                    raise ConfigError(f"grid={v} is a sweep and runs only with -m; allowed: python -m harness grid={v} ... -m")


def _check_lr_once(parsed) -> None:
    given = {o.key_or_group: o for o in parsed if o.key_or_group in ("lr", "optimizer.lr") and not o.is_delete()}
    if len(given) == 2:
        a, b = (given[k].input_line for k in ("lr", "optimizer.lr"))
        raise ConfigError(f"{a} and {b} both set the learning rate; allowed: one of them (lr, also in sweeps: -m lr=0.01,0.1)")


def _chosen(parsed) -> dict[str, list[str]]:
    """The option of each group: the default, or every value given or swept."""
    choice = {"problem": ["rosenbrock"], "optimizer": ["adam"], "schedule": ["constant"], "instruments": ["none"]}
    for o in parsed:
        if o.key_or_group in choice and o.package is None:
            choice[o.key_or_group] = list(o.sweep_string_iterator()) if o.is_sweep_override() else [o.get_value_element_as_str()]
    return choice


def _check_keys(parsed, dirs: list[Path]) -> None:
    choice = _chosen(parsed)
    public = [k for k in TOP_KEYS if k != "members"]
    for o in parsed:
        key = o.key_or_group
        if o.is_add() or o.is_force_add() or o.is_delete() or key.startswith(("hydra.", "hydra/")) or key in GROUPS:
            continue
        head, _, rest = key.partition(".")
        if head not in public:
            raise ConfigError(f"unknown key '{key}'; allowed: {', '.join(public)}{nearest(head, public)}")
        if not rest:
            continue
        for option in [None] if head in SECTIONS else choice[head]:
            allowed = SECTIONS[head] if option is None else list(OmegaConf.load(_option_file(head, option, dirs)))
            if rest.split(".")[0] not in allowed:
                hint = " (add a new constructor argument with +)" if head == "optimizer" else nearest(rest.split(".")[0], allowed)
                where = head if option is None else f"{head} {option}"
                raise ConfigError(f"unknown key '{key}' in {where}; allowed: {', '.join(allowed)}{hint}")
