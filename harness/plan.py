"""Config -> validated objects. Every check on user input lives here, at the edge.

A job's config may carry ``members``: the grid points (override strings such as
``lr=0.01``) that the batch sweeper handed to this job. Each member becomes its own
config; members that differ only in numbers run together as one :class:`Batch`.
"""

from __future__ import annotations

import copy
import functools
import importlib
import inspect
import itertools
import json
import math
import operator
import re
from dataclasses import dataclass
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from harness import instruments, schedules
from harness.fingerprint import code_hash, fingerprint
from harness.limits import check_sizes
from harness.runner import StopRules
from optimizers.base import ConfigError, Optimizer
from optimizers.torch_batched import elementwise

TOP_KEYS = ["problem", "optimizer", "schedule", "instruments", "lr", "steps", "seed", "dtype", "device", "batch_size", "stop", "stats", "tracking", "search", "members"]
STOP_KEYS = ["grad_tol", "x_tol", "target_loss", "divergence_factor"]
STATS_KEYS = ["targets", "basin_tol"]
SEARCH_KEYS = ["trials", "seed"]
TRACKING_KEYS = ["uri", "experiment", "resume"]
SET_BY_THE_SWEEPER = {"members": None, "tracking": ["parent_run_id", "swept"]}  # added with +, never shown to users
DTYPES = {"float64": torch.float64, "float32": torch.float32}
DEVICES = ("auto", "cpu", "cuda")
META_KEYS = ("_target_", "name")  # problem / optimizer keys that are not constructor arguments


NOT_IDENTITY = ("tracking", "search", "members")  # where a member is stored and how its sweep drew it, not what ran
Cfg = dict  # a member's resolved config as plain nested dicts (OmegaConf costs ~5 ms a copy)


@dataclass
class Batch:
    """Members that run as one batched program (one member for a torch.optim class that couples elements)."""

    members: list[Cfg]
    problem: Any
    optimizer: Optimizer | None  # functional, batched
    torch_class: type | None  # a torch.optim.Optimizer class (optimizers/torch_batched.py)
    torch_kwargs: list[dict]  # its settings, per member
    rules: StopRules
    dtype: torch.dtype
    hashes: list[str] | None = None  # config_hash of each member, as composed (tagged on its run)
    schedule: dict | None = None  # harness/schedules.py; None or name "constant": the lr as given
    code: dict | None = None  # the source files computing these members, {name: hash} (harness/fingerprint.py)
    device: str = "cpu"  # where every tensor of the batch lives (resolve_device)
    instruments: instruments.Settings | None = None  # what is measured every few steps (harness/instruments.py)

    @functools.cached_property
    def code_hash(self) -> str:
        return code_hash(self.code or {})


def measured(c: Cfg) -> bool:
    """Whether a member runs with instruments on. Off (``instruments=none``) they are no part of its
    identity or params, so runs stored before the instruments existed still resume and compare."""
    return (c.get("instruments") or {}).get("name", "none") != "none"


def config_hash(c: Cfg) -> str:
    """A stable identity of a member's resolved configuration (everything but where it is tracked):
    the same command gives the same hashes, so a rerun can tell which members are already stored, and
    a report can tell runs of one configuration and seed apart from another. The code that computed
    a member is its :attr:`Batch.code_hash` (``harness.code_hash``), kept apart so that a message can
    say which file changed."""
    import hashlib

    return hashlib.sha256(json.dumps(_identity(c), sort_keys=True, default=str).encode()).hexdigest()[:20]


def _identity(c: Cfg) -> Cfg:
    """What of a member's config is its identity: all but where it is tracked, and instruments when off."""
    return {k: v for k, v in c.items() if k not in NOT_IDENTITY and not (k == "instruments" and not measured(c))}


_SLOT = "\x00harness-slot-{}\x00"  # stands for a member's own value in a batch's JSON template


def _encode(v: Any) -> str:
    """``v`` as ``json.dumps(..., sort_keys=True, default=str)`` writes it inside a config."""
    t = type(v)
    if t is float and math.isfinite(v):
        return float.__repr__(v)
    if t is int:
        return int.__repr__(v)
    return json.dumps(v, sort_keys=True, default=str)


def config_hashes(members: list[Cfg]) -> list[str]:
    """:func:`config_hash` of each member, byte for byte, at a fraction of its cost for a batch.

    Members of a batch share every section but their lr, seed and optimizer numbers (:func:`member_configs`
    gives them the very same objects), so the JSON text of the first one is dumped once as a template,
    with those leaves left open, and each member's text is the template with its own values written in.
    A member that shares anything else only by equality (or has other keys) takes :func:`config_hash`."""
    import hashlib

    if len(members) < 2:
        return [config_hash(c) for c in members]
    first = members[0]
    fopt = first.get("optimizer")
    top = [k for k in ("lr", "seed") if k in first]
    opts = [c.get("optimizer") for c in members]
    nested = all(type(o) is dict for o in opts)  # each member's optimizer section is its own dict
    # the optimizer's numbers that are not one shared object in every member
    sub = [k for k, v in fopt.items() if (is_number(v) or isinstance(v, list)) and not all(map(operator.is_, [o.get(k) for o in opts], itertools.repeat(v)))] if nested else []
    fixed = [k for k in first if k not in NOT_IDENTITY and k not in top and not (k == "optimizer" and nested)]
    fixed_sub = [k for k in fopt if k not in sub] if nested else []
    fvalues, fvalues_sub = [first[k] for k in fixed], [fopt[k] for k in fixed_sub] if nested else []
    slots = {**{("top", k): _SLOT.format(i) for i, k in enumerate(top)}, **{("sub", k): _SLOT.format(len(top) + i) for i, k in enumerate(sub)}}
    body = _identity(first)
    for k in top:
        body[k] = slots["top", k]
    if nested and "optimizer" in body:
        body["optimizer"] = {k: slots["sub", k] if k in sub else v for k, v in fopt.items()}
    text = json.dumps(body, sort_keys=True, default=str)
    marks = {json.dumps(s): key for key, s in slots.items()}
    found = sorted((text.find(m), m) for m in marks)
    if any(i < 0 or text.count(m) != 1 for i, m in found):
        return [config_hash(c) for c in members]
    pieces, order, at = [], [], 0
    for i, m in found:
        pieces.append(text[at:i])
        order.append(marks[m])
        at = i + len(m)
    last = text[at:]
    keys = first.keys()
    fkeys = fopt.keys() if nested else None
    out = []
    for c, opt in zip(members, opts):
        if not (c.keys() == keys and all(map(operator.is_, map(c.__getitem__, fixed), fvalues))
                and (not nested or (opt.keys() == fkeys and all(map(operator.is_, map(opt.__getitem__, fixed_sub), fvalues_sub))))):
            out.append(config_hash(c))
            continue
        parts = [last]
        for p, (where, k) in zip(pieces, order):
            parts += (p, _encode(c[k] if where == "top" else opt[k]))
        parts.append(parts.pop(0))
        out.append(hashlib.sha256("".join(parts).encode()).hexdigest()[:20])
    if out[0] != config_hash(first):  # the template must give the reference text; otherwise take the plain path
        return [config_hash(c) for c in members]
    return out


def is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _require(key: str, value: Any, ok: bool, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r} is not allowed; allowed: {allowed}")


def _unknown(section: str, keys, allowed) -> None:
    for k in keys:
        if k not in allowed:
            raise ConfigError(f"unknown key '{section}{k}'; allowed: {', '.join(allowed)}")


def import_target(key: str, path: Any):
    try:
        module, _, attr = str(path).rpartition(".")
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError, ValueError):
        raise ConfigError(f"{key}={path!r} cannot be imported; allowed: a dotted path such as torch.optim.NAdam") from None


def read_members(value) -> list[list[str]] | None:
    """A job's members: a list of override lists, or the path of a JSON file holding one (the sweeper
    writes each batched job's members to a file, as Hydra's parser costs ~1 s for 2,000 members)."""
    if value is None or isinstance(value, (list, tuple)):
        return value
    try:
        with open(str(value)) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise ConfigError(f"members={value!r} cannot be read ({e}); allowed: a list of override lists, or a JSON file of one") from None


def member_configs(cfg: DictConfig, members: list[list[str]] | None = None) -> list[tuple[Cfg, list[str]]]:
    """One resolved config per member, each with its overrides applied, plus those override strings.
    Members share the base config's untouched sections (copying 10,000 configs costs seconds); the
    sections a member's overrides touch, and its optimizer section, are its own."""
    return list(iter_member_configs(cfg, members))


def iter_member_configs(cfg: DictConfig, members: list[list[str]] | None = None):
    """:func:`member_configs`, one at a time."""
    base = OmegaConf.to_container(cfg, resolve=True)
    given = base.pop("members", None)
    members = read_members(given) if members is None else members
    if not members:
        yield base, []
        return
    lr_follows = OmegaConf.is_interpolation(cfg, "lr")  # lr not given: it is optimizer.lr, swept or not
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = None
    for overrides in members:
        c = dict(base)
        if isinstance(c.get("optimizer"), dict):
            c["optimizer"] = dict(c["optimizer"])  # job.results completes it per member
        rest, has_lr = [], False
        for text in overrides:
            if text[:3] == "lr=":
                has_lr = True
            kv = _plain_number(text)
            if kv is None:
                rest.append(text)
            elif "." in kv[0]:
                _set(c, *kv)
            else:
                c[kv[0]] = kv[1]
        if rest:
            parser = parser or OverridesParser.create()
            for o in parser.parse_overrides(rest):
                _set(c, o.key_or_group, o.value())
        if lr_follows and not has_lr:
            c["lr"] = c["optimizer"].get("lr") if isinstance(c.get("optimizer"), dict) else None
        yield c, overrides  # the caller's own list (the sweeper maps members back by identity)


def _set(d: dict, dotted: str, value: Any) -> None:
    """Set ``a.b.c`` in ``d``, copying the dicts on the way (they may be shared with other members)."""
    *path, last = dotted.split(".")
    for k in path:
        d[k] = dict(d.get(k) or {})
        d = d[k]
    d[last] = copy.deepcopy(value) if isinstance(value, (list, dict)) else value


_PLAIN = re.compile(r"([A-Za-z_][\w.]*)=(-?)(?:(0|[1-9]\d*)|((?:(?:0|[1-9]\d*)\.\d*|\.\d+)(?:[eE][-+]?\d+)?|(?:0|[1-9]\d*)[eE][-+]?\d+))")


@functools.lru_cache(maxsize=2**16)  # a sweep's 100,000 members share ~1,000 override strings
def _plain_number(text: str) -> tuple[str, int | float] | None:
    """``key=3`` or ``key=1e-3`` as Hydra's parser reads them (int, float), without the parser:
    a sweep's members are almost all such overrides, and the parser costs ~1 ms each."""
    m = _PLAIN.fullmatch(text)
    if m is None:
        return None
    key, sign, integer, real = m.groups()
    return key, (int(sign + integer) if integer is not None else float(sign + real))


def effective_lr(c: Cfg) -> Any:
    return c["lr"] if c.get("lr") is not None else c["optimizer"].get("lr")


def resolve_device(value: Any) -> str:
    """``cpu`` or ``cuda`` for the ``device`` key: ``auto`` takes CUDA where torch sees it."""
    _require("device", value, isinstance(value, str) and value in DEVICES, " | ".join(DEVICES))
    cuda = torch.cuda.is_available()
    if value == "cuda" and not cuda:
        build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
        raise ConfigError(f"device=cuda is not allowed: torch {torch.__version__} ({build}) sees no CUDA device here; allowed: auto or cpu")
    return ("cuda" if cuda else "cpu") if value == "auto" else value


def validate_common(c: Cfg) -> None:
    """Checks that need only one member's config."""
    _unknown("", c.keys(), TOP_KEYS)
    for section, allowed in (("stop", STOP_KEYS), ("stats", STATS_KEYS), ("tracking", TRACKING_KEYS + SET_BY_THE_SWEEPER["tracking"]), ("search", SEARCH_KEYS)):
        if section == "search" and section not in c:
            continue  # configs of your own written before sampled sweeps
        _require(section, c.get(section), isinstance(c.get(section), dict), "a mapping")
        _unknown(section + ".", c[section].keys(), allowed)
    lr = effective_lr(c)
    _require("lr", lr, is_number(lr) and math.isfinite(lr) and lr > 0, "a number > 0")
    steps, seed = c.get("steps"), c.get("seed")
    _require("steps", steps, isinstance(steps, int) and not isinstance(steps, bool) and steps > 0, "an integer > 0")
    _require("seed", seed, isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0, "an integer >= 0")
    _require("dtype", c.get("dtype"), c.get("dtype") is None or c.get("dtype") in DTYPES, " | ".join(DTYPES) + " | null")
    resolve_device(c.get("device", "cpu"))
    stop = c["stop"]
    for k in ("grad_tol", "x_tol", "target_loss"):
        v = stop.get(k)
        ok = v is None or (is_number(v) and (k == "target_loss" or v > 0))
        _require(f"stop.{k}", v, ok, "null or a number" + ("" if k == "target_loss" else " > 0"))
    v = stop.get("divergence_factor")
    _require("stop.divergence_factor", v, is_number(v) and v > 1, "a number > 1")
    t = c["stats"].get("targets")
    ok = isinstance(t, list) and all(is_number(x) and x > 0 for x in t)
    _require("stats.targets", t, ok, "a list of numbers > 0")
    b = c["stats"].get("basin_tol")
    _require("stats.basin_tol", b, is_number(b) and b > 0, "a number > 0")
    for group in ("problem", "optimizer"):
        _require(group, c.get(group), isinstance(c.get(group), dict) and "_target_" in c[group], f"a {group} config with _target_")


def _kwargs(section: dict) -> dict:
    return {k: v for k, v in section.items() if k not in META_KEYS}


def accepted(fn) -> tuple[list[str], bool]:
    """Keyword arguments ``fn`` accepts (for a class: through ``**kw`` up its bases), and whether
    it takes any keyword at all (a torch.optim class with ``**kwargs``)."""
    names: list[str] = []
    targets = [c.__init__ for c in fn.__mro__ if "__init__" in vars(c)] if inspect.isclass(fn) else [fn]
    for f in targets:
        params = inspect.signature(f).parameters.values()
        names += [p.name for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and p.name not in names and p.name != "self"]
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            return names, False
        if not inspect.isclass(fn):
            return names, True
    return names, True


def _check_signature(group: str, fn, kwargs: dict, internal=("seeds", "dtype", "batch", "params", "X", "y", "batch_size")) -> None:
    names, open_ended = accepted(fn)
    if open_ended and group == "optimizer":
        return
    fixed = getattr(fn, "fixed", ())  # a problem's constructor arguments that its subclass sets itself
    _unknown(group + ".", kwargs, [k for k in names if k not in internal and k not in fixed])


def build_batch(members: list[Cfg]) -> Batch:
    """Validate members that share their structure and build the problem and optimizer for them."""
    hashes = config_hashes(members)
    first = members[0]
    validate_common(first)
    measures = instruments.settings(first.get("instruments"))
    for c in members[1:]:  # members of a batch differ only in lr, seed and optimizer numbers
        lr, seed = effective_lr(c), c["seed"]
        if not (type(lr) in (int, float) and math.isfinite(lr) and lr > 0):
            _require("lr", lr, is_number(lr) and math.isfinite(lr) and lr > 0, "a number > 0")
        if not (type(seed) is int and seed >= 0):
            _require("seed", seed, isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0, "an integer >= 0")
    seeds = [int(c["seed"]) for c in members]
    problem_cls = import_target("problem._target_", first["problem"]["_target_"])
    dtype = DTYPES[first["dtype"]] if first.get("dtype") else getattr(problem_cls, "default_dtype", torch.float64)
    pk = _kwargs(first["problem"])
    _check_signature("problem", problem_cls, pk)
    bs = first.get("batch_size")
    if bs is not None:
        if "batch_size" not in accepted(problem_cls)[0]:
            raise ConfigError(f"batch_size={bs!r} is not allowed for problem {first['problem'].get('name')}; allowed: null "
                              "(mini-batches are for data problems; use problem.grad_noise for noisy gradients)")
        pk["batch_size"] = bs
    check_sizes(problem_cls, pk, len(members), int(first["steps"]), dtype)
    device = resolve_device(first.get("device", "cpu"))
    with torch.device(device):
        problem = problem_cls(**pk, seeds=seeds, dtype=dtype)
    if measures is not None:
        instruments.check_problem(measures, problem)
    target = import_target("optimizer._target_", first["optimizer"]["_target_"])
    code = fingerprint(target, problem_cls, *getattr(problem, "sources", ()))  # sources: a network problem's own model code

    stop = first["stop"]
    schedule = schedules.validate(first.get("schedule", {"name": "constant"}), int(first["steps"]))
    rules = StopRules(
        steps=int(first["steps"]),
        grad_tol=stop["grad_tol"],
        x_tol=stop["x_tol"],
        target_loss=stop["target_loss"],
        divergence_factor=float(stop["divergence_factor"]),
    )
    if inspect.isclass(target) and issubclass(target, torch.optim.Optimizer):
        kws = []
        for c in members:
            kw = _kwargs(c["optimizer"])
            kw["lr"] = float(effective_lr(c))
            _check_signature("optimizer", target, kw)
            try:  # let torch validate its own hyperparameters now, before anything runs
                target([torch.zeros(1, dtype=dtype, requires_grad=True)], **kw)
            except (ValueError, TypeError) as e:
                raise ConfigError(f"optimizer ({c['optimizer']['_target_']}): {str(e).splitlines()[0]}") from None
            kws.append(kw)
        assert len(members) == 1 or elementwise(target, kws[0], dtype), "coupled torch.optim classes run one member at a time"
        return Batch(members, problem, None, target, kws, rules, dtype, hashes, schedule, code, device, measures)

    if not callable(target):
        raise ConfigError(f"optimizer._target_={first['optimizer']['_target_']!r} is not allowed; allowed: an optimizer factory or a torch.optim.Optimizer class")
    per_member: dict[str, Any] = {}
    for k, v in _kwargs(first["optimizer"]).items():
        if k == "lr":
            per_member[k] = None  # set below, in this place
            continue
        values = [c["optimizer"][k] for c in members]
        numeric = set(map(type, values)) <= {int, float, list} or all(is_number(x) or isinstance(x, list) for x in values)
        per_member[k] = values if numeric else v
    per_member["lr"] = [float(effective_lr(c)) for c in members]
    _check_signature("optimizer", target, per_member)
    with torch.device(device):
        opt = target(**per_member, batch=len(members), dtype=dtype)
    if schedule["name"] != "constant" and not (isinstance(getattr(opt, "hyperparams", None), dict) and "lr" in opt.hyperparams):
        raise ConfigError(f"schedule={schedule['name']} needs an optimizer that exposes its lr tensor; optimizer._target_="
                          f"{first['optimizer']['_target_']} does not; allowed: schedule=constant, or return "
                          "Optimizer(init, update, hyperparams={'lr': lr}) and read lr in update")
    return Batch(members, problem, opt, None, [], rules, dtype, hashes, schedule, code, device, measures)


def structure_key(c: Cfg) -> str:
    """Members with equal keys can share one batch: everything but lr, seed and numeric
    optimizer hyperparameters must agree. A torch.optim class batches only if its update is
    element-wise (``optimizers.torch_batched.elementwise``)."""
    d = dict(c)
    d.pop("lr", None)
    d.pop("seed", None)
    opt = d.get("optimizer") or {}
    target = import_target("optimizer._target_", opt.get("_target_"))
    if inspect.isclass(target) and issubclass(target, torch.optim.Optimizer):
        lr = effective_lr(c)
        if not is_number(lr) or not elementwise(target, _kwargs(opt) | {"lr": float(lr)}, DTYPES.get(str(c.get("dtype")), torch.float64)):
            return json.dumps([id(c)])  # couples elements, or a bad value that build_batch names: one member at a time
    d["optimizer"] = {k: v for k, v in opt.items() if not (is_number(v) or (isinstance(v, list) and all(map(is_number, v))))}
    return json.dumps(d, sort_keys=True, default=str)


@functools.lru_cache(maxsize=256)
def _is_torch_class(path: Any) -> bool:
    target = import_target("optimizer._target_", path)
    return inspect.isclass(target) and issubclass(target, torch.optim.Optimizer)


def _shape(c: Cfg, overrides: list[str]) -> tuple | None:
    """What decides a member's :func:`structure_key` beyond the base config: its overrides other than
    plain numbers for lr, seed and the optimizer's keys, and which optimizer keys got a number. Members
    of one job with equal shapes have equal keys, so 100,000 members need a handful of keys. None for a
    torch.optim class, whose batching may depend on the values."""
    if _is_torch_class((c.get("optimizer") or {}).get("_target_")):
        return None
    rest, numeric = [], []
    for text in overrides:
        kv = _plain_number(text)
        if kv is not None and kv[0] in ("lr", "seed"):
            continue
        if kv is not None and kv[0].startswith("optimizer."):
            numeric.append(kv[0])
        else:
            rest.append(text)
    return tuple(rest), tuple(sorted(numeric))


CURVE_BYTES = 128 * 2**20  # what a batch's in-memory curves may take; a larger batch runs as consecutive parts


def part_size(c: Cfg) -> int:
    """Members per part of a batch, so that their curves (loss, gradient norm and a 2-D trajectory in
    float64 at every step: 32 bytes a step) stay within :data:`CURVE_BYTES` however many members a
    sweep has. Members are independent, so a part gives each member what the whole batch would."""
    return max(1, CURVE_BYTES // (32 * (int(c["steps"]) + 1)))


def batches(cfg: DictConfig, members: list[list[str]] | None = None):
    """The batches of a job (its ``members``, else the config's), each validated and built when the
    loop reaches it, with its members' override lists: memory holds one batch at a time. Raises
    :class:`ConfigError` on the first bad value."""
    groups: dict[str, list[list[str]]] = {}  # batch key -> its members' overrides
    firsts: dict[str, Cfg] = {}  # batch key -> its first member's config
    known: dict[tuple, str] = {}
    for c, overrides in iter_member_configs(cfg, members):  # configs are not kept: 200,000 of them hold ~400 MB
        shape = _shape(c, overrides)
        key = known.get(shape) if shape is not None else None
        if key is None:
            key = structure_key(c)
            if shape is not None:
                known[shape] = key
        firsts.setdefault(key, c)
        groups.setdefault(key, []).append(overrides)
    for key, ovs in groups.items():
        n = part_size(firsts[key])
        for j in range(0, len(ovs), n):
            part = ovs[j : j + n]
            configs = [firsts[key]] if len(ovs) == 1 else [c for c, _ in iter_member_configs(cfg, part)]  # built again, a part at a time
            yield build_batch(configs), part


def plan(cfg: DictConfig, members: list[list[str]] | None = None) -> tuple[list[Batch], list[list[str]]]:
    """All batches of a job at once (see :func:`batches`)."""
    built = list(batches(cfg, members))
    return [b for b, _ in built], [o for _, o in built]
