"""The workflow tests (issue 13): real workers on PostgreSQL + Redis, and the embedded default."""
