"""`accel bench`: not built yet."""
from __future__ import annotations

from accel.cli.common import fail


def command():
    """(not built yet)"""
    fail("'accel bench' is not built yet in this version of accel")
