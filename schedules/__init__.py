"""Tensor expressions, operators, spaces, schedules and lowering to the LoopNest IR."""
from . import ops, te
from .errors import AutoschedError, ConfigError, ScheduleError
from .lower import lower
from .operator import Operator
from .schedule import Schedule
from .space import ChoiceKnob, Config, Space, SplitKnob
from .target import Target, as_target
from .templates import register_template, unregister_template

__all__ = ["te", "ops", "Operator", "Schedule", "Space", "Config", "ChoiceKnob", "SplitKnob",
           "Target", "as_target", "lower", "register_template", "unregister_template",
           "AutoschedError", "ConfigError", "ScheduleError"]
