"""The sandbox itself (provision/sandbox_server.py): its S3 follows AWS where moto alone does not (HeadBucket is
ListBucket, a copy needs GetObject on its source, BucketOwnerEnforced refuses ACLs), the listing page cap of
``/_sandbox/limits`` on every service, and secrets at rest (private directory and log, no signature in any log)."""

from __future__ import annotations

import json
import stat
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import unquote

import pytest
from botocore.exceptions import ClientError

from provision import sandbox
from tests.conftest import Admin, AzureAdmin, Cli, GcsAdmin, listing_pages, read_grant


def error_code(call: Any, **kwargs: Any) -> str | None:
    """None when the call succeeds, else S3's error code (``"403"``/``"404"`` for a HEAD, which has no body)."""
    try:
        call(**kwargs)
        return None
    except ClientError as exc:
        return exc.response["Error"]["Code"]


def grant_client(cli: Cli, admin: Admin, *args: str) -> Any:
    """An S3 client signed by the key `provision s3 --env sandbox ARGS` issues (ARGS hold ``--prefix P``: the grant
    is named P)."""
    result = cli("s3", "--env", "sandbox", *args)
    assert result.exit_code == 0, result.output
    auth = read_grant(name=args[list(args).index("--prefix") + 1])["grant"]["auth"]
    return admin.client("s3", auth["access_key"], auth["secret_key"])


@pytest.mark.parametrize("access", ["--readonly", "--full"])
def test_head_bucket_is_authorised_as_list_bucket(cli: Cli, admin: Admin, prefix: str, access: str) -> None:
    """AWS authorises HeadBucket as s3:ListBucket (CVAT's attach check and minio's bucketExists call it); no policy
    needs (or holds) an s3:HeadBucket action."""
    s3 = grant_client(cli, admin, "--prefix", prefix, access)
    other = f"{prefix}-other"
    admin.s3.create_bucket(Bucket=other)
    for bucket in (f"{prefix}-public", f"{prefix}-private"):
        assert error_code(s3.head_bucket, Bucket=bucket) is None
    assert error_code(s3.head_bucket, Bucket=other) == "403"
    assert error_code(s3.head_bucket, Bucket=f"{prefix}-missing") == "403"  # AWS: no ListBucket, no existence leak
    user = f"provision-{prefix}-{'full' if access == '--full' else 'readonly'}"
    policy = admin.iam.get_user_policy(UserName=user, PolicyName=f"provision-sandbox-{prefix}")["PolicyDocument"]
    assert "s3:HeadBucket" not in json.dumps(policy)
    assert admin.s3.head_bucket(Bucket=other)["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_copy_needs_get_object_on_the_source(cli: Cli, admin: Admin, prefix: str) -> None:
    """CopyObject and UploadPartCopy need s3:GetObject on the source as well as s3:PutObject on the target."""
    s3 = grant_client(cli, admin, "--prefix", prefix, "--full")
    mine, outside = f"{prefix}-private", f"{prefix}-outside"
    admin.s3.create_bucket(Bucket=outside)
    admin.s3.put_object(Bucket=outside, Key="secret.bin", Body=b"secret")
    admin.s3.put_object(Bucket=mine, Key="mine.bin", Body=b"mine")

    assert error_code(s3.copy_object, Bucket=mine, Key="copy.bin", CopySource={"Bucket": mine, "Key": "mine.bin"}) \
        is None
    assert admin.s3.get_object(Bucket=mine, Key="copy.bin")["Body"].read() == b"mine"
    assert error_code(s3.copy_object, Bucket=mine, Key="stolen.bin",
                      CopySource={"Bucket": outside, "Key": "secret.bin"}) == "AccessDenied"
    upload = s3.create_multipart_upload(Bucket=mine, Key="parts.bin")["UploadId"]
    assert error_code(s3.upload_part_copy, Bucket=mine, Key="parts.bin", UploadId=upload, PartNumber=1,
                      CopySource={"Bucket": outside, "Key": "secret.bin"}) == "AccessDenied"
    assert error_code(s3.upload_part_copy, Bucket=mine, Key="parts.bin", UploadId=upload, PartNumber=1,
                      CopySource={"Bucket": mine, "Key": "mine.bin"}) is None
    s3.abort_multipart_upload(Bucket=mine, Key="parts.bin", UploadId=upload)
    keys = [o["Key"] for o in admin.s3.list_objects_v2(Bucket=mine)["Contents"]]
    assert "stolen.bin" not in keys
    assert error_code(admin.s3.copy_object, Bucket=mine, Key="by-admin.bin",
                      CopySource={"Bucket": outside, "Key": "secret.bin"}) is None

    readonly = grant_client(cli, admin, "--prefix", f"{prefix}r", "--readonly")
    assert error_code(readonly.copy_object, Bucket=f"{prefix}r-private", Key="x",
                      CopySource={"Bucket": mine, "Key": "mine.bin"}) == "AccessDenied"


def test_bucket_owner_enforced_refuses_acls(cli: Cli, admin: Admin, prefix: str) -> None:
    """On a BucketOwnerEnforced bucket (as provision makes them) an ACL other than bucket-owner-full-control
    (objects) or private (buckets) is refused with 400 AccessControlListNotSupported; elsewhere ACLs still work."""
    s3 = grant_client(cli, admin, "--prefix", prefix, "--full")
    bucket = f"{prefix}-public"
    assert admin.s3.get_bucket_ownership_controls(Bucket=bucket)["OwnershipControls"]["Rules"] == [
        {"ObjectOwnership": "BucketOwnerEnforced"}]

    def refused(call: Any, **kwargs: Any) -> bool:
        try:
            call(**kwargs)
            return False
        except ClientError as exc:
            assert exc.response["Error"]["Code"] == "AccessControlListNotSupported", exc.response
            assert exc.response["ResponseMetadata"]["HTTPStatusCode"] == 400
            return True

    assert refused(s3.put_object, Bucket=bucket, Key="public.jpg", Body=b"x", ACL="public-read")
    assert refused(s3.put_object, Bucket=bucket, Key="granted.jpg", Body=b"x",
                   GrantRead='uri="http://acs.amazonaws.com/groups/global/AllUsers"')
    assert not refused(s3.put_object, Bucket=bucket, Key="owner.jpg", Body=b"x", ACL="bucket-owner-full-control")
    assert not refused(s3.put_object, Bucket=bucket, Key="plain.jpg", Body=b"x")
    assert refused(s3.create_multipart_upload, Bucket=bucket, Key="big.bin", ACL="public-read")
    assert refused(s3.copy_object, Bucket=bucket, Key="copy.jpg", CopySource={"Bucket": bucket, "Key": "plain.jpg"},
                   ACL="public-read")
    assert refused(admin.s3.put_object_acl, Bucket=bucket, Key="plain.jpg", ACL="public-read")
    assert refused(admin.s3.put_bucket_acl, Bucket=bucket, ACL="public-read")
    owner = admin.s3.get_bucket_acl(Bucket=bucket)["Owner"]
    assert refused(admin.s3.put_bucket_acl, Bucket=bucket, AccessControlPolicy={"Owner": owner, "Grants": [
        {"Grantee": {"Type": "Group", "URI": "http://acs.amazonaws.com/groups/global/AllUsers"},
         "Permission": "READ"}]})
    assert not refused(admin.s3.put_bucket_acl, Bucket=bucket, ACL="private")
    keys = {o["Key"] for o in admin.s3.list_objects_v2(Bucket=bucket)["Contents"]}
    assert keys == {"owner.jpg", "plain.jpg"}

    legacy = f"{prefix}-legacy"  # no ownership controls: ACLs are not disabled there
    admin.s3.create_bucket(Bucket=legacy)
    assert not refused(admin.s3.put_object, Bucket=legacy, Key="public.jpg", Body=b"x", ACL="public-read")


def test_s3_listing_page_cap(admin: Admin, prefix: str) -> None:
    bucket = f"{prefix}-pages"
    admin.s3.create_bucket(Bucket=bucket)
    keys = [f"k/{i:02d}" for i in range(7)]
    for key in keys:
        admin.s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    url = admin.info.s3.endpoint_url
    with listing_pages(url, 3):
        first = admin.s3.list_objects_v2(Bucket=bucket)
        assert (first["KeyCount"], first["IsTruncated"]) == (3, True)
        assert admin.s3.list_objects_v2(Bucket=bucket, MaxKeys=2)["KeyCount"] == 2  # a smaller ask is kept
        for operation, field in (("list_objects_v2", "Contents"), ("list_objects", "Contents"),
                                 ("list_object_versions", "Versions")):
            pages = list(admin.s3.get_paginator(operation).paginate(Bucket=bucket))
            assert [len(p[field]) for p in pages] == [3, 3, 1], operation
            assert [o["Key"] for p in pages for o in p[field]] == keys
    assert len(list(admin.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket))) == 1  # {} cleared it


def test_azure_listing_page_cap(azure_admin: AzureAdmin, prefix: str) -> None:
    """Azurite's List Blobs is capped for a SharedKey-signed request (re-signed by the proxy) and a SAS alike; a
    wrong key stays refused."""
    from datetime import datetime, timedelta, timezone

    from azure.core.exceptions import HttpResponseError
    from azure.storage.blob import BlobServiceClient, ContainerSasPermissions, generate_container_sas

    container = azure_admin.blob.create_container(f"{prefix}-pages")
    names = [f"k/{i:02d}" for i in range(7)]
    for name in names:
        container.upload_blob(name, b"x")
    account = azure_admin.account
    sas = generate_container_sas(account.name, container.container_name, account_key=account.key1,
                                 permission=ContainerSasPermissions(read=True, list=True),
                                 expiry=datetime.now(timezone.utc) + timedelta(hours=1))
    wrong = BlobServiceClient(azure_admin.endpoint.account_url(), credential={
        "account_name": account.name, "account_key": azure_admin.endpoint.other.key1},
        connection_verify=azure_admin.endpoint.ca_file, retry_total=0)
    with listing_pages(azure_admin.endpoint.blob_url, 3):
        for client in (container, azure_admin.client(sas).get_container_client(container.container_name)):
            pages = [[b.name for b in page] for page in client.list_blobs().by_page()]
            assert [len(p) for p in pages] == [3, 3, 1]
            assert [n for p in pages for n in p] == names
        with pytest.raises(HttpResponseError) as refused:
            list(wrong.get_container_client(container.container_name).list_blobs())
        assert refused.value.status_code == 403
    assert len(list(container.list_blobs().by_page())) == 1
    container.delete_container()


def test_gcs_listing_page_cap(gcs_admin: GcsAdmin, prefix: str) -> None:
    """The GCS emulator answers objects.list in one page; the proxy pages it (cap, maxResults, pageToken)."""
    bucket = gcs_admin.storage.create_bucket(f"{prefix}-pages")
    names = [f"k/{i:02d}" for i in range(7)] + ["top"]
    for name in names:
        bucket.blob(name).upload_from_string(b"x")
    with listing_pages(gcs_admin.endpoint.endpoint_url, 3):
        pages = [[b.name for b in page] for page in gcs_admin.storage.list_blobs(bucket).pages]
        assert [len(p) for p in pages] == [3, 3, 2] and [n for p in pages for n in p] == names
        pages = list(gcs_admin.storage.list_blobs(bucket, max_results=2, page_size=2).pages)
        assert [[b.name for b in p] for p in pages] == [names[:2]]  # max_results: the first 2, in 1 page of 2
        listing = gcs_admin.storage.list_blobs(bucket, delimiter="/")
        assert [b.name for page in listing.pages for b in page] == ["top"] and listing.prefixes == {"k/"}
    assert len(list(gcs_admin.storage.list_blobs(bucket).pages)) == 1
    for name in names:
        bucket.blob(name).delete()
    bucket.delete()


def test_sandbox_secrets_at_rest(admin: Admin, prefix: str) -> None:
    """The sandbox directory is 0700 and every file in it 0600 (whatever the umask); no presigned-URL or SAS
    signature reaches any log (the request log or the process's output, werkzeug's access lines included)."""
    directory = sandbox.sandbox_dir()
    bucket = f"{prefix}-signed"
    admin.s3.create_bucket(Bucket=bucket)
    admin.s3.put_object(Bucket=bucket, Key="a.txt", Body=b"signed")
    import boto3
    from botocore.config import Config

    info = admin.info
    signer = boto3.client("s3", endpoint_url=info.s3.endpoint_url, region_name=info.s3.region,
                          aws_access_key_id=info.s3.access_key, aws_secret_access_key=info.s3.secret_key,
                          config=Config(signature_version="s3v4"))
    url = signer.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "a.txt"}, ExpiresIn=300)
    try:  # moto 5.2 under IAM enforcement answers a presigned URL 500 (it wants an Authorization header)
        urllib.request.urlopen(url, timeout=10).close()
    except urllib.error.HTTPError:
        pass
    signatures = [url.rsplit("X-Amz-Signature=", 1)[1].split("&")[0]]
    if info.azure is not None:
        from datetime import datetime, timedelta, timezone

        from azure.storage.blob import ContainerSasPermissions, generate_container_sas

        azure = AzureAdmin(info)
        container = azure.blob.create_container(f"{prefix}-signed")
        sas = generate_container_sas(azure.account.name, container.container_name, account_key=azure.account.key1,
                                     permission=ContainerSasPermissions(read=True, list=True),
                                     expiry=datetime.now(timezone.utc) + timedelta(hours=1))
        assert list(azure.client(sas).get_container_client(container.container_name).list_blobs()) == []
        container.delete_container()
        signatures.append(dict(p.split("=", 1) for p in sas.split("&"))["sig"])
    assert signatures[0] in url  # the signatures were really sent...
    log = directory / "sandbox.log"
    text = log.read_text(errors="replace")
    assert "X-Amz-Signature=REDACTED" in text  # ...werkzeug logged the presigned request, masked
    for path in [log, *(p for p in directory.rglob("*") if p.is_file() and p.suffix in (".log", ".json"))]:
        content = path.read_text(errors="replace")
        for sig in signatures:
            assert sig not in content and unquote(sig) not in content, path
    for service in filter(None, (info.s3.endpoint_url, info.gcs and info.gcs.endpoint_url,
                                 info.azure and info.azure.blob_url)):
        logged = json.dumps(sandbox.request_log(service))
        assert not any(sig in logged for sig in signatures), service

    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    for path in [directory, *directory.rglob("*")]:
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except FileNotFoundError:  # Azurite saves its database to a `~` file renamed over the real one
            continue
        assert mode & 0o077 == 0, (path, oct(mode))
    assert stat.S_IMODE(log.stat().st_mode) == 0o600


def test_redact_masks_every_signature_form() -> None:
    from provision.sandbox_server import redact

    line = ('127.0.0.1 - - "GET /c?sv=2024&sig=abc%2Bdef&se=1 HTTP/1.1" 200 - '
            "X-Amz-Signature=0123abcd&X-Amz-Date=1 x-goog-signature=ffee Signature=zz, SignedHeaders=host")
    masked = redact(line)
    for secret in ("abc%2Bdef", "0123abcd", "ffee", "zz,"):
        assert secret not in masked
    assert masked.count("REDACTED") == 4 and "se=1" in masked and "X-Amz-Date=1" in masked


def test_control_paths(admin: Admin) -> None:
    url = admin.info.s3.endpoint_url
    sandbox.control(url, "limits", {"max_keys": 5})
    sandbox.control(url, "limits", {})
    request = urllib.request.Request(f"{url}/_sandbox/nope", data=b"{}", method="POST")
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(request, timeout=10)
    assert missing.value.code == 404
