"""Error types of the tuner."""
from schedules.errors import AutoschedError


class DatabaseError(AutoschedError):
    """The records database cannot be opened, or was written by an incompatible version."""


class ImportFileError(AutoschedError):
    """A tuning-log file has invalid lines; nothing from it was imported."""
