"""What each command does, as functions a program or a test can call: apply a profile, render the platform's
files, verify, status, destroy, and the environment checks every command shares.

Each action takes a `provision.state.StateStore` (the environment), does its work, and returns a result object;
`provision.output` turns results into tables or JSON, and `provision.cli` turns flags into one action call.
Actions never print: a line meant for the user while the action runs goes to the ``notify`` callback (default:
dropped). Errors are `provision.errors.ProvisionError` subclasses, each carrying its exit code.

Providers are called through the ledger exactly as their base class documents: ``provider.apply(state, plan)``,
``provider.destroy(state, plan, delete_data)``, ``provider.verify(state)``, with
``Plan(state, lambda: store.save(state), dry_run=..., rotate=...)`` (`provision.ledger.Plan`).
"""

from __future__ import annotations

from provision.actions.apply import ApplyResult, apply
from provision.actions.checks import GrantProbes, StatusResult, VerifyResult, status, uses_of, verify
from provision.actions.common import Need, Notify, data_grant, load, require
from provision.actions.destroy import DestroyResult, destroy, destroy_plan
from provision.actions.migrate import migrate, migrate_failed
from provision.actions.render import RenderOptions, RenderResult, check_migrated, check_render_options, render

__all__ = ["ApplyResult", "DestroyResult", "GrantProbes", "Need", "Notify", "RenderOptions", "RenderResult",
           "StatusResult", "VerifyResult", "apply", "check_migrated", "check_render_options", "data_grant",
           "destroy", "destroy_plan", "load", "migrate", "migrate_failed", "render", "require", "status", "uses_of",
           "verify"]
