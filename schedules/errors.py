"""Error types raised while describing, scheduling and lowering operators."""


class AutoschedError(Exception):
    """Base of every autosched error."""


class ScheduleError(AutoschedError, ValueError):
    """A schedule that cannot be lowered to correct code; raised before code generation."""


class ConfigError(AutoschedError, ValueError):
    """A config that does not belong to an operator's space (wrong knobs or illegal values)."""
