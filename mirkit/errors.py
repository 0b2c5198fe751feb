"""The one base class of problems a user can fix.

Every error mirkit raises for bad input, missing files or mismatched artefacts derives
from `MirkitError`, and its message names the problem and the fix. The command line
turns any of them into one line on stderr and exit status 1 (`mirkit.cli.main`); any
other exception is a bug and keeps its traceback. Each subclass also derives from the
built-in type it used to be (ValueError, RuntimeError), so library callers that catch
those keep working.
"""

from __future__ import annotations


class MirkitError(Exception):
    """A problem the user can fix; the message says what is wrong and what to do."""


class ShardsError(MirkitError, RuntimeError):
    """A shards directory that is missing, incomplete, damaged or does not match the
    run; the message says which and how to fix it."""


class UnreadableFile(MirkitError, OSError):
    """A file mirkit wrote (weights, a checkpoint) that cannot be read back: truncated,
    damaged or not what its name says."""


class OptionError(MirkitError, ValueError):
    """An option or setting with a value mirkit does not know; the message lists the
    values it does."""
