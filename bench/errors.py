"""Errors the CLI reports as a message and a non-zero exit, without a traceback."""


class BenchError(Exception):
    """A problem the user can fix; the message says how."""


class DataError(BenchError):
    """A dataset is missing, malformed or has a domain with no readable image."""


class WeightsError(BenchError):
    """Pretrained weights needed for a metric or loss are missing or not the published ones."""


class ConfigError(BenchError):
    """A run's configuration names an unknown key, preset or method, or holds an invalid value."""
