"""Which grant Supervisely can use for what (pure decisions over Grants)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from provision.errors import BadInput
from provision.models import Ambient, Grant, KeyFile, KeyPair, Role, SasToken
from provision.roles import choose_storage, links_connection, storage_gaps, storage_pair

PAIR = ["acme-public", "acme-private"]


def s3(access: str = "full", buckets: list[str] | None = None, auth: object = None) -> Grant:
    return Grant(provider="s3", storage_provider="minio", access=access, buckets=buckets or PAIR,
                 endpoint="s3.amazonaws.com", port=443, region="eu-central-1",
                 auth=auth or KeyPair(access_key="AKIA", secret_key="s"))


def azure(auth: object, access: str = "full") -> Grant:
    return Grant(provider="azure", storage_provider="azure", access=access, buckets=PAIR,
                 endpoint="https://acct.blob.core.windows.net", auth=auth)


def gcs(auth: object, access: str = "full") -> Grant:
    return Grant(provider="gcs", storage_provider="google", access=access, buckets=PAIR,
                 endpoint="storage.googleapis.com", auth=auth)


SAS = SasToken(account_name="acct", token="sv=1&sig=x", expires_at=datetime(2030, 1, 1, tzinfo=timezone.utc))


def test_storage_pair() -> None:
    assert storage_pair(PAIR) == "acme"
    assert storage_pair(["x-private", "x-public", "y"]) == "x"
    assert storage_pair(["acme-public"]) is None


@pytest.mark.parametrize("grant, gaps", [
    (s3(), []),
    (s3(auth=Role(role_name="r")), []),
    (azure(KeyPair(access_key="acct", secret_key="k")), []),
    (gcs(KeyFile(path="/k.json")), []),
    (gcs(KeyPair(access_key="GOOG", secret_key="s")), []),
    (s3("readonly"), ["write", "delete", "multipart"]),
    (s3(buckets=["data"]), ["the bucket pair P-public / P-private"]),
])
def test_storage_gaps(grant: Grant, gaps: list[str]) -> None:
    assert storage_gaps(grant) == gaps


def test_sas_and_keyless_never_qualify() -> None:
    assert storage_gaps(azure(SAS))[0].startswith("a credential Supervisely's Azure storage takes (it holds a SAS")
    assert "keyless" in storage_gaps(gcs(Ambient()))[0]


def test_choose_storage() -> None:
    grants = {"ro": s3("readonly"), "rw": s3(), "sas": azure(SAS)}
    assert choose_storage(grants, None, "e") == "rw"
    assert choose_storage({"ro": s3("readonly")}, None, "e") is None
    with pytest.raises(BadInput, match="'ro' cannot be Supervisely's instance storage.*lacks write, delete, multipart"):
        choose_storage(grants, "ro", "e")
    with pytest.raises(BadInput, match="lacks a credential Supervisely's Azure storage takes"):
        choose_storage(grants, "sas", "e")
    with pytest.raises(BadInput, match="'rw', 'rw2' can each be"):
        choose_storage({"rw": s3(), "rw2": s3()}, None, "e")
    with pytest.raises(BadInput, match="--storage 'nope' is not a grant"):
        choose_storage(grants, "nope", "e")
    with pytest.raises(BadInput, match="keyless GCS grant"):
        choose_storage({"k": gcs(Ambient())}, "k", "e")


def test_links_connections_in_supervisely_format() -> None:
    assert links_connection("data", s3("readonly", ["data"]), "e") == {
        "provider": "minio", "endpoint": "s3.amazonaws.com", "access_key": "AKIA", "secret_key": "s",
        "region": "eu-central-1", "buckets": ["data"]}
    assert links_connection("az", azure(SAS, "readonly"), "e") == {
        "provider": "azure", "endpoint": "https://acct.blob.core.windows.net", "access_key": "acct",
        "secret_key": "sv=1&sig=x", "buckets": PAIR}
    assert links_connection("g", gcs(KeyFile(path="/k.json"), "readonly"), "e") == {
        "provider": "google", "endpoint": "storage.googleapis.com", "credentials_path": "/gcs-g.json",
        "buckets": PAIR}
    assert links_connection("r", s3(auth=Role(role_name="sv")), "e")["iam_role"] == "sv"
    for keyless in (gcs(Ambient()), azure(Ambient())):
        with pytest.raises(BadInput, match="Supervisely takes IAM roles for AWS S3 only"):
            links_connection("k", keyless, "e")
