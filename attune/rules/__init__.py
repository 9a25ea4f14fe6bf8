"""Rules, triggers and timers: when this happens, run that; every firing recorded."""
