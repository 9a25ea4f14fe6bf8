"""Executions: scheduling, running, transitions, completion, parameters, secrets and retention."""
