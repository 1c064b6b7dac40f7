"""Nothing lost, leaked or orphaned on Cloud Storage: owner marks (bucket labels, the service account's
description) refuse a second environment's adoption without ``--adopt``; key intents leave no untracked service
account key or HMAC key whatever answer is lost. Against `tests.gcp_fake.FakeGoogle` in front of the sandbox's GCS
emulator (the fixtures of tests/test_gcs.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from provision.providers.owner_marks import OwnerMark, label_value
from tests.conftest import Cli, GcsAdmin
from tests.gcp_fake import FakeGoogle
from tests.test_gcs import gcs, sa_email

pytestmark = pytest.mark.usefixtures("no_google_env")  # tests/fake_fixtures.py


def grant_state(env: str, grant: str) -> dict[str, Any]:
    return json.loads((Path.cwd() / ".provision" / f"{env}.json").read_text())["grants"][grant]


def tracked(env: str, grant: str, kind: str) -> set[str]:
    path = Path.cwd() / ".provision" / f"{env}.json"
    if not path.exists():
        return set()
    record = json.loads(path.read_text())["grants"].get(grant)
    return {r["name"] for r in (record or {}).get("resources", []) if r["kind"] == kind}


def test_label_values_are_sanitized() -> None:
    mark = OwnerMark("Prod.EU", "my grant", "0a1b")
    assert mark.fields("label") == {"provision_env": "prod-eu", "provision_grant": "my-grant",
                                    "provision_state": "0a1b"}
    assert label_value("x" * 80) == "x" * 63
    real = OwnerMark("prod-eu", "media_ro", "0a1b")
    assert OwnerMark.parse(f"{real.text()}: readonly on a") == real


def test_second_env_refuses_to_adopt_without_adopt(cli: Cli, google: FakeGoogle, gcs_admin: GcsAdmin,
                                                  prefix: str) -> None:
    first = gcs(cli, "--prefix", prefix, "--no-verify", env="one")
    assert first.exit_code == 0, first.output
    labels = gcs_admin.storage.get_bucket(f"{prefix}-public").labels
    state_id = json.loads((Path.cwd() / ".provision" / "one.json").read_text())["state_id"]
    assert labels == {"provision_env": "one", "provision_grant": prefix, "provision_state": state_id}
    email = sa_email(f"provision-{prefix}-ro")
    assert google.service_accounts[email]["description"].startswith(f"provision env=one grant={prefix} ")
    google.reset()
    refused = gcs(cli, "--prefix", prefix, "--no-verify", env="two")
    assert refused.exit_code == 2, refused.output
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "'one'" in lines[0] and "--adopt" in refused.stderr, refused.stderr
    assert google.mutating() == []
    adopted = gcs(cli, "--prefix", prefix, "--no-verify", "--adopt", env="two")
    assert adopted.exit_code == 0, adopted.output
    assert {(r["kind"], r["created"]) for r in grant_state("two", prefix)["resources"]
            if r["kind"] in ("bucket", "service_account")} == {("bucket", False), ("service_account", False)}
    keys_one, keys_two = tracked("one", prefix, "sa_key"), tracked("two", prefix, "sa_key")
    assert cli("destroy", "--env", "two", "--yes").exit_code == 0
    assert set(google.user_keys(email)) == keys_one and not keys_two & keys_one  # only two's own key went
    assert gcs_admin.storage.lookup_bucket(f"{prefix}-public") is not None
    assert cli("verify", "--env", "one").exit_code == 0
    assert cli("destroy", "--env", "one", "--yes").exit_code == 0
    assert gcs_admin.storage.lookup_bucket(f"{prefix}-public") is None


@pytest.mark.parametrize("mode", ["key_file", "hmac"])
def test_lost_answers_at_every_mutating_step_leave_no_untracked_key(cli: Cli, google: FakeGoogle,
                                                                   gcs_admin: GcsAdmin, prefix: str,
                                                                   mode: str) -> None:
    extra = ["--hmac"] if mode == "hmac" else []
    kind = "hmac_key" if mode == "hmac" else "sa_key"
    google.reset()
    assert gcs(cli, "--prefix", f"{prefix}c", "--full", "--no-verify", *extra).exit_code == 0
    steps = google.mutating_count()
    assert cli("destroy", "--env", "gcp", "--yes").exit_code == 0
    assert steps >= 6
    tried = untracked_total = 0
    for k in range(1, steps + 1):
        p = f"{prefix}{k}"
        email = sa_email(f"provision-{p}-rw")
        google.reset()
        google.lose_answer_at = k
        first = gcs(cli, "--prefix", p, "--full", "--no-verify", *extra)
        google.lose_answer_at = None
        tried += google.lost
        google.lost = 0
        assert first.exit_code in (0, 3, 4), (k, first.output)
        again = gcs(cli, "--prefix", p, "--full", "--no-verify", *extra)
        assert again.exit_code == 0, (k, again.output)
        live = (set(google.user_keys(email)) if kind == "sa_key" else
                {a for a, m in google.hmac_keys.items() if m["serviceAccountEmail"] == email})
        untracked = live - tracked("gcp", p, kind)
        untracked_total += len(untracked)
        assert untracked == set(), (k, untracked)
        assert len(live) == 1, (k, live)
        assert not any(r["kind"].endswith("_intent") for r in grant_state("gcp", p)["resources"]), k
        done = cli("destroy", "--env", "gcp", "--yes")
        assert done.exit_code == 0, (k, done.output)
        assert email not in google.service_accounts, k
        assert not [a for a, m in google.hmac_keys.items() if m["serviceAccountEmail"] == email], k
        assert not any(b.name.startswith(p + "-") for b in gcs_admin.storage.list_buckets()), k
    assert tried == steps
    print(f"gcs {mode}: {tried} lost answers tried, {untracked_total} untracked keys")


def test_an_intent_left_by_a_killed_run_is_settled_by_destroy(cli: Cli, google: FakeGoogle,
                                                             prefix: str) -> None:
    """A run killed between the key's creation and its record: the intent alone is in state; destroy finds the
    key created after it and deletes it."""
    from provision.state import StateStore

    assert gcs(cli, "--prefix", prefix, "--no-verify", "--keyless").exit_code == 0
    email = sa_email(f"provision-{prefix}-ro")
    store = StateStore("gcp")
    state = store.load()
    from datetime import datetime, timezone

    from provision.models import Resource

    state.grants[prefix].record(Resource(kind="sa_key_intent", name=email, created=True, parent=email,
                                         since=datetime.now(timezone.utc)))
    store.save(state)
    google.keys["orphan"] = {"email": email, "public_key": None, "type": "USER_MANAGED",
                             "created": datetime.now(timezone.utc)}
    done = cli("destroy", "--env", "gcp", "--yes")
    assert done.exit_code == 0, done.output
    assert "orphan" not in google.keys


# ---- two environments, one prefix: the creator's destroy hands shared resources over ------------------------------
def members_of(fake: FakeGoogle, bucket: str) -> set[str]:
    """Every member of the bucket's unconditional bindings."""
    return {m for b in fake.bucket_policy(bucket)["bindings"] for m in b["members"]}


def live_of(fake: FakeGoogle, gcs_admin: GcsAdmin, prefix: str) -> list[str]:
    """Every bucket, service account, user-managed key and HMAC key the fake and the emulator hold for ``prefix``."""
    accounts = [e for e in fake.service_accounts if prefix in e]
    return sorted([f"bucket {b.name}" for b in gcs_admin.storage.list_buckets() if prefix in b.name]
                  + [f"service_account {e}" for e in accounts]
                  + [f"sa_key {k}" for e in accounts for k in fake.user_keys(e)]
                  + [f"hmac_key {a}" for a, m in fake.hmac_keys.items() if prefix in m["serviceAccountEmail"]])


@pytest.mark.parametrize("first", ["a", "b"])
def test_adopter_keeps_what_it_shares_whichever_env_is_destroyed_first(cli: Cli, google: FakeGoogle,
                                                                      gcs_admin: GcsAdmin, prefix: str,
                                                                      first: str) -> None:
    """a creates the buckets and the service account; b adopts them (``--adopt``, same account: same prefix and
    access) and issues its own key. Destroying either env first leaves the other one working: a's destroy hands the
    buckets, the account and its bindings over to b (owner marks relabelled), b's drops only its share marks."""
    buckets = [f"{prefix}-public", f"{prefix}-private"]
    email = sa_email(f"provision-{prefix}-ro")
    member = f"serviceAccount:{email}"
    assert gcs(cli, "--prefix", prefix, env="a").exit_code == 0
    adopted = gcs(cli, "--prefix", prefix, "--adopt", env="b")
    assert adopted.exit_code == 0, adopted.output
    state_a, state_b = (json.loads((Path.cwd() / ".provision" / f"{e}.json").read_text())["state_id"]
                        for e in ("a", "b"))
    share_label = f"provision_shared_{state_b}_{prefix}"[:63]
    for name in buckets:
        assert live_labels(gcs_admin, name) == {"provision_env": "a", "provision_grant": prefix,
                                                "provision_state": state_a, share_label: "b"}
    description = google.service_accounts[email]["description"]
    assert description.startswith(f"provision env=a grant={prefix} state={state_a} shared={state_b}/b/{prefix}: ")
    assert {(r["kind"], r["created"]) for r in grant_state("b", prefix)["resources"]} == {
        ("bucket", False), ("service_account", False), ("bucket_binding", False), ("sa_key", True)}
    for env in ("a", "b"):
        checked = cli("verify", "--env", env)
        assert checked.exit_code == 0, (env, checked.output)
    again = gcs(cli, "--prefix", prefix, "--adopt", env="b")  # the share marks are not written twice
    assert again.exit_code == 0 and json.loads(again.stdout)["changed"] is False, again.output

    other = "b" if first == "a" else "a"
    keys_other = tracked(other, prefix, "sa_key")
    done = cli("destroy", "--env", first, "--yes")
    assert done.exit_code == 0, done.output
    assert set(google.user_keys(email)) == keys_other  # only the destroyed env's own key went
    assert email in google.service_accounts
    state_other = state_b if other == "b" else state_a
    for name in buckets:
        assert gcs_admin.storage.lookup_bucket(name) is not None
        assert member in members_of(google, name)  # the binding the other env relies on stays
        assert live_labels(gcs_admin, name) == {"provision_env": other, "provision_grant": prefix,
                                                "provision_state": state_other}  # handed over / share mark gone
    description = google.service_accounts[email]["description"]
    assert description.startswith(f"provision env={other} grant={prefix} state={state_other}: "), description
    checked = cli("verify", "--env", other)
    assert checked.exit_code == 0, checked.output
    rerun = gcs(cli, "--prefix", prefix, env=other)  # still converges, with no --adopt: it is the owner now
    assert rerun.exit_code == 0, rerun.output
    assert cli("destroy", "--env", other, "--yes").exit_code == 0
    assert live_of(google, gcs_admin, prefix) == []


@pytest.mark.parametrize("first", ["a", "b"])
def test_either_destroy_leaves_the_other_accounts_binding(cli: Cli, google: FakeGoogle,
                                                          gcs_admin: GcsAdmin, prefix: str, first: str) -> None:
    """b adopts a's buckets with another access level, so with its own service account: whichever env is destroyed
    first removes only its own member from the policies (`provision.policies.merge_bindings`); a's destroy hands
    the buckets over to b, b's drops its share marks."""
    assert gcs(cli, "--prefix", prefix, env="a").exit_code == 0
    assert gcs(cli, "--prefix", prefix, "--full", "--adopt", env="b").exit_code == 0
    members = {env: f"serviceAccount:{sa_email(f'provision-{prefix}-{s}')}" for env, s in (("a", "ro"), ("b", "rw"))}
    bucket = f"{prefix}-private"
    assert set(members.values()) <= members_of(google, bucket)
    other = "b" if first == "a" else "a"
    done = cli("destroy", "--env", first, "--yes")
    assert done.exit_code == 0, done.output
    assert members[other] in members_of(google, bucket) and members[first] not in members_of(google, bucket)
    assert members[first].removeprefix("serviceAccount:") not in google.service_accounts
    labels = live_labels(gcs_admin, bucket)
    assert labels["provision_env"] == ("a" if first == "b" else "b"), labels  # a's destroy hands them over
    assert not [k for k in labels if k.startswith("provision_shared_")], labels  # b's share mark went either way
    checked = cli("verify", "--env", other)
    assert checked.exit_code == 0, checked.output
    assert cli("destroy", "--env", other, "--yes").exit_code == 0
    assert live_of(google, gcs_admin, prefix) == []


def live_labels(gcs_admin: GcsAdmin, bucket: str) -> dict[str, str]:
    """The bucket's labels as a reader sees them (an emulator may keep a removed label as ``null``)."""
    return {k: v for k, v in (gcs_admin.storage.get_bucket(bucket).labels or {}).items() if v is not None}
