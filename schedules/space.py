"""Knobs, the Space of a schedule, and Config: one point in it with canonical JSON."""
from __future__ import annotations

import functools
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Callable, Mapping

from .errors import ConfigError

# Bumped whenever sketch rules change the meaning of existing knob names.
SKETCH_VERSION = 1
# Draws sample() makes before falling back to the default config of a constrained space.
MAX_DRAWS = 400


@dataclass(frozen=True)
class ChoiceKnob:
    """A categorical decision: one of `choices` (ints, strings or booleans)."""

    name: str
    choices: tuple
    default_value: object = None
    runtime: bool = False  # True: passed to the compiled kernel as an argument, no recompile
    active_when: tuple = ()  # ((knob name, allowed values), ...): otherwise it has no effect

    def default(self):
        return self.choices[0] if self.default_value is None else self.default_value

    def sample(self, rng):
        return self.choices[int(rng.integers(len(self.choices)))]

    def canonical(self, value):
        for c in self.choices:
            if type(c) is type(value) and c == value:
                return c
            if isinstance(c, int) and not isinstance(c, bool) and isinstance(value, float) \
                    and value.is_integer() and c == int(value):
                return c
        return None

    def size(self) -> int:
        return len(self.choices)

    def spec(self) -> list:
        return ["choice", self.name, list(self.choices), self.runtime] + _condition_spec(self)


@dataclass(frozen=True)
class SplitKnob:
    """Inner factors splitting an axis of `extent` into len(runtime)+1 nested loops.

    The value is a tuple of factors from the outermost inner level to the innermost. Factors
    need not divide the extent (generated code guards the remainder) but their product must
    not exceed it. `runtime[i]` marks a factor as a kernel argument rather than a constant.
    """

    name: str
    extent: int
    runtime: tuple
    default_value: tuple
    max_innermost: int = 64
    active_when: tuple = ()

    @property
    def parts(self) -> int:
        return len(self.runtime)

    def candidates(self, level: int) -> tuple:
        cap = self.max_innermost if level == self.parts - 1 else self.extent
        return _split_candidates(self.extent, cap)

    def default(self):
        return self.canonical(self.default_value) or (1,) * self.parts

    def sample(self, rng) -> tuple:
        # Innermost first, so the register tile is drawn from its full range.
        factors, budget = [0] * self.parts, self.extent
        for level in reversed(range(self.parts)):
            allowed = [f for f in self.candidates(level) if f <= budget]
            f = allowed[int(rng.integers(len(allowed)))]
            factors[level] = f
            budget //= f
        return tuple(factors)

    def canonical(self, value):
        if not isinstance(value, (list, tuple)) or len(value) != self.parts:
            return None
        try:
            value = tuple(int(v) for v in value)
        except (TypeError, ValueError):
            return None
        for level, f in enumerate(value):
            if f not in self.candidates(level):
                return None
        return value if math.prod(value) <= self.extent else None

    def size(self) -> int:
        def count(level, budget):
            if level < 0:
                return 1
            return sum(count(level - 1, budget // f) for f in self.candidates(level) if f <= budget)
        return count(self.parts - 1, self.extent)

    def spec(self) -> list:
        return ["split", self.name, self.extent, list(self.runtime), self.max_innermost] + _condition_spec(self)


@functools.lru_cache(maxsize=4096)
def _split_candidates(extent: int, cap: int) -> tuple:
    """Powers of two and divisors of extent, up to cap: the legal factors of one split level."""
    pows = {1 << p for p in range(int(math.log2(extent)) + 1)}
    divs = {d for d in range(1, min(extent, 4096) + 1) if extent % d == 0}
    return tuple(sorted(f for f in pows | divs if f <= cap))


Knob = ChoiceKnob | SplitKnob


class Config(Mapping):
    """Knob name -> value. Frozen, hashable and equal by value, with canonical JSON."""

    __slots__ = ("_items", "_json")

    def __init__(self, values: Mapping | None = None):
        items = {}
        for k, v in dict(values or {}).items():
            items[str(k)] = tuple(v) if isinstance(v, list) else v
        self._items = dict(sorted(items.items()))
        self._json = json.dumps(self._items, sort_keys=True, separators=(",", ":"))

    def __getitem__(self, key):
        return self._items[key]

    def __iter__(self):
        return iter(self._items)

    def __len__(self):
        return len(self._items)

    def __eq__(self, other):
        return isinstance(other, Config) and other._json == self._json

    def __hash__(self):
        return hash(self._json)

    def __setattr__(self, name, value):
        if hasattr(self, "_json"):
            raise AttributeError("Config is frozen")
        object.__setattr__(self, name, value)

    def __repr__(self):
        return f"Config({self._json})"

    def to_json(self) -> str:
        return self._json

    @staticmethod
    def from_json(text: str) -> "Config":
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ConfigError(f"a config is a JSON object of knob values, got {text[:80]!r}")
        return Config(data)

    def replace(self, **changes) -> "Config":
        return Config({**self._items, **changes})


@dataclass(frozen=True)
class Space:
    """The knobs of one operator on one target, and how a Config becomes a Schedule."""

    op_name: str
    workload_key: str
    target_kind: str
    knobs: tuple
    apply: Callable = field(repr=False, compare=False)  # (Config) -> Schedule
    origin: str = "generated"  # or "template:<name>"
    # (Config) -> None, or why the config breaks a limit of the target (GPU threads, shared
    # memory, registers); sample() and neighbor() draw only configs that pass it.
    constraint: Callable | None = field(default=None, repr=False, compare=False)

    @property
    def version(self) -> str:
        spec = json.dumps([SKETCH_VERSION, self.origin] + [k.spec() for k in self.knobs])
        return hashlib.sha256(spec.encode()).hexdigest()[:12]

    def __getitem__(self, name: str):
        for k in self.knobs:
            if k.name == name:
                return k
        raise KeyError(name)

    def __len__(self):
        return len(self.knobs)

    @property
    def structural_knobs(self) -> tuple:
        return tuple(k for k in self.knobs if not _all_runtime(k))

    def canonical(self, config: Config) -> Config:
        """The config with every knob that has no effect under the others (a tiled-loop
        knob when the micro-kernel is chosen, say) at its default: configs that generate
        the same kernel become equal, so search measures each kernel once."""
        if not any(k.active_when for k in self.knobs):
            return config
        values = dict(config.items())
        changed = {k.name: k.default() for k in self.knobs
                   if k.active_when and not is_active(k, values) and values.get(k.name) != k.default()}
        return config.replace(**changed) if changed else config

    def structure_key(self, config: Config) -> tuple:
        """The values that shape the generated code; configs that share it differ only in
        kernel arguments, so they share one compile and one lowered loop nest."""
        config = self.canonical(config)
        out = []
        for k in self.knobs:
            v = config[k.name]
            if isinstance(k, SplitKnob):
                out.append(tuple(f for f, rt in zip(v, k.runtime) if not rt))
            elif not k.runtime:
                out.append(v)
        return tuple(out)

    def runtime_values(self, config: Config) -> dict:
        """Kernel-parameter name -> value for the runtime knobs of a checked config."""
        out = {}
        for k in self.knobs:
            v = config[k.name]
            if isinstance(k, SplitKnob):
                for level, (f, rt) in enumerate(zip(v, k.runtime)):
                    if rt:
                        out[param_name(f"{k.name}_{level}")] = int(f)
            elif k.runtime:
                out[param_name(k.name)] = int(v)
        return out

    def size(self) -> int:
        return math.prod(k.size() for k in self.knobs)

    def default(self) -> Config:
        return Config({k.name: k.default() for k in self.knobs})

    def sample(self, rng) -> Config:
        for _ in range(MAX_DRAWS):
            config = self.canonical(Config({k.name: k.sample(rng) for k in self.knobs}))
            if self.constraint is None or self.constraint(config) is None:
                return config
        # Rejection failed (a space that is almost all illegal): the default is legal.
        return self.default()

    def violation(self, config: Config):
        """Why a config breaks a limit of the target, or None."""
        return None if self.constraint is None else self.constraint(config)

    def neighbor(self, config: Config, rng) -> Config:
        """A config one step away: one knob changed (a choice redrawn, or one split level's
        factor moved to another legal value). Search strategies use it to explore around the
        best measured configs, where fast schedules cluster."""
        for _ in range(MAX_DRAWS // 8):
            moved = self._one_step(config, rng)
            if self.constraint is None or self.constraint(moved) is None:
                return moved
        return config

    def runtime_neighbors(self, config: Config) -> list:
        """The configs one runtime choice away from `config`: each other value of each active
        choice knob passed to the kernel as an argument (cache blocks, parallel split, window
        chunks), within the target's limits. They share config's compiled kernel, so
        measuring them costs no compile."""
        values = dict(config.items())
        out = []
        for knob in self.knobs:
            if not (isinstance(knob, ChoiceKnob) and knob.runtime and is_active(knob, values)):
                continue
            for choice in knob.choices:
                if choice == values[knob.name]:
                    continue
                moved = self.canonical(config.replace(**{knob.name: choice}))
                if moved not in out and (self.constraint is None or self.constraint(moved) is None):
                    out.append(moved)
        return out

    def _one_step(self, config: Config, rng) -> Config:
        values = dict(config.items())
        movable = [k for k in self.knobs if is_active(k, values)
                   and (len(k.choices) > 1 if isinstance(k, ChoiceKnob) else k.extent > 1)]
        if not movable:
            return config
        knob = movable[int(rng.integers(len(movable)))]
        value = config[knob.name]
        if isinstance(knob, ChoiceKnob):
            others = [c for c in knob.choices if c != value]
            return self.canonical(config.replace(**{knob.name: others[int(rng.integers(len(others)))]}))
        levels = list(range(knob.parts))
        rng.shuffle(levels)
        for level in levels:
            rest = math.prod(f for i, f in enumerate(value) if i != level)
            options = [f for f in knob.candidates(level) if f != value[level] and f * rest <= knob.extent]
            if options:
                moved = list(value)
                moved[level] = options[int(rng.integers(len(options)))]
                return config.replace(**{knob.name: tuple(moved)})
        return config

    def validate(self, config) -> Config:
        """Return the canonical config, or raise ConfigError naming what is wrong and why.

        Also applies the schedule, so an illegal combination raises ScheduleError here.
        """
        canonical = self.check(config)
        self.apply(canonical)
        return canonical

    def check(self, config) -> Config:
        """validate() without applying the schedule: knob names and values only."""
        if isinstance(config, str):
            config = Config.from_json(config)
        elif not isinstance(config, Config):
            config = Config(config)
        where = f"operator {self.op_name} ({self.workload_key}) on {self.target_kind}"
        names = {k.name for k in self.knobs}
        unknown = sorted(set(config) - names)
        missing = sorted(names - set(config))
        if unknown or missing:
            raise ConfigError(
                f"config does not belong to the space of {where} (space version {self.version}): "
                f"unknown knobs {unknown[:6]}, missing knobs {missing[:6]}. It was probably tuned "
                f"for another operator or an older space; retune, or use space.default()")
        values = {}
        for k in self.knobs:
            v = k.canonical(config[k.name])
            if v is None:
                raise ConfigError(f"knob {k.name}={config[k.name]!r} is not legal for {where}; "
                                  f"see space[{k.name!r}] for its choices, or retune")
            values[k.name] = v
        config = self.canonical(Config(values))
        why = self.violation(config)
        if why is not None:
            raise ConfigError(f"config {config.to_json()} is illegal for {where}: {why}; "
                              f"draw configs with space.sample(rng), which respects the limits")
        return config


def _condition_spec(knob) -> list:
    # Only knobs with a condition add to the spec, so older spaces keep their versions.
    return [[[name, list(values)] for name, values in knob.active_when]] if knob.active_when else []


def is_active(knob, values) -> bool:
    """Whether the knob matters under these knob values (a mapping by name)."""
    return all(values.get(name) in allowed for name, allowed in knob.active_when)


def param_name(knob_name: str) -> str:
    """The kernel-parameter name a runtime knob (or split level) is passed as."""
    return "p_" + "".join(ch if ch.isalnum() else "_" for ch in knob_name)


def _all_runtime(knob) -> bool:
    return all(knob.runtime) if isinstance(knob, SplitKnob) else knob.runtime
