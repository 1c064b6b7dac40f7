"""Ledger steps the Azure provider needs that `provision.ledger.Plan` does not offer as such, written over it
(candidates for the ledger itself)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from provision.ledger import Plan
from provision.models import Grant, Resource
from provision.providers.azure.sdk import answered_errors

T = TypeVar("T")


def create(plan: Plan, resource: Resource, detail: str, call: Callable[..., T], **kwargs: Any) -> T | None:
    """`Plan.create` with azure-core's ``HttpResponseError`` as the cloud's refusal (the record is forgotten)."""
    return plan.create(resource, detail, call, refused=answered_errors(), **kwargs)


def adopt_or_keep(plan: Plan, resource: Resource, detail: str) -> None:
    """Adopt an existing resource (``adopt``: ``<detail>; adopted (destroy never deletes it)``) the first time,
    else report it unchanged (``no change``: ``<detail>``)."""
    if not plan.adopt(resource, f"{detail}; adopted (destroy never deletes it)"):
        plan.note("no change", resource.kind, resource.name, detail)


def issue_secret(plan: Plan, kind: str, owner: str, detail: str, call: Callable[..., T],
                 grant_of: Callable[[T], Grant], **kwargs: Any) -> T | None:
    """`Plan.issue` for a secret that has no id of its own in the cloud (a SAS is signed locally; the account key
    belongs to the account), so nothing is added to the state's resources: ``call(**kwargs)`` unless dry run, then
    the Grant holding it is persisted at once (`Plan.set_grant`).

    Args:
        kind: ``sas`` | ``account_key``. owner: the account name. detail: as in `provision.models.Change`.
        call: signs / reads the secret. grant_of: the Grant for the call's answer.

    Returns:
        The call's answer, or None in a dry run (an ``issue`` line is reported either way).
    """
    answer = plan._perform("issue", kind, owner, detail, call, kwargs)  # Plan.issue always records a Resource
    if answer is not None:
        plan.set_grant(grant_of(answer))
    return answer
