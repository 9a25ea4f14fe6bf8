"""Celery tasks: thin adapters that open a session and call the real function."""

from __future__ import annotations

from attune.celery_app import app

__all__ = ["app"]
