"""Celery configuration for attune, derived from ``attune.settings.Settings`` (ATTUNE_* variables).

Celery reads this module lazily, the first time the app's configuration is needed.
"""

from attune.executions.queues import SWEEP_QUEUE
from attune.settings import Settings
from attune.worker.broker import TRANSPORT

_settings = Settings.from_env()

broker_url = _settings.broker_url
broker_connection_retry_on_startup = True
_redis = broker_url.startswith("redis://")
if _redis and _settings.redis_transport == "attune":
    broker_transport = TRANSPORT  # ATTUNE_REDIS_TRANSPORT=attune: attune/worker/broker.py
if _settings.is_embedded:
    # The in-memory transport polls; the default 1 s would add up to a second per message.
    broker_transport_options = {"polling_interval": 0.005}
include = ["attune.worker.tasks"]
# attune.worker.<name> is deleted by the broker once unused this long (attune/worker/queues.py).
# Not on Redis, where a queue is a list that exists only while it holds messages: kombu would
# expire the messages waiting for a worker whose every slot stayed busy that long.
attune_worker_queue_expires_s = None if _redis else _settings.worker_queue_expires_s

# A message reserved by a worker that dies is redelivered; the execution's conditional
# scheduled -> running UPDATE still lets it run at most once.
task_acks_late = True
task_reject_on_worker_lost = True
worker_prefetch_multiplier = 1

# The database is the result store.
task_ignore_result = True
result_backend = None

# Task events, so Flower and `celery events` can watch the workers.
worker_send_task_events = True

task_default_queue = "attune.default"
task_routes = {
    "attune.sweep_workers": {"queue": SWEEP_QUEUE},
    "attune.purge_executions": {"queue": SWEEP_QUEUE},
}

# attune's scheduler runs the sweep (and the retention purge) in the beat process itself, every
# ATTUNE_SWEEP_INTERVAL_S: no worker needs to be alive or free, and no message waits in the
# broker. Entries added to beat_schedule are sent as usual. Intervals only, nothing to
# remember between runs: no celerybeat-schedule file.
beat_scheduler = "attune.worker.beat:Scheduler"

task_serializer = "json"
accept_content = ["json"]
timezone = "UTC"
