"""Pure builders: exact policy documents, name rules."""

from __future__ import annotations

import pytest

from provision.errors import BadInput
from provision.models import Access
from provision.names import check_env_name, check_iam_name, check_s3_bucket, supervisely_pair
from provision.policies import ec2_trust_policy, policy_json, s3_policy, same_policy


def test_readonly_policy_is_exact() -> None:
    assert s3_policy(["a-public", "a-private"], Access.readonly) == {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "ProvisionBuckets", "Effect": "Allow", "Action": ["s3:GetBucketLocation", "s3:ListBucket"],
             "Resource": ["arn:aws:s3:::a-public", "arn:aws:s3:::a-private"]},
            {"Sid": "ProvisionObjects", "Effect": "Allow", "Action": ["s3:GetObject"],
             "Resource": ["arn:aws:s3:::a-public/*", "arn:aws:s3:::a-private/*"]},
        ],
    }


def test_full_policy_is_exact() -> None:
    doc = s3_policy(["b"], Access.full)
    assert doc["Statement"][0]["Action"] == ["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"]
    assert doc["Statement"][0]["Resource"] == ["arn:aws:s3:::b"]
    assert doc["Statement"][1]["Action"] == ["s3:AbortMultipartUpload", "s3:DeleteObject", "s3:GetObject",
                                             "s3:ListMultipartUploadParts", "s3:PutObject"]
    assert doc["Statement"][1]["Resource"] == ["arn:aws:s3:::b/*"]
    assert "*" not in policy_json(doc).replace("/*", "")


def test_trust_policy_is_ec2_only() -> None:
    assert ec2_trust_policy() == {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]}


def test_same_policy_ignores_order_and_singletons() -> None:
    a = s3_policy(["x", "y"], Access.readonly)
    b = {"Version": "2012-10-17", "Statement": list(reversed(a["Statement"]))}
    b["Statement"][0] = dict(b["Statement"][0], Action="s3:GetObject")
    assert same_policy(a, b)
    assert not same_policy(a, s3_policy(["x"], Access.readonly))
    assert not same_policy(a, s3_policy(["x", "y"], Access.full))


@pytest.mark.parametrize("name", ["abc", "a" * 63, "my.bucket-1", "0123", "acme-public"])
def test_valid_bucket_names(name: str) -> None:
    assert check_s3_bucket(name) == name


@pytest.mark.parametrize("name", ["ab", "a" * 64, "ABC", "a_b", "-ab", "ab-", "a..b", "10.0.0.1", "xn--ab",
                                  "sthree-x", "amzn-s3-demo-x", "x-s3alias", "x--ol-s3", "x.mrap", "x--x-s3",
                                  "x--table-s3", "a b"])
def test_invalid_bucket_names(name: str) -> None:
    with pytest.raises(BadInput) as info:
        check_s3_bucket(name)
    assert repr(name) in str(info.value)


def test_iam_and_env_names() -> None:
    assert check_iam_name("user+=,.@_-1", "--user")
    for bad in ("", "a" * 65, "sp ace", "slash/"):
        with pytest.raises(BadInput):
            check_iam_name(bad, "--user")
    for bad in ("../x", ".hidden", "a/b", ""):
        with pytest.raises(BadInput):
            check_env_name(bad)
    assert supervisely_pair("acme") == ["acme-public", "acme-private"]
