"""Shift this process's wall clock by ``ATTUNE_TEST_CLOCK_SHIFT_S`` seconds (tests only).

A test puts this directory first on PYTHONPATH of a worker it starts, so that worker's
``time.time()`` is far off while the database clock is not.
"""

import os
import time

_shift_s = float(os.environ.get("ATTUNE_TEST_CLOCK_SHIFT_S") or 0)
if _shift_s:
    _time, _time_ns = time.time, time.time_ns
    time.time = lambda: _time() + _shift_s
    time.time_ns = lambda: _time_ns() + int(_shift_s * 1e9)
