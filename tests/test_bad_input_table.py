"""Every bad input, every command: exit 2, exactly one line ``error: <problem> — <fix>`` on stderr naming the
problem, nothing on stdout, no traceback, no hang, no mutating request to the sandbox, and the working directory
and the state directory unchanged byte for byte and mode for mode.

One table (`CASES`); each row is the command line, a needle the message must hold, and optionally text it must NOT
hold (a profile's secret) and environment variables. The fixture `prepared` lays out every profile, state file and
output directory the rows refer to, once per test."""

from __future__ import annotations

import json
import os
import signal
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from provision import sandbox
from provision.cli import SECRET_ARGUMENTS
from provision.models import Access, Grant, KeyPair, Role, SasToken
from provision.state import GrantState, State, StateStore
from tests.conftest import Admin, Cli, single_grant_state

HANG_SECONDS = 30
"""A case that takes longer than this has hung (a FIFO opened for writing, a prompt waiting for input...)."""
GUID = "0d8a1b2c-3e4f-4a5b-8c6d-7e8f9a0b1c2d"
SECRET = "c2VjcmV0LWtleS1ub3QtdG8tYmUtZWNob2Vk"
ACCOUNT_KEY_LINE = f"DefaultEndpointsProtocol=https;AccountName=svstore01;AccountKey={SECRET}"
LATER = datetime.now(timezone.utc) + timedelta(days=30)


@dataclass
class Case:
    args: list[str]
    needle: str
    forbidden: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)


CASES: dict[str, Case] = {}


def case(name: str, needle: str, *args: str, forbidden: tuple[str, ...] = (), **env: str) -> None:
    assert name not in CASES, name
    CASES[name] = Case(list(args), needle, forbidden, env)


# ---- s3 ---------------------------------------------------------------------------------------------------------
S3 = ("s3", "--env", "sandbox")
S3P = (*S3, "--prefix", "acme")
for label, bucket, needle in [
    ("uppercase", "Bad_Bucket", "invalid bucket name"), ("short", "ab", "3–63 characters"),
    ("long", "b" * 64, "3–63 characters"), ("ip", "192.168.1.1", "IP address"), ("xn prefix", "xn--bucket", "reserved"),
    ("sthree prefix", "sthree-data", "reserved"), ("demo prefix", "amzn-s3-demo-x", "reserved"),
    ("adjacent periods", "a..bucket", "adjacent periods"), ("trailing hyphen", "bucket-", "begin and end"),
    ("leading hyphen", "-bucket", "no such option"), ("leading period", ".bucket", "begin and end"),
    ("s3alias suffix", "data-s3alias", "reserved"), ("ol-s3 suffix", "data--ol-s3", "reserved"),
    ("mrap suffix", "data.mrap", "reserved"), ("x-s3 suffix", "data--x-s3", "reserved"),
    ("table suffix", "data--table-s3", "reserved"), ("underscore", "bucket_name", "invalid bucket name"),
    ("non-ascii", "bücket", "invalid bucket name"), ("space", "my bucket", "invalid bucket name"),
]:
    case(f"s3 bucket {label}", needle, *S3, bucket)
case("s3 bucket empty", "BUCKET is empty", *S3, "")
case("s3 bucket blank", "BUCKET is empty", *S3, "   ")
case("s3 prefix uppercase", "invalid --prefix", *S3, "--prefix", "Acme")
case("s3 prefix leading hyphen", "invalid --prefix", *S3, "--prefix=-acme")
case("s3 prefix underscore", "invalid --prefix", *S3, "--prefix", "ac_me")
case("s3 prefix empty", "--prefix is empty", *S3, "--prefix", "")
case("s3 prefix too long", "3–63 characters", *S3, "--prefix", "p" * 60)
case("s3 readonly and full", "mutually exclusive", *S3P, "--readonly", "--full")
case("s3 role and user", "mutually exclusive", *S3P, "--iam-role", "r", "--user", "u")
case("s3 no bucket", "no bucket given", *S3)
case("s3 bucket and prefix", "not both", *S3, "acme-x", "--prefix", "acme")
case("s3 repeated bucket", "repeat", *S3, "acme-x", "acme-x")
case("s3 user bad chars", "invalid --user", *S3P, "--user", "bad user!")
case("s3 user too long", "1–64", *S3P, "--user", "u" * 65)
case("s3 user non-ascii", "invalid --user", *S3P, "--user", "üser")
case("s3 user empty", "--user is empty", *S3P, "--user", "")
case("s3 role too long", "1–64", *S3P, "--iam-role", "r" * 65)
case("s3 role bad chars", "invalid --iam-role", *S3P, "--iam-role", "bad/role")
case("s3 role empty", "--iam-role is empty", *S3P, "--iam-role", "")
case("s3 region empty", "--region is empty", *S3P, "--region", "")
case("s3 region with space", "invalid --region", *S3P, "--region", "eu west 1")
case("s3 region bad chars", "invalid --region", *S3P, "--region", "eu/west")
case("s3 aws region unknown shape", "invalid --region", "s3", "--env", "awsish", "--prefix", "acme", "--region",
     "europe")
case("s3 aws region uppercase", "invalid --region", "s3", "--env", "awsish", "--prefix", "acme", "--region",
     "EU-WEST-1")
case("s3 endpoint empty", "--endpoint-url is empty", *S3P, "--endpoint-url", "")
case("s3 endpoint ftp", "endpoint", *S3P, "--endpoint-url", "ftp://x")
case("s3 endpoint no scheme", "endpoint", *S3P, "--endpoint-url", "minio.local:9000")
case("s3 endpoint no host", "endpoint", *S3P, "--endpoint-url", "http://")
case("s3 endpoint bad port", "endpoint", *S3P, "--endpoint-url", "http://minio.local:notaport")
case("s3 endpoint port out of range", "endpoint", *S3P, "--endpoint-url", "http://minio.local:99999")
case("s3 endpoint with space", "endpoint", *S3P, "--endpoint-url", "http://mi nio.local")
case("s3 iam endpoint empty", "--iam-endpoint-url is empty", *S3P, "--iam-endpoint-url", "")
case("s3 iam endpoint no scheme", "endpoint", *S3P, "--iam-endpoint-url", "iam.wasabisys.com")
case("s3 issuer unknown", "--issuer", *S3P, "--issuer", "ceph")
case("s3 issuer empty", "--issuer is empty", *S3P, "--issuer", "")
case("s3 key expiry empty", "--key-expiry is empty", *S3P, "--issuer", "minio", "--key-expiry", "")
case("s3 key expiry words", "--key-expiry", *S3P, "--issuer", "minio", "--key-expiry", "soon")
case("s3 key expiry zero", "--key-expiry", *S3P, "--issuer", "minio", "--key-expiry", "0d")
case("s3 key expiry negative", "--key-expiry", *S3P, "--issuer", "minio", "--key-expiry=-5d")
case("s3 key expiry unit", "--key-expiry", *S3P, "--issuer", "minio", "--key-expiry", "30x")
case("s3 key expiry no zone", "--key-expiry", *S3P, "--issuer", "minio", "--key-expiry", "2030-01-01T00:00:00")
case("s3 key expiry with aws-iam", "--key-expiry applies to --issuer minio", *S3P, "--issuer", "aws-iam",
     "--key-expiry", "30d")
case("s3 minio with role", "MinIO has no IAM roles", *S3P, "--issuer", "minio", "--iam-role", "r")
case("s3 minio with iam endpoint", "does not apply to --issuer minio", *S3P, "--issuer", "minio",
     "--iam-endpoint-url", "https://iam.example.com")
case("s3 grant empty", "--grant is empty", *S3P, "--grant", "")
case("s3 grant uppercase", "invalid --grant", *S3P, "--grant", "Acme")
case("s3 grant with space", "invalid --grant", *S3P, "--grant", "a b")
case("s3 grant too long", "invalid --grant", *S3P, "--grant", "g" * 64)
case("s3 env empty", "--env is empty", "s3", "--env", "", "--prefix", "acme")
case("s3 env escapes state dir", "invalid --env", "s3", "--env", "../etc", "--prefix", "acme")
case("s3 env with slash", "invalid --env", "s3", "--env", "a/b", "--prefix", "acme")
case("s3 env hidden", "invalid --env", "s3", "--env", ".hidden", "--prefix", "acme")
case("s3 env too long", "invalid --env", "s3", "--env", "e" * 65, "--prefix", "acme")
case("s3 azure flag", "--account", *S3P, "--account", "x")
case("s3 unknown flag", "--no-such-flag", *S3P, "--no-such-flag")
case("s3 region without value", "--region", *S3P, "--region")
case("s3 policy over IAM size", "2048", *S3, *[f"bucket-number-{i:03d}-with-a-long-name" for i in range(40)])
case("s3 state dir is a file", "not a directory", *S3P, PROVISION_STATE_DIR="afile")
case("s3 sandbox dir is a file", "sandbox is not running", *S3P, PROVISION_SANDBOX_DIR="afile")
case("s3 rotate nothing yet", "nothing to rotate", *S3, "--prefix", "fresh", "--rotate")
case("s3 grant of another provider", "azure grant", "s3", "--env", "azsas", "--grant", "default", "acme-x")

# ---- azure ------------------------------------------------------------------------------------------------------
AZ = ("azure", "--env", "sandbox")
AZC = ("azure", "--env", "azcloud", "--prefix", "acme", "--account", "svstore01")
for label, container, needle in [
    ("uppercase", "Bad_Container", "invalid container name"), ("short", "ab", "3–63 characters"),
    ("long", "c" * 64, "3–63 characters"), ("double dash", "a--b", "consecutive dashes"),
    ("leading dash", "-abc", "no such option"), ("period", "a.bc", "invalid container name"),
]:
    case(f"azure container {label}", needle, *AZ, container)
case("azure container empty", "CONTAINER is empty", *AZ, "")
case("azure prefix uppercase", "invalid --prefix", *AZ, "--prefix", "Acme")
case("azure no container", "no container", *AZ)
case("azure readonly and full", "mutually exclusive", *AZ, "--prefix", "acme", "--readonly", "--full")
case("azure account uppercase", "invalid storage account name", *AZC[:5], "--account", "UPPER")
case("azure account short", "3–24 characters", *AZC[:5], "--account", "ab")
case("azure account long", "3–24 characters", *AZC[:5], "--account", "a" * 25)
case("azure account empty", "--account is empty", *AZC[:5], "--account", "")
case("azure no account", "no storage account given", *AZC[:5])
case("azure resource group slash", "invalid --resource-group", *AZC, "--resource-group", "bad/rg")
case("azure resource group dot", "invalid --resource-group", *AZC, "--resource-group", "rg.")
case("azure resource group empty", "--resource-group is empty", *AZC, "--resource-group", "")
case("azure location display name", "invalid --location", *AZC, "--location", "West Europe")
case("azure location underscore", "invalid --location", *AZC, "--location", "west_europe")
case("azure location empty", "--location is empty", *AZC, "--location", "")
case("azure subscription not guid", "invalid --subscription", *AZC, "--subscription", "my-sub")
case("azure subscription empty", "--subscription is empty", *AZC, "--subscription", "")
case("azure connection string empty", "--connection-string is empty", "azure", "--env", "azcloud", "--prefix",
     "acme", "--connection-string", "")
case("azure connection string garbage", "connection string", "azure", "--env", "azcloud", "--prefix", "acme",
     "--connection-string", "garbage", forbidden=("garbage",))
case("azure connection string in sandbox", "does not apply to --env sandbox", *AZ, "--prefix", "acme",
     "--connection-string", ACCOUNT_KEY_LINE, forbidden=(SECRET,))
case("azure location in sandbox", "management plane", *AZ, "--prefix", "acme", "--location", "westeurope")
case("azure sas expiry words", "--sas-expiry", *AZ, "--prefix", "acme", "--sas-expiry", "forever")
case("azure sas expiry zero", "--sas-expiry", *AZ, "--prefix", "acme", "--sas-expiry", "0d")
case("azure sas expiry empty", "--sas-expiry is empty", *AZ, "--prefix", "acme", "--sas-expiry", "")
case("azure renew before words", "--renew-before", *AZ, "--prefix", "acme", "--renew-before", "x")
case("azure renew before empty", "--renew-before is empty", *AZ, "--prefix", "acme", "--renew-before", "")
case("azure keyless not guid", "invalid --keyless", *AZC, "--keyless", "not-a-guid")
case("azure keyless empty", "--keyless is empty", *AZC, "--keyless", "")
case("azure account key and keyless", "mutually exclusive", *AZC, "--account-key", "--keyless", GUID)
case("azure account key readonly", "cannot be read-only", *AZC, "--account-key", "--readonly")
case("azure sas expiry with account key", "applies to a SAS", *AZC, "--account-key", "--full", "--sas-expiry",
     "30d")
case("azure grant uppercase", "invalid --grant", *AZ, "--prefix", "acme", "--grant", "Bad")
case("azure gcs flag", "--project", *AZ, "--prefix", "acme", "--project", "p")

# ---- gcs --------------------------------------------------------------------------------------------------------
GS = ("gcs", "--env", "sandbox")
GC = ("gcs", "--env", "gcscloud", "--prefix", "acme")
for label, bucket, needle in [
    ("goog prefix", "goog-data", "goog"), ("google inside", "my-google-data", "google"),
    ("uppercase", "Bad_Bucket", "invalid bucket name"), ("short", "ab", "3–63 characters"),
    ("ip", "192.168.0.1", "IP address"), ("long", "g" * 64, "3–63 characters"),
    ("leading dash", "-gcs", "no such option"),
]:
    case(f"gcs bucket {label}", needle, *GS, bucket)
case("gcs bucket empty", "BUCKET is empty", *GS, "")
case("gcs no bucket", "no bucket", *GS)
case("gcs location bad chars", "--location", *GS, "--prefix", "acme", "--location", "not a location!")
case("gcs location empty", "--location is empty", *GS, "--prefix", "acme", "--location", "")
case("gcs project uppercase", "invalid --project", *GC, "--project", "BAD")
case("gcs project empty", "--project is empty", *GC, "--project", "")
case("gcs no project", "no --project given", *GC)
case("gcs service account bad", "--service-account", *GC, "--project", "my-project", "--service-account", "Bad_SA")
case("gcs service account empty", "--service-account is empty", *GC, "--project", "my-project",
     "--service-account", "")
case("gcs hmac and keyless", "mutually exclusive", *GS, "--prefix", "acme", "--hmac", "--keyless")
case("gcs readonly and full", "mutually exclusive", *GS, "--prefix", "acme", "--readonly", "--full")
case("gcs hmac in sandbox", "cannot be issued here", *GS, "--prefix", "acme", "--hmac")
case("gcs azure flag", "--account", *GS, "--prefix", "acme", "--account", "x")

# ---- profiles (envs/<env>.yaml) ---------------------------------------------------------------------------------
PROFILES: dict[str, bytes] = {
    "typo": b"provider: s3\nacces: full\n",
    "broken": b"provider: s3\nbuckets: [a, b\n",
    "listy": b"- s3\n- acme\n",
    "scalar": b"just a string\n",
    "azprofile": b"provider: azure\n",
    "dupkey": b"provider: s3\nprefix: acme\nprefix: other\n",
    "nonutf8": b"provider: s3\nprefix: \xff\xfe\n",
    "bomb": b"a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
            b"c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
            b"e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
            b"g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\nbuckets: *g\n",
    "buckets-string": b"provider: s3\nbuckets: acme-x\n",
    "bad-access": b"provider: s3\nprefix: acme\naccess: everything\n",
    "bad-bool": b"provider: s3\nprefix: acme\nsandbox: maybe\n",
    "bad-provider": b"provider: ftp\nprefix: acme\n",
    "foreign-field": b"provider: s3\nprefix: acme\naccount: svstore01\n",
    "empty-user": b"provider: s3\nuser: ''\n",
    "bad-bucket": b"provider: s3\nbuckets: [Bad_Bucket]\n",
    "bad-endpoint": b"provider: s3\nprefix: acme\nendpoint_url: ftp://x\n",
    "tabs": b"provider: s3\n\tprefix: acme\n",
    "nested": b"provider: s3\nuser:\n  name: acme\n",
    "secret-broken": f"provider: azure\nprefix: acme\nconnection_string: \"{ACCOUNT_KEY_LINE}\n".encode(),
    "secret-unknown": f"provider: azure\nprefix: acme\nconectionstring: {ACCOUNT_KEY_LINE}\n".encode(),
    "secret-key-as-key": f"provider: azure\nprefix: acme\n{ACCOUNT_KEY_LINE}: 1\n".encode(),
    "secret-list": f"- {ACCOUNT_KEY_LINE}\n".encode(),
    "secret-dup": f"provider: azure\nprefix: acme\nconnection_string: {ACCOUNT_KEY_LINE}\n"
                  f"connection_string: {ACCOUNT_KEY_LINE}\n".encode(),
    "secret-wrong-type": f"provider: azure\nprefix: acme\nconnection_string: [{ACCOUNT_KEY_LINE}]\n".encode(),
    "secret-tab": f"provider: azure\nprefix: acme\n\tconnection_string: {ACCOUNT_KEY_LINE}\n".encode(),
    "awsish": b"provider: s3\n",
    "azcloud": b"provider: azure\n",
    "gcscloud": b"provider: gcs\n",
}
for label, needle in [("typo", "acces"), ("broken", "not valid YAML"), ("listy", "mapping"), ("scalar", "mapping"),
                      ("azprofile", "azure profile"), ("dupkey", "duplicate key"), ("nonutf8", "UTF-8"),
                      ("bomb", "alias"), ("buckets-string", "buckets"), ("bad-access", "access"),
                      ("bad-bool", "sandbox"), ("bad-provider", "provider"), ("foreign-field", "'account'"),
                      ("empty-user", "'user'"), ("bad-bucket", "invalid bucket name"),
                      ("bad-endpoint", "endpoint"), ("tabs", "not valid YAML"), ("nested", "'user'")]:
    case(f"profile {label}", needle, "s3", "--env", label, *(["--prefix", "acme"] if label != "bad-bucket" else []))
for label, needle in [("secret-broken", "not valid YAML"), ("secret-unknown", "conectionstring"),
                      ("secret-key-as-key", "no option name"), ("secret-list", "mapping"),
                      ("secret-dup", "duplicate key"), ("secret-wrong-type", "connection_string"),
                      ("secret-tab", "not valid YAML")]:
    case(f"profile {label}", needle, "azure", "--env", label, forbidden=(SECRET, "AccountKey"))
case("profile is a directory", "profile", "s3", "--env", "dirprofile", "--prefix", "acme")

# ---- state files ------------------------------------------------------------------------------------------------
STATES: dict[str, bytes] = {
    "corrupt": b"{not json",
    "empty-state": b"",
    "nonutf8-state": b"\xff\xfe{}",
    "list-state": b'["x"]',
    "newer": json.dumps({"version": 99, "env": "newer"}).encode(),
    "unknown-keys": json.dumps({"version": 2, "env": "unknown-keys", "surprise": 1}).encode(),
    "bad-grant-name": json.dumps({"version": 2, "env": "bad-grant-name", "grants": {"Bad Name": {}}}).encode(),
}
STATE_NEEDLES = {"corrupt": "corrupt", "empty-state": "corrupt", "nonutf8-state": "corrupt",
                 "list-state": "corrupt", "newer": "newer than this provision knows", "unknown-keys": "corrupt",
                 "bad-grant-name": "corrupt", "dir-state": "not a regular file"}
for env_name, needle in STATE_NEEDLES.items():
    for command in (["render-env", "--out", "svout"], ["verify"], ["status"], ["destroy", "--yes"], ["links"],
                    ["s3", "--prefix", "acme"]):
        case(f"state {env_name} {command[0]}", needle, *command[:1], "--env", env_name, *command[1:])
case("state corrupt migrate", "corrupt", "migrate", "--env", "corrupt", "--data-path", "data")
case("state corrupt manifest", "corrupt", "manifest", "--env", "corrupt")

# ---- render-env -------------------------------------------------------------------------------------------------
RE = ("render-env", "--env", "sv")
case("render before provision", "nothing provisioned", "render-env", "--env", "nosuch", "--out", ".")
case("render into missing dir", "not an existing", *RE, "--out", "/nonexistent/dir")
case("render into a file", "not an existing", *RE, "--out", "afile")
case("render out empty", "--out is empty", *RE, "--out", "")
case("render .env is a FIFO", ".env", *RE, "--out", "out-fifo")
case("render .env is a directory", ".env", *RE, "--out", "out-envdir")
case("render .env not utf-8", ".env", *RE, "--out", "out-envbytes")
CACHE = ("--cache", "previews-size=2g")  # the proxy cache settings go into docker-compose.override.yml
case("render override services a list", "services", *RE, "--out", "out-override-list", *CACHE)
case("render override environment a number", "environment", *RE, "--out", "out-override-env", *CACHE)
case("render override duplicate key", "duplicate key", *RE, "--out", "out-override-dup", *CACHE)
case("render override alias bomb", "alias", *RE, "--out", "out-override-bomb", *CACHE)
case("render override not yaml", "not valid YAML", *RE, "--out", "out-override-broken", *CACHE)
LINKS = ("render-env", "--env", "multi", "--storage", "a")  # grant b becomes a remote_links.yml connection
case("render remote links not utf-8", "UTF-8", *LINKS, "--out", "out-links-bytes")
case("render remote links not a mapping", "mapping", *LINKS, "--out", "out-links-list")
case("render unknown target", "unknown --target", *RE, "--target", "nonsense")
case("render target empty", "--target is empty", *RE, "--target", "")
case("render storage unknown grant", "nosuch", *RE, "--out", "svout", "--storage", "nosuch")
case("render grant unknown", "nosuch", *RE, "--out", "svout", "--grant", "nosuch")
case("render cache unknown name", "invalid --cache", *RE, "--out", "svout", "--cache", "nonsense=1")
case("render cache no value", "invalid --cache", *RE, "--out", "svout", "--cache", "previews-size")
case("render cache bad size", "invalid --cache", *RE, "--out", "svout", "--cache", "previews-size=lots")
case("render cvat bucket not in grant", "not part of this grant", *RE, "--out", "svout", "--target", "cvat",
     "--bucket", "not-ours")
case("render cvat display name long", "at most 63", *RE, "--out", "svout", "--target", "cvat", "--display-name",
     "d" * 64)
case("render cvat display name empty", "--display-name is empty", *RE, "--out", "svout", "--target", "cvat",
     "--display-name", "")
case("render cvat namespace", "does not apply", *RE, "--out", "svout", "--target", "cvat", "--namespace", "demo")
case("render cvat role grant", "IAM-role", "render-env", "--env", "rolemode", "--out", "svout", "--target", "cvat")
case("render cvat several grants", "holds 2", "render-env", "--env", "multi", "--out", "svout", "--target", "cvat")
case("render onepanel no namespace", "needs --namespace", *RE, "--out", "svout", "--target", "onepanel")
case("render onepanel bad namespace", "invalid --namespace", *RE, "--out", "svout", "--target", "onepanel",
     "--namespace", "Demo_NS")
case("render onepanel sync dir dots", "invalid --sync-dir", *RE, "--out", "svout", "--target", "onepanel",
     "--namespace", "demo", "--sync-dir", "a/../b")

# ---- verify / status / destroy ----------------------------------------------------------------------------------
for command in (["verify"], ["status"], ["destroy", "--yes"]):
    name = command[0]
    case(f"{name} missing env", "nothing", *command, "--env", "nosuch")
    case(f"{name} unknown grant", "holds no grant 'nosuch'", *command, "--env", "multi", "--grant", "nosuch")
    case(f"{name} grant empty", "--grant is empty", *command, "--env", "multi", "--grant", "")
    case(f"{name} env invalid", "invalid --env", *command, "--env", "../x")
case("destroy without --yes and no terminal", "--yes", "destroy", "--env", "sv")
case("rotate unknown grant", "nothing to rotate", "s3", "--env", "sandbox", "--prefix", "nosuch", "--rotate",
     "--grant", "nosuch")

# ---- migrate / links / manifest -----------------------------------------------------------------------------------
MG = ("migrate", "--env", "sv")
case("migrate data path missing", "not a directory", *MG, "--data-path", "nonexistent")
case("migrate data path a file", "not a directory", *MG, "--data-path", "afile")
case("migrate data path empty", "--data-path is empty", *MG, "--data-path", "")
case("migrate no data path", "--data-path", *MG)
case("migrate concurrency zero", "--concurrency", *MG, "--data-path", "data", "--concurrency", "0")
case("migrate concurrency huge", "--concurrency", *MG, "--data-path", "data", "--concurrency", "100000")
case("migrate concurrency negative", "--concurrency", *MG, "--data-path", "data", "--concurrency=-1")
case("migrate concurrency words", "--concurrency", *MG, "--data-path", "data", "--concurrency", "lots")
case("migrate nothing provisioned", "nothing provisioned", "migrate", "--env", "nosuch", "--data-path", "data")
case("migrate several grants", "holds 2", "migrate", "--env", "multi", "--data-path", "data")
case("migrate unknown grant", "nosuch", *MG, "--data-path", "data", "--grant", "nosuch")
LK = ("links", "--env", "sv")
case("links out a directory", "--out", *LK, "--out", "data")
case("links out in missing dir", "--out", *LK, "--out", "/nonexistent/dir/links.txt")
case("links out empty", "--out is empty", *LK, "--out", "")
case("links bucket not ours", "not in the grant", *LK, "--bucket", "not-ours")
case("links bucket empty", "--bucket is empty", *LK, "--bucket", "")
case("links ext empty item", "--ext", *LK, "--ext", ".jpg,,.png")
case("links several grants", "holds 2", "links", "--env", "multi")
case("links nothing provisioned", "nothing provisioned", "links", "--env", "nosuch")
MF = ("manifest", "--env", "sv")
case("manifest out a directory", "--out", *MF, "--out", "data")
case("manifest out in missing dir", "--out", *MF, "--out", "/nonexistent/dir/manifest.jsonl")
case("manifest out empty", "--out is empty", *MF, "--out", "")
case("manifest bucket not ours", "not-ours", *MF, "--bucket", "not-ours")
case("manifest concurrency zero", "--concurrency", *MF, "--concurrency", "0")
case("manifest several grants", "holds 2", "manifest", "--env", "multi")
case("manifest nothing provisioned", "nothing provisioned", "manifest", "--env", "nosuch")

# ---- cvat attach ---------------------------------------------------------------------------------------------------
CV = ("cvat", "attach", "--url", "http://127.0.0.1:9", "--token", "tok")
case("cvat key too long", "key", *CV, "--env", "longkey")
case("cvat secret key too long", "secret key is 65 characters", *CV, "--env", "longsecret")
case("cvat session token too long", "session token is 441 characters", *CV, "--env", "longtoken")
case("cvat account name too long", "account_name", *CV, "--env", "longaccount")
case("cvat connection string too long", "connection string is", *CV, "--env", "longcs")
case("cvat display name too long", "at most 63", *CV, "--env", "sv", "--display-name", "d" * 64)
case("cvat display name empty", "--display-name is empty", *CV, "--env", "sv", "--display-name", "")
case("cvat bucket not ours", "not part of this grant", *CV, "--env", "sv", "--bucket", "not-ours")
case("cvat manifest absolute", "invalid manifest key", *CV, "--env", "sv", "--manifest", "/abs/manifest.jsonl")
case("cvat manifest empty", "--manifest is empty", *CV, "--env", "sv", "--manifest", "")
case("cvat no credentials", "credentials are missing", "cvat", "attach", "--env", "sv", "--url",
     "http://127.0.0.1:9")
case("cvat token and username", "not both", *CV, "--env", "sv", "--username", "u", "--password", "p")
case("cvat url empty", "--url is empty", "cvat", "attach", "--env", "sv", "--url", "", "--token", "tok")
case("cvat url ftp", "--url", "cvat", "attach", "--env", "sv", "--url", "ftp://cvat.example.com", "--token", "tok")
case("cvat role grant", "IAM-role", *CV, "--env", "rolemode")
case("cvat several grants", "holds 2", *CV, "--env", "multi")
case("cvat nothing provisioned", "nothing provisioned", *CV, "--env", "nosuch")
case("cvat no url", "--url", "cvat", "attach", "--env", "sv", "--token", "tok")

# ---- the CLI itself, sandbox ----------------------------------------------------------------------------------------
case("unknown command", "nonsense", "nonsense")
case("sandbox unknown command", "nonsense", "sandbox", "nonsense")
case("sandbox up extra argument", "extra", "sandbox", "up", "extra")
case("sandbox status unknown flag", "--bogus", "sandbox", "status", "--bogus")
case("sandbox down unknown flag", "--force", "sandbox", "down", "--force")


# ---- the fixtures ------------------------------------------------------------------------------------------------
S3_INPUTS = {"provider": "s3", "sandbox": True}
"""What `provision s3 --env sandbox` records as a grant's inputs (the data commands rebuild its provider from them)."""


def s3_record(grant: Grant) -> GrantState:
    return GrantState(provider="s3", grant=grant, inputs=dict(S3_INPUTS, buckets=grant.buckets))


def s3_grant(info: sandbox.SandboxInfo, buckets: list[str], access: Access = Access.full, key: str = "AKIAEXAMPLE",
             secret: str = "s") -> Grant:
    """An S3 key-pair grant on the sandbox's endpoint (whatever a command asks of it reaches the logged sandbox)."""
    url = info.s3.endpoint_url
    host, port = url.split("://", 1)[1].rsplit(":", 1)
    return Grant(provider="s3", storage_provider="minio", access=access, buckets=buckets, endpoint=host,
                 endpoint_url=url, port=int(port), secure=False, region=info.s3.region,
                 auth=KeyPair(access_key=key, secret_key=secret))


def azure_grant(account: str = "svstore01", token: str = "sv=2024&sig=x", key: str | None = None) -> Grant:
    auth: Any = (KeyPair(access_key=account, secret_key=key) if key is not None
                 else SasToken(account_name=account, token=token, expires_at=LATER))
    return Grant(provider="azure", storage_provider="azure", access=Access.full, buckets=["acme-x"],
                 endpoint=f"{account}.blob.core.windows.net", endpoint_url="https://127.0.0.1:9/x" if key else None,
                 auth=auth)


@pytest.fixture
def prepared(workdir: Path, sandbox_info: sandbox.SandboxInfo) -> Path:
    """Every profile, state file and directory the table refers to, under the test's working directory."""
    envs = workdir / "envs"
    for name, content in PROFILES.items():
        (envs / f"{name}.yaml").write_bytes(content)
    (envs / "dirprofile.yaml").mkdir()
    (workdir / "afile").write_text("not a directory\n")
    (workdir / "data" / "storage").mkdir(parents=True)
    (workdir / "svout").mkdir()
    states = workdir / ".provision"
    states.mkdir(mode=0o700)
    for name, content in STATES.items():
        (states / f"{name}.json").write_bytes(content)
        os.chmod(states / f"{name}.json", 0o600)
    (states / "dir-state.json").mkdir()
    sv = s3_grant(sandbox_info, ["acme-public", "acme-private"])
    StateStore("sv").save(State(env="sv", grants={"acme": s3_record(sv)}))
    StateStore("multi").save(State(env="multi", grants={
        "a": s3_record(s3_grant(sandbox_info, ["a-public", "a-private"])),
        "b": s3_record(s3_grant(sandbox_info, ["b-data"]))}))
    StateStore("rolemode").save(State(env="rolemode", grants={"default": s3_record(sv.model_copy(update={
        "auth": Role(role_name="supervisely-storage")}))}))
    StateStore("longkey").save(State(env="longkey", grants={"default": s3_record(
        s3_grant(sandbox_info, ["acme-x"], key="K" * 41))}))
    StateStore("longsecret").save(State(env="longsecret", grants={"default": s3_record(
        s3_grant(sandbox_info, ["acme-x"], secret="S" * 65))}))
    StateStore("longtoken").save(single_grant_state("longtoken", azure_grant(token="t" * 441)))
    StateStore("longaccount").save(single_grant_state("longaccount", azure_grant(account="a" * 25)))
    StateStore("longcs").save(single_grant_state("longcs", azure_grant(key="k" * 1024)))
    StateStore("azsas").save(single_grant_state("azsas", azure_grant()))
    outs = {
        "out-envdir/.env/keep": b"",
        "out-envbytes/.env": b"DATA_PATH=/data\nX=\xff\xfe\n",
        "out-override-list/docker-compose.override.yml": b"services:\n  - http-storage\n",
        "out-override-env/docker-compose.override.yml": b"services:\n  proxy:\n    environment: 42\n",
        "out-override-dup/docker-compose.override.yml": b"services: {}\nservices: {}\n",
        "out-override-bomb/docker-compose.override.yml": PROFILES["bomb"].replace(b"buckets", b"services"),
        "out-override-broken/docker-compose.override.yml": b"services: [\n",
        "out-links-bytes/remote_links.yml": b"acme: \xff\xfe\n",
        "out-links-list/remote_links.yml": b"- acme\n",
    }
    for relative, content in outs.items():
        path = workdir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    (workdir / "out-fifo").mkdir()
    os.mkfifo(workdir / "out-fifo" / ".env")
    return workdir


def snapshot(root: Path) -> dict[str, tuple[str, int, bytes | None]]:
    """Every path under ``root`` (directories, FIFOs and lock files included): its type, mode and, for a regular
    file, its bytes. Reading never opens a FIFO."""
    found: dict[str, tuple[str, int, bytes | None]] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            info = path.lstat()
            kind = ("dir" if stat.S_ISDIR(info.st_mode) else "file" if stat.S_ISREG(info.st_mode)
                    else "fifo" if stat.S_ISFIFO(info.st_mode) else "other")
            found[str(path.relative_to(root))] = (kind, stat.S_IMODE(info.st_mode),
                                                  path.read_bytes() if kind == "file" else None)
    return found


class Hang(Exception):
    """A case ran longer than `HANG_SECONDS`."""


@pytest.fixture
def no_hang() -> Iterator[None]:
    """Fail the test with `Hang` (raised in the main thread, interrupting a blocking open or read) after
    `HANG_SECONDS`."""
    def alarm(signum: int, frame: Any) -> None:
        raise Hang(f"no answer within {HANG_SECONDS} s")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, HANG_SECONDS)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


class Logs:
    """The request logs of every emulator of the running sandbox (S3 + IAM, Azure Blob when Azurite runs, GCS)."""

    def __init__(self, info: sandbox.SandboxInfo) -> None:
        self.endpoints = [info.s3.endpoint_url, info.require_gcs().endpoint_url]
        if info.azure is not None:
            self.endpoints.append(info.azure.blob_url)

    def reset(self) -> None:
        for endpoint in self.endpoints:
            sandbox.control(endpoint, "requests/reset")

    def mutating(self) -> list[dict[str, Any]]:
        return [e for endpoint in self.endpoints for e in sandbox.request_log(endpoint) if e["mutating"]]


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input(name: str, cli: Cli, admin: Admin, sandbox_info: sandbox.SandboxInfo, prepared: Path,
                   monkeypatch: pytest.MonkeyPatch, no_hang: None) -> None:
    row = CASES[name]
    logs = Logs(sandbox_info)
    before = snapshot(prepared)
    logs.reset()
    with monkeypatch.context() as patch:
        for var, value in row.env.items():
            patch.setenv(var, str(prepared / value))
        result = cli(*row.args)
    assert "Traceback" not in result.output
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    warnings = [line for line in lines if line.startswith("warning: ")]
    assert {w.split()[1] for w in warnings} <= {f for f in SECRET_ARGUMENTS if f in row.args}, \
        "no warning but the one about a secret on the command line"
    lines = [line for line in lines if line not in warnings]
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ") and " — " in lines[0], f"names the problem, then the fix: {lines[0]}"
    assert row.needle in lines[0], lines[0]
    for text in row.forbidden:
        assert text not in result.output, f"echoes {text!r}"
    assert result.stdout == ""
    assert logs.mutating() == []
    assert snapshot(prepared) == before


def test_the_table_is_large() -> None:
    assert len(CASES) >= 150
