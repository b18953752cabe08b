"""The one base class for mistakes in the user's input.

Every layer raises a subclass of `UserError` (a bad config key, a missing checkpoint file,
an unknown method); the CLI turns any of them into one red line and exit code 2 instead of
a traceback. Subclasses also derive from ValueError where callers already catch that.
"""
from __future__ import annotations


class UserError(Exception):
    """A mistake in the user's input; its message says what was wrong and how to fix it."""
