"""Runtimes: run shell, python and native actions as processes; the only code that spawns any.

An :class:`Invocation` goes in, a :class:`RunResult` comes out; runtimes never see the database.
"""

from __future__ import annotations

from attune.runtimes.invocation import Invocation, Outcome, RunResult
from attune.runtimes.runtime import run

__all__ = ["Invocation", "Outcome", "RunResult", "run"]
