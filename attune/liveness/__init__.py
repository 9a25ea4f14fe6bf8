"""Liveness: worker registration, heartbeats, the stale-worker sweep and its signals."""
