"""Preflight checks on the command line's overrides, before Hydra composes anything.

Hydra reports an unknown group option or key over several lines; these checks name the
key, the bad value and what is allowed in one line. Values are checked later, in
:mod:`harness.plan`, once the config is composed.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from harness.plan import SEARCH_KEYS, STATS_KEYS, STOP_KEYS, TOP_KEYS, TRACKING_KEYS
from optimizers.base import ConfigError

CONF = Path(__file__).resolve().parent.parent / "conf"
GROUPS = ("problem", "optimizer", "schedule", "grid")
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


def preflight(args: list[str]) -> None:
    """Raise :class:`ConfigError` for an unknown group option or an unknown key (not added with +)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    tokens = [a for a in args if not a.startswith("-") and "=" in a]
    try:
        parsed = OverridesParser.create().parse_overrides(tokens)
    except OverrideParseException:
        return  # Hydra's own message for a malformed override is already one clear sentence
    dirs = search_dirs(parsed)
    choice = {"problem": ["rosenbrock"], "optimizer": ["adam"], "schedule": ["constant"]}  # the defaults, or every value swept
    for o in parsed:
        key = o.key_or_group
        if key in GROUPS and o.package is None:
            if o.is_interval_sweep():
                raise ConfigError(f"{key}={o.input_line.split('=', 1)[1]} is not allowed; allowed: a list of {key} names (intervals are for numbers)")
            values = list(o.sweep_string_iterator()) if o.is_sweep_override() else [o.get_value_element_as_str()]
            allowed = options(key, dirs)
            for v in values:
                if v not in allowed and not (key == "grid" and v == "null"):
                    raise ConfigError(f"{key}={v} is not allowed; allowed: {', '.join(allowed)}")
            if key in choice:
                choice[key] = values
    for o in parsed:
        key = o.key_or_group
        if o.is_add() or o.is_force_add() or o.is_delete() or key.startswith(("hydra.", "hydra/")) or key in GROUPS:
            continue
        head, _, rest = key.partition(".")
        if head not in TOP_KEYS or head == "members":
            raise ConfigError(f"unknown key '{key}'; allowed: {', '.join(k for k in TOP_KEYS if k != 'members')}")
        if not rest:
            continue
        for option in [None] if head in SECTIONS else choice[head]:
            allowed = SECTIONS[head] if option is None else list(OmegaConf.load(_option_file(head, option, dirs)))
            if rest.split(".")[0] not in allowed:
                hint = " (add a new constructor argument with +)" if head == "optimizer" else ""
                where = head if option is None else f"{head} {option}"
                raise ConfigError(f"unknown key '{key}' in {where}; allowed: {', '.join(allowed)}{hint}")
