"""Webhooks: the hook a path names (its enabled ``core.webhook`` rules), its signature and payload.

Rules sharing a path must agree on their hook's params (:func:`hook_problems`, when a pack
loads); should stored rules disagree all the same, a request must pass every rule's checks:
the smallest ``max_bytes``, a signature by each distinct secret, every ``payload_schema``. A
hook whose rules name no ``secret_env`` is unsigned: the HTTP API then asks for an API key
instead (it loads with a warning, :func:`unsigned_warnings`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from attune.rules import triggers
from attune.rules.spec import RuleSpec
from attune.store.models import ENFORCEMENT_TABLE, RULE_TABLE

_R = RULE_TABLE.c
_E = ENFORCEMENT_TABLE.c

DEFAULT_DEDUP_HEADER = "X-Attune-Delivery"
"""The header whose value identifies a delivery, unless the rule names another."""
SIGNATURE_HEADER = "X-Hub-Signature-256"
"""The header carrying ``sha256=<hex HMAC-SHA256 of the body>`` (GitHub's convention)."""
DROPPED_HEADERS = frozenset(
    {"authorization", "cookie", "proxy-authorization", "x-hub-signature-256"}
)
"""Request headers a webhook event does not record (credentials)."""


@dataclass(frozen=True)
class Hook:
    """What a webhook path asks of a request, from the enabled rules that listen on it."""

    path: str
    max_bytes: int
    secret_envs: tuple[str, ...] = ()
    payload_schemas: tuple[str, ...] = ()
    dedup_header: str = DEFAULT_DEDUP_HEADER

    @property
    def signed(self) -> bool:
        """True when a signature authenticates requests (some rule names a ``secret_env``)."""
        return bool(self.secret_envs)

    def payload_problems(self, body: Any) -> list[str]:
        """Every way ``body`` fails a rule's ``payload_schema`` (``where: what``)."""
        problems: list[str] = []
        for schema in self.payload_schemas:
            problems += triggers.schema_problems(json.loads(schema), body)
        return problems

    def payload(self, body: Any, headers: Mapping[str, str]) -> dict[str, Any]:
        """The event payload: the body, the headers lower-cased without credentials, the path
        and the delivery id (None without the dedup header)."""
        kept = {
            name.lower(): value
            for name, value in headers.items()
            if name.lower() not in DROPPED_HEADERS
        }
        return {
            "body": body,
            "headers": kept,
            "path": self.path,
            "delivery_id": kept.get(self.dedup_header.lower()),
        }

    def dedup_key(self, delivery_id: str | None) -> str | None:
        """The event's dedup key: the delivery id within this path (``#`` is not in paths)."""
        return None if delivery_id is None else f"{self.path}#{delivery_id}"


def find_hook(session: Session, path: str) -> Hook | None:
    """The hook of ``path``; None when no enabled ``core.webhook`` rule listens on it."""
    query = select(_R.trigger_params).where(
        _R.trigger_type == triggers.WEBHOOK, _R.enabled.is_(True)
    )
    params = [row for row in session.scalars(query.order_by(_R.id)) if row.get("path") == path]
    if not params:
        return None
    return Hook(
        path=path,
        max_bytes=min(int(p.get("max_bytes", triggers.DEFAULT_WEBHOOK_MAX_BYTES)) for p in params),
        secret_envs=tuple(sorted({p["secret_env"] for p in params if "secret_env" in p})),
        payload_schemas=tuple(
            sorted(
                {
                    json.dumps(p["payload_schema"], sort_keys=True)
                    for p in params
                    if "payload_schema" in p
                }
            )
        ),
        dedup_header=str(params[0].get("dedup_header", DEFAULT_DEDUP_HEADER)),
    )


def signature_ok(secret: str, body: bytes, header: str | None) -> bool:
    """True when ``header`` is ``sha256=`` and the HMAC-SHA256 of ``body`` under ``secret``."""
    if header is None:
        return False
    return hmac.compare_digest(sign(secret, body), header.strip().lower())


def sign(secret: str, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value a sender puts on ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def enforcements_of(session: Session, event_id: int) -> list[tuple[str, str, int | None]]:
    """The enforcements of event ``event_id``: ``(rule_ref, status, execution_id)`` by id."""
    query = select(_E.rule_ref, _E.status, _E.execution_id).where(_E.event_id == event_id)
    return [
        (row.rule_ref, row.status, row.execution_id)
        for row in session.execute(query.order_by(_E.id))
    ]


HOOK_PARAMS = ("secret_env", "payload_schema", "dedup_header", "max_bytes")
"""The params rules sharing a webhook path must agree on."""


def _hook_params(params: Mapping[str, Any]) -> dict[str, Any]:
    defaults = {
        "dedup_header": DEFAULT_DEDUP_HEADER,
        "max_bytes": triggers.DEFAULT_WEBHOOK_MAX_BYTES,
    }
    return {name: params.get(name, defaults.get(name)) for name in HOOK_PARAMS}


def hook_problems(session: Session, pack_id: int, rules: Sequence[RuleSpec]) -> list[str]:
    """Each webhook rule of pack ``pack_id`` whose hook params differ from those of another
    rule on the same path: of this pack, or loaded from another (enabled or not)."""
    query = select(_R.ref, _R.trigger_params).where(
        _R.trigger_type == triggers.WEBHOOK, _R.pack_id != pack_id
    )
    first: dict[str, tuple[str, dict[str, Any]]] = {}
    for row in session.execute(query.order_by(_R.id)):
        first.setdefault(
            str(row.trigger_params.get("path")), (row.ref, _hook_params(row.trigger_params))
        )
    problems = []
    for rule in rules:
        if rule.trigger_type != triggers.WEBHOOK:
            continue
        path, mine = str(rule.trigger_params["path"]), _hook_params(rule.trigger_params)
        other, theirs = first.setdefault(path, (rule.ref, mine))
        differing = [name for name in HOOK_PARAMS if theirs[name] != mine[name]]
        if differing:
            problems.append(
                f"{rule.source}: trigger.params: path {path!r} is also the hook of {other},"
                f" which differs in {', '.join(differing)}"
            )
    return problems


def unsigned_warnings(rules: Sequence[RuleSpec]) -> list[str]:
    """A warning for each webhook rule without a ``secret_env``: its hook needs an API key."""
    return [
        f"{rule.source}: trigger.params: no secret_env: POST /api/v1/webhooks/"
        f"{rule.trigger_params['path']} takes an operate API key instead of a signature"
        for rule in rules
        if rule.trigger_type == triggers.WEBHOOK and "secret_env" not in rule.trigger_params
    ]
