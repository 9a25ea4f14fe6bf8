"""The attune error tree: every error attune raises derives from :class:`AttuneError`.

::

    AttuneError
    ├── SettingsError            an ATTUNE_* variable has a bad value
    ├── DatabaseError            the database is unreachable or its schema is not migrated
    ├── PackError                a pack (or several of its files) failed validation
    ├── DocumentError            a YAML file is unreadable, hostile or not a single mapping
    ├── ActionNotFoundError      no enabled action has that ref
    │   └── ActionDisabledError  the action is loaded but disabled
    ├── ParameterError           parameters do not satisfy the action's schema
    ├── SecretKeyError           secrets cannot be encrypted or decrypted with the key at hand
    ├── RuntimeLaunchError       an action's process could not be started
    ├── PackEnvironmentError     a pack's Python environment cannot be built or used here
    ├── ExecutionNotFoundError   no execution has that id
    ├── NoWorkerAvailableError   no active, fresh worker can run the action
    ├── EnqueueError             the broker refused the task message
    ├── WaitTimeoutError         an execution did not become terminal in time
    ├── InvalidTransitionError   an execution is not in a state that allows the change
    ├── ApiKeyError              an API key cannot be created or revoked as asked
    ├── IdempotencyKeyError      an Idempotency-Key was used before with another request
    ├── ExpressionError          a template does not parse, names an unknown root, or fails
    ├── RuleNotFoundError        no loaded rule has that ref
    └── TriggerError             an unknown trigger type, or a payload its schema refuses

Each error's message says what was wrong and where (file, field, ref, value).
"""

from __future__ import annotations

from collections.abc import Sequence


class AttuneError(Exception):
    """Root of every error raised by attune."""


class SettingsError(AttuneError):
    """An ATTUNE_* environment variable holds a value attune cannot use."""

    def __init__(self, variable: str, value: str, reason: str) -> None:
        self.variable = variable
        self.value = value
        self.reason = reason
        super().__init__(f"{variable}={value!r}: {reason}")


class DatabaseError(AttuneError):
    """The database is unreachable, or its schema is missing or not migrated."""


class PackError(AttuneError):
    """A pack failed validation; ``problems`` lists every problem found, each naming its file."""

    def __init__(self, pack: str, problems: Sequence[str]) -> None:
        self.pack = pack
        self.problems = tuple(problems)
        lines = "\n".join(f"  - {problem}" for problem in self.problems)
        super().__init__(f"pack {pack!r} has {len(self.problems)} problem(s):\n{lines}")


class DocumentError(AttuneError):
    """A YAML file or text cannot be used: unreadable, too big, not UTF-8, invalid, hostile."""

    def __init__(self, source: str, problem: str) -> None:
        self.source = source
        self.problem = problem
        super().__init__(f"{source}: {problem}")


class ActionNotFoundError(AttuneError):
    """No enabled action is registered under the given ref."""

    def __init__(self, ref: str, reason: str = "no such action") -> None:
        self.ref = ref
        super().__init__(f"action {ref!r}: {reason}")


class ParameterError(AttuneError):
    """Parameters do not satisfy the action's schema; ``problems`` lists every one."""

    def __init__(self, ref: str, problems: Sequence[str]) -> None:
        self.ref = ref
        self.problems = tuple(problems)
        super().__init__(f"invalid parameters for {ref!r}: " + "; ".join(self.problems))


class SecretKeyError(AttuneError):
    """Secret parameters cannot be encrypted or decrypted with the key available."""


class RuntimeLaunchError(AttuneError):
    """The process of an action could not be started (missing file, not executable, …)."""


class PackEnvironmentError(AttuneError):
    """A pack's Python environment cannot be built or used on this host (the message says why,
    with the host, key, installer and Python); ``canceled`` when the build was canceled."""

    def __init__(self, message: str, *, canceled: bool = False) -> None:
        self.canceled = canceled
        super().__init__(message)


class ExecutionNotFoundError(AttuneError):
    """No execution has the given id."""

    def __init__(self, execution_id: int) -> None:
        self.execution_id = execution_id
        super().__init__(f"execution {execution_id} does not exist")


class NoWorkerAvailableError(AttuneError):
    """No active, fresh worker serves the action's runtime (or the named worker cannot)."""

    def __init__(self, execution_id: int, reason: str) -> None:
        self.execution_id = execution_id
        self.reason = reason
        super().__init__(f"execution {execution_id} failed: {reason}")


class EnqueueError(AttuneError):
    """The broker refused the task message; the execution was marked failed."""

    def __init__(self, execution_id: int, reason: str) -> None:
        self.execution_id = execution_id
        self.reason = reason
        super().__init__(f"execution {execution_id} could not be enqueued: {reason}")


class WaitTimeoutError(AttuneError):
    """An execution did not reach a terminal state within the time the caller allowed."""

    def __init__(self, execution_id: int, timeout_s: float, status: str) -> None:
        self.execution_id = execution_id
        self.timeout_s = timeout_s
        self.status = status
        super().__init__(f"execution {execution_id} still {status} after waiting {timeout_s:g} s")


class InvalidTransitionError(AttuneError):
    """An execution's current state does not allow the requested change."""

    def __init__(self, execution_id: int, status: str, wanted: str) -> None:
        self.execution_id = execution_id
        self.status = status
        self.wanted = wanted
        super().__init__(f"execution {execution_id} is {status}; cannot move it to {wanted}")


class ActionDisabledError(ActionNotFoundError):
    """The action is loaded but disabled, so it cannot be executed."""

    def __init__(self, ref: str) -> None:
        super().__init__(ref, "the action is disabled")


class ApiKeyError(AttuneError):
    """An API key cannot be created or revoked as asked (a bad or taken name, no such key)."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        super().__init__(f"API key {name!r}: {reason}")


class IdempotencyKeyError(AttuneError):
    """An ``Idempotency-Key`` was sent before with another request body."""

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(f"Idempotency-Key {key!r} was used before with another request")


class ExpressionError(AttuneError):
    """A template (``field``) does not parse, uses a name it may not, or fails to render."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}" if field else problem)


class RuleNotFoundError(AttuneError):
    """No loaded rule has the given ref."""

    def __init__(self, ref: str) -> None:
        self.ref = ref
        super().__init__(f"rule {ref!r} is not loaded (run `attune packs load`)")


class TriggerError(AttuneError):
    """The trigger type is unknown, or a payload does not satisfy the type's schema."""

    def __init__(self, trigger_type: str, problem: str) -> None:
        self.trigger_type = trigger_type
        self.problem = problem
        super().__init__(f"trigger {trigger_type!r}: {problem}")
