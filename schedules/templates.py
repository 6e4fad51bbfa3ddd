"""Expert templates: hand-written schedule functions registered for an operator name."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

_REGISTRY: dict = {}


@dataclass(frozen=True)
class Template:
    op_name: str
    fn: Callable          # fn(sch: Schedule) applies primitives and declares knobs with sch.knob
    mode: str             # "replace" the generated space, or "extend" it
    target_kind: str


def register_template(op_name: str, mode: str = "replace", target: str = "cpu"):
    """Decorator: `fn(sch)` schedules operators named `op_name` on `target`.

    With mode="replace" the template alone defines the space; with "extend" the generated
    sketch is applied first and the template adds primitives and knobs on top of it.
    Knob declarations must not depend on other knob values.
    """
    if mode not in ("replace", "extend"):
        raise ValueError(f"register_template: mode must be 'replace' or 'extend', got {mode!r}")

    def decorate(fn: Callable) -> Callable:
        _REGISTRY[(op_name, target)] = Template(op_name, fn, mode, target)
        return fn
    return decorate


def unregister_template(op_name: str, target: str = "cpu") -> None:
    _REGISTRY.pop((op_name, target), None)


def template_for(op_name: str, target_kind: str):
    return _REGISTRY.get((op_name, target_kind))
