"""Ledger steps the Azure provider needs that `provision.ledger.Plan` does not offer as such, written over it
(candidates for the ledger itself)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from provision.ledger import Plan
from provision.models import Resource
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


