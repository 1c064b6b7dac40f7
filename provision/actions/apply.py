"""``provision s3 | azure | gcs``: apply one provider's profile to one grant of the environment."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provision.actions.common import Notify, _mismatches, _quiet
from provision.errors import BadInput, VerifyFailed, a_or_an
from provision.ledger import Plan
from provision.lifecycle import probeable, rerender, verify_until_settled
from provision.models import Change, Grant
from provision.profiles import Profile
from provision.providers.base import VerifyRow, load_provider
from provision.state import GrantState, StateStore, check_grant_name, default_grant_name


# ---- apply ------------------------------------------------------------------------------------------------------
@dataclass
class ApplyResult:
    """What `apply` did (or, in a dry run, would do).

    Attributes:
        env: the environment name.
        provider: ``s3`` | ``azure`` | ``gcs``.
        dry_run: nothing was changed.
        changes: the plan's changes, in order.
        verify: the probes run on a new or changed credential (empty when none ran).
        grant: the resulting Grant (None in a dry run that would create the first one, or with no credential).
        state_file: the state file's path.
        name: the grant's name.
        rerendered: the recorded ``render-env`` files written again with a new secret (empty when none was).
    """

    env: str
    provider: str
    dry_run: bool
    changes: list[Change]
    verify: list[VerifyRow]
    grant: Grant | None
    state_file: Path
    name: str = ""
    rerendered: list[Path] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        """True when any change mutates (or would mutate) something."""
        return any(c.mutating for c in self.changes)


def apply(profile: Profile, store: StateStore, *, grant: str | None = None, dry_run: bool = False,
          rotate: bool = False, verify: bool = True, notify: Notify = _quiet, yes: bool = False,
          confirm: Callable[[str], Any] | None = None) -> ApplyResult:
    """Apply one provider's profile to the grant ``grant`` of the environment: plan and make the changes, verify a
    new or changed credential (retrying while the cloud's IAM settles), re-render the recorded ``render-env`` files
    after a new secret, then run the deferred revocations (an old key goes last, after its replacement works).

    Args:
        profile: the validated inputs (`provision.profiles.load_profile`); ``profile.provider`` names the provider.
        store: the environment; it is locked for the whole run.
        grant: the grant's name (``--grant``); default `provision.state.default_grant_name` (the prefix, else the
            first bucket). An existing grant of that name converges to the profile (buckets added to or removed
            from its policy are reported).
        dry_run: plan only; no call changes anything and nothing is saved.
        rotate: issue a new secret even when the stored one works.
        verify: probe a new or changed credential (skipped for credentials that cannot be probed from here).
        notify: receives "re-rendered <path>" lines and the next step after a re-render.
        yes: do not ask (``--yes``): widening a deployed credential and the first change of a new environment on a
            real cloud go ahead.
        confirm: asks the user ``confirm(question)`` (it raises to abort); None when there is no terminal. Asked
            before widening a deployed credential (read-only → full, SAS → account key; without a terminal that
            needs ``yes``) and, like ``terraform apply``, before the first change of a new environment on a real
            cloud (the plan is shown in the question).

    Returns:
        The `ApplyResult`.

    Raises:
        BadInput: the grant exists for another provider; ``rotate`` on a grant that holds no credential yet; bad
            input found by the provider; a widening without ``yes`` and without a terminal.
        CloudRefused, PartialFailure: raised by the provider (the state records what exists).
        VerifyFailed: the new credential does more or less than its grant (deferred revocations are not run).
    """
    provider = str(profile.provider)
    name = check_grant_name(grant) if grant is not None else None
    prov = load_provider(profile)  # validates the buckets first: "no bucket given" names the provider's noun
    name = name or default_grant_name(profile.prefix, profile.buckets)
    nothing_to_rotate = BadInput(
        f"nothing to rotate: environment {store.env!r} holds no credential for grant {name!r}",
        "drop --rotate to create it, or pass the --grant NAME of an existing grant")
    if rotate and not store.exists():  # refused before the lock, which would create a new env's state directory
        raise nothing_to_rotate
    with store.lock():
        state = store.load()
        known = state.grants.get(name)
        if rotate and (known is None or known.grant is None):  # creating one instead is not what was asked
            raise nothing_to_rotate
        if known is not None and known.provider not in (None, provider):
            raise BadInput(f"grant {name!r} of environment {store.env!r} is {a_or_an(known.provider)} grant "
                           f"({store.path})", f"pick another --grant NAME, or `provision destroy --env {store.env} "
                           f"--grant {name}` first")
        record = state.grant_state(name)
        if not dry_run and not yes:
            _ask_before_widening(record, profile, store.env, confirm)
            if confirm is not None and not profile.sandbox and not any(g.resources for g in state.grants.values()):
                preview = Plan(record.model_copy(deep=True), dry_run=True)
                prov.apply(preview.state, preview)
                lines = "\n  ".join(f"{c.action} {c.kind} {c.name}" for c in preview.changes if c.mutating)
                confirm(f"New environment {store.env!r} ({store.path}): make these changes?\n  {lines}\n")
        before = state.model_dump(exclude={"updated_at"})
        old_auth = record.grant.auth if record.grant else None
        old_buckets = list(record.grant.buckets) if record.grant else []
        plan = Plan(record, lambda: store.save(state), dry_run=dry_run, rotate=rotate)
        if not dry_run:
            record.provider = provider  # type: ignore[assignment]
            record.inputs = prov.resolved_inputs()
        result = prov.apply(record, plan)
        for bucket in old_buckets:
            if result is not None and bucket not in result.buckets:
                plan.note("update", "grant", name, f"{bucket} removed from the grant (the bucket stays; destroy "
                          "deletes it only if provision created it)")
        rows: list[VerifyRow] = []
        written: list[Path] = []
        if not dry_run:
            plan.set_grant(result)
            if state.model_dump(exclude={"updated_at"}) != before:
                store.save(state)
            if plan.changed and verify and probeable(result):
                rows = verify_until_settled(prov, record)
                if not all(r.ok for r in rows):
                    raise VerifyFailed("the credential does not match its grant: " + _mismatches(rows),
                                       "revocations still pending were not done; inspect with `provision verify`, "
                                       "then re-run")
            if result is not None and result.auth != old_auth and state.renders:
                written = rerender(state)
                for path in written:
                    notify(f"re-rendered {path}")
                if any(r.target == "supervisely" for r in state.renders) and written:
                    notify("Next: supervisely up -d (recreates http-storage, whose mounted files and environment "
                           "changed, with the new credential)")
            plan.run_deferred()
            store.save(state)
    return ApplyResult(env=store.env, provider=provider, dry_run=dry_run, changes=plan.changes, verify=rows,
                       grant=result, state_file=store.path, name=name, rerendered=list(written))


def _ask_before_widening(record: GrantState, profile: Profile, env: str, confirm: Callable[[str], Any] | None) -> None:
    """Ask before a deployed credential is widened: read-only → full, or an Azure SAS → the account key (what the
    platform can do with it grows). Raises BadInput without a terminal (``--yes`` needed)."""
    old = record.grant
    if old is None:
        return
    widening = []
    if old.access.value == "readonly" and profile.access.value == "full":
        widening.append("read-only → full (write, delete, multipart)")
    if old.auth.kind == "sas" and profile.account_key:
        widening.append("SAS → the account key (every container of the account, no expiry)")
    if not widening:
        return
    question = f"grant {record.name!r} of environment {env!r} is deployed; this widens it: {'; '.join(widening)}"
    if confirm is None:
        raise BadInput(question, "pass --yes to widen it, or use another --grant for the wider credential")
    confirm(question + ". Continue?")


