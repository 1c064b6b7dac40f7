"""The actions behind the commands, called directly (no CliRunner) on the enforcing S3 sandbox: apply, verify,
status, render, destroy, the one "nothing provisioned" check, and the reports output.py makes of their results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from provision import actions, output
from provision.errors import BadInput
from provision.profiles import load_profile
from provision.state import StateStore
from tests.conftest import Admin, single_grant_state


def buckets(admin: Admin, prefix: str) -> set[str]:
    return {b["Name"] for b in admin.s3.list_buckets()["Buckets"] if prefix in b["Name"]}


def users(admin: Admin, prefix: str) -> list[str]:
    return [u["UserName"] for u in admin.iam.list_users()["Users"] if prefix in u["UserName"]]


def apply(prefix: str, access: str | None = None, **kwargs: object) -> actions.ApplyResult:
    overrides = {"prefix": prefix, **({"access": access} if access else {})}
    return actions.apply(load_profile("sandbox", overrides, "s3"), StateStore("sandbox"), **kwargs)


def test_apply_verify_status_destroy(admin: Admin, prefix: str) -> None:
    store = StateStore("sandbox")
    first = apply(prefix)
    pair = {f"{prefix}-public", f"{prefix}-private"}
    assert first.changed and first.provider == "s3" and first.env == "sandbox" and first.state_file == store.path
    assert first.grant is not None and set(first.grant.buckets) == pair
    assert first.verify and all(r.ok for r in first.verify)
    assert buckets(admin, prefix) == pair and users(admin, prefix) == [f"provision-{prefix}-readonly"]

    again = apply(prefix)
    assert not again.changed and again.verify == []  # nothing changed: nothing to verify
    assert again.grant == first.grant

    checked = actions.verify(store)
    assert checked.ok and len(checked.rows) == len(first.verify)
    checked.check()
    assert actions.status(store).in_sync

    admin.s3.delete_bucket(Bucket=f"{prefix}-private")
    drifted = actions.status(store)
    assert not drifted.in_sync
    assert ("bucket", f"{prefix}-private", "missing") in {
        (r["resource"], r["name"], r["problem"].split(":")[0]) for r in drifted.rows}
    assert apply(prefix).changed  # re-apply restores it
    assert actions.status(store).in_sync

    gone = actions.destroy(store, yes=True)
    assert {(c.action, c.kind, c.name) for c in gone.changes} >= {("delete", "bucket", b) for b in pair}
    assert gone.kept == [] and not gone.dry_run
    assert buckets(admin, prefix) == set() and users(admin, prefix) == []
    assert not store.exists()


def test_dry_run_apply_and_destroy_change_nothing(admin: Admin, prefix: str) -> None:
    admin.reset_log()
    plan = apply(prefix, dry_run=True)
    assert plan.dry_run and plan.changed
    assert ("create", "bucket", f"{prefix}-public") in {(c.action, c.kind, c.name) for c in plan.changes}
    assert admin.log() and admin.mutating() == []
    assert not StateStore("sandbox").exists()
    apply(prefix)
    admin.reset_log()
    planned = actions.destroy(StateStore("sandbox"), dry_run=True)
    assert ("delete", "iam_user", f"provision-{prefix}-readonly") in {(c.action, c.kind, c.name)
                                                                     for c in planned.changes}
    assert admin.mutating() == [] and StateStore("sandbox").exists()


def test_destroy_asks_first(admin: Admin, prefix: str) -> None:
    apply(prefix)
    store = StateStore("sandbox")
    admin.reset_log()
    with pytest.raises(BadInput, match="--yes"):
        actions.destroy(store)  # no one to ask

    def refuse(question: str) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        actions.destroy(store, confirm=refuse)
    assert admin.log() == [] and store.exists()
    asked: list[str] = []
    actions.destroy(store, confirm=asked.append)
    assert len(asked) == 1 and asked[0].startswith("Delete what provision created in environment 'sandbox'?\n")
    assert f"  {prefix}: " in asked[0]  # each grant, with what it created
    assert all(f"bucket {b}" in asked[0] for b in (f"{prefix}-public", f"{prefix}-private"))
    assert not store.exists() and buckets(admin, prefix) == set()


def test_render_is_recorded_and_a_rotation_re_renders(admin: Admin, prefix: str, workdir: Path) -> None:
    first = apply(prefix, access="full")  # a full key: Supervisely's instance storage, in .env
    out = workdir / "sv"
    out.mkdir()
    store = StateStore("sandbox")
    with pytest.raises(BadInput, match="--storage does not apply to --target cvat"):
        actions.render(store, "cvat", out, actions.RenderOptions(storage="x"))
    preview = actions.render(store, "supervisely", out, dry_run=True)
    assert {f.action for f in preview.files} == {"create"} and list(out.iterdir()) == []
    rendered = actions.render(store, "supervisely", out)
    assert {f.path.name for f in rendered.files} == {".env"}  # the only grant is the storage: no Links connection
    assert first.grant is not None
    assert f"STORAGE_SECRET_KEY={first.grant.auth.secret_key}" in (out / ".env").read_text()
    assert [(r.target, r.out) for r in store.load().renders] == [("supervisely", str(out))]
    said: list[str] = []
    rotated = apply(prefix, access="full", rotate=True, notify=said.append)
    assert rotated.grant is not None and rotated.grant.auth != first.grant.auth
    assert f"re-rendered {out / '.env'}" in said and any(s.startswith("Next: supervisely up -d") for s in said)
    assert f"STORAGE_SECRET_KEY={rotated.grant.auth.secret_key}" in (out / ".env").read_text()


def test_nothing_provisioned_is_one_check(workdir: Path) -> None:
    missing = StateStore("nosuch")
    for call, needle in ((lambda: actions.load("nosuch"), "nothing provisioned in environment 'nosuch' yet"),
                         (lambda: actions.verify(missing), "nothing to verify in environment 'nosuch' yet"),
                         (lambda: actions.status(missing), "nothing provisioned in environment 'nosuch' yet"),
                         (lambda: actions.destroy(missing, yes=True), "nothing provisioned in environment"),
                         (lambda: actions.render(missing, "supervisely", workdir), "nothing provisioned")):
        with pytest.raises(BadInput, match=needle) as caught:
            call()
        assert caught.value.exit_code == 2 and "run `provision s3|azure|gcs --env nosuch" in str(caught.value)
    assert not (workdir / ".provision").exists()  # no lock file, no state directory
    StateStore("empty").save(single_grant_state("empty", None, provider="s3"))
    assert actions.load("empty").env == "empty"
    with pytest.raises(BadInput, match="environment 'empty' has no credential yet"):
        actions.load("empty", need="grant")
    with pytest.raises(BadInput, match="environment 'empty' has no credential yet"):
        actions.verify(StateStore("empty"))
    with pytest.raises(BadInput, match="nothing provisioned in environment 'empty'"):
        actions.status(StateStore("empty"))


def test_reports_mask_secrets_and_keep_stdout_json(admin: Admin, prefix: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    result = apply(prefix)
    assert result.grant is not None
    secret = result.grant.auth.secret_key
    capsys.readouterr()
    output.apply_report(result, json_out=True, show_secrets=False)
    captured = capsys.readouterr()
    document = json.loads(captured.out)
    assert document["changed"] is True and document["env"] == "sandbox"
    assert document["grant"]["auth"]["access_key"] == result.grant.auth.access_key
    assert secret not in captured.out and secret not in captured.err
    output.apply_report(result, json_out=True, show_secrets=True)
    assert json.loads(capsys.readouterr().out)["grant"]["auth"]["secret_key"] == secret
    output.status_report(actions.status(StateStore("sandbox")), json_out=True)
    assert json.loads(capsys.readouterr().out)["in_sync"] is True
