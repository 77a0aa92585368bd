"""Errors meant for the user: the CLI prints them as one line, without a traceback."""


class BenchError(Exception):
    """A problem the user can fix (bad input, missing weights, impossible budget)."""


class DataError(BenchError):
    """A dataset file is missing, unreadable or malformed; the message names the file."""


class NonFiniteLossError(BenchError):
    """Training produced NaN/inf; the run stops and writes no result."""
