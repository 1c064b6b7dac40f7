"""The bucket IAM documents of `provision gcs`: `gcs_bindings` (what a grant needs) and `merge_bindings` (the
read-modify-write of a bucket's policy), with the exact documents they produce."""

from __future__ import annotations

import copy

import pytest

from provision.models import Access
from provision.policies import gcs_bindings, merge_bindings

SA = "serviceAccount:provision-acme-ro@proj-test.iam.gserviceaccount.com"
ALICE = "user:alice@example.com"
VIEWER, ADMIN, READER = ("roles/storage.objectViewer", "roles/storage.objectAdmin",
                         "roles/storage.legacyBucketReader")
CONDITION = {"title": "until 2027", "expression": 'request.time < timestamp("2027-01-01T00:00:00Z")'}


@pytest.mark.parametrize("access, expected", [
    (Access.readonly, [{"role": VIEWER, "members": [SA]}, {"role": READER, "members": [SA]}]),
    (Access.full, [{"role": ADMIN, "members": [SA]}, {"role": READER, "members": [SA]}]),
])
def test_gcs_bindings_per_access_level(access: Access, expected: list[dict[str, object]]) -> None:
    assert gcs_bindings(access, SA) == expected


def test_merge_into_an_empty_policy_adds_every_binding() -> None:
    assert merge_bindings([], gcs_bindings(Access.readonly, SA), drop_member=SA) == (
        [{"role": VIEWER, "members": [SA]}, {"role": READER, "members": [SA]}], True)


def test_merge_joins_existing_roles_and_leaves_other_members_and_the_input_alone() -> None:
    current = [{"role": VIEWER, "members": [ALICE]}, {"role": "roles/storage.admin", "members": [ALICE]}]
    before = copy.deepcopy(current)
    merged, changed = merge_bindings(current, gcs_bindings(Access.readonly, SA), drop_member=SA)
    assert (merged, changed) == ([{"role": VIEWER, "members": [ALICE, SA]},
                                  {"role": "roles/storage.admin", "members": [ALICE]},
                                  {"role": READER, "members": [SA]}], True)
    assert current == before


def test_merge_of_what_is_already_held_changes_nothing() -> None:
    current = [{"role": READER, "members": [SA]}, {"role": VIEWER, "members": [ALICE, SA]}]
    assert merge_bindings(current, gcs_bindings(Access.readonly, SA), drop_member=SA) == (current, False)


def test_an_access_change_drops_the_member_from_roles_no_longer_wanted() -> None:
    current = [{"role": ADMIN, "members": [SA]}, {"role": READER, "members": [SA]},
               {"role": VIEWER, "members": [ALICE]}]
    assert merge_bindings(current, gcs_bindings(Access.readonly, SA), drop_member=SA) == (
        [{"role": READER, "members": [SA]}, {"role": VIEWER, "members": [ALICE, SA]}], True)


def test_conditional_bindings_are_never_touched() -> None:
    conditional = {"role": ADMIN, "members": [SA], "condition": CONDITION}
    merged, changed = merge_bindings([conditional], gcs_bindings(Access.readonly, SA), drop_member=SA)
    assert (merged, changed) == ([conditional, {"role": VIEWER, "members": [SA]}, {"role": READER, "members": [SA]}],
                                 True)
    same_role = {"role": VIEWER, "members": [SA], "condition": CONDITION}
    merged, _ = merge_bindings([same_role], gcs_bindings(Access.readonly, SA))
    assert merged == [same_role, {"role": VIEWER, "members": [SA]}, {"role": READER, "members": [SA]}]


def test_unbind_removes_only_our_member_and_empty_bindings() -> None:
    current = [{"role": VIEWER, "members": [ALICE, SA]}, {"role": READER, "members": [SA]},
               {"role": ADMIN, "members": [SA], "condition": CONDITION}]
    assert merge_bindings(current, [], drop_member=SA) == (
        [{"role": VIEWER, "members": [ALICE]}, {"role": ADMIN, "members": [SA], "condition": CONDITION}], True)
    assert merge_bindings([{"role": VIEWER, "members": [ALICE]}], [], drop_member=SA) == (
        [{"role": VIEWER, "members": [ALICE]}], False)
