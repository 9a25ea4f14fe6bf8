"""Environments: per-pack Python virtualenvs on each worker host, keyed by a content hash.

A pack with a ``requirements.txt`` gets an environment under ``ATTUNE_ENVS_DIR/<pack>/<key>``
built from its :class:`~attune.environments.spec.EnvironmentSpec` by uv or venv + pip; no
database here (the per-host records are :mod:`attune.executions.environments`).
"""
