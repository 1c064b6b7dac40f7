"""``provision s3 | azure | gcs``: flags -> a Profile -> `provision.actions.apply` -> `provision.output`."""

from __future__ import annotations

from typing import Any

import typer

from provision.cli import DRY_RUN, ENV, JSON, NO_VERIFY, ROTATE, SHOW, app, errors, examples

YES = typer.Option(False, "--yes", help="Do not ask: widen a deployed credential (read-only → full, SAS → "
                   "account key), and make the first change of a new environment on a real cloud.")
ADOPT = typer.Option(False, "--adopt", help="Take over resources another provision environment marked as its "
                     "own (their owner mark names it); without it they are refused.")
GRANT_NAME = typer.Option(None, "--grant", metavar="NAME", help="The grant's name in the environment (1-63 of "
                          "a-z 0-9 - _; also its remote_links.yml connection name). Default: the prefix, else the "
                          "first bucket.")

PREFIX = typer.Option(None, "--prefix", metavar="P", help="Supervisely's pair: P-public and P-private.")


@app.command("s3", epilog=examples(
    "provision s3 --env sandbox --prefix demo --full",
    "provision s3 --prefix sv --full --region eu-central-1",
    "provision s3 raw-images labels --readonly --grant annotators",
    "provision s3 --prefix sv --full --rotate",
    "provision s3 --prefix lab --full --endpoint-url http://minio.local:9000",
    "provision s3 --prefix sv --full --dry-run --json"))
@errors
def s3_command(
    buckets: list[str] | None = typer.Argument(None, metavar="BUCKET", help="Bucket names."),
    prefix: str | None = PREFIX,
    readonly: bool = typer.Option(False, "--readonly", help="List and read only (the default)."),
    full: bool = typer.Option(False, "--full", help="Read, write, delete and multipart on these buckets only."),
    iam_role: str | None = typer.Option(None, "--iam-role", metavar="ROLE",
                                        help="A role + instance profile instead of a key."),
    user: str | None = typer.Option(None, "--user", metavar="NAME",
                                    help="IAM user name (default provision-<prefix>-<access>)."),
    region: str | None = typer.Option(None, "--region", metavar="REGION",
                                      help="Bucket region (default: the SDK's, or us-east-1)."),
    endpoint_url: str | None = typer.Option(None, "--endpoint-url", metavar="URL",
                                            help="S3-compatible endpoint (MinIO...)."),
    issuer: str | None = typer.Option(None, "--issuer", metavar="aws-iam|minio", help="Who issues the key: "
                                      "aws-iam (AWS, Ceph RGW, Wasabi) or minio (MinIO's admin API). Default: "
                                      "detected from the endpoint (MinIO answers Server: MinIO)."),
    iam_endpoint_url: str | None = typer.Option(None, "--iam-endpoint-url", metavar="URL", help="aws-iam: the IAM "
                                                "endpoint when it is not the S3 one (Wasabi: "
                                                "https://iam.wasabisys.com)."),
    key_expiry: str | None = typer.Option(None, "--key-expiry", metavar="DURATION", help="minio: the access key's "
                                          "lifetime: 30d, 12h or 2027-01-31T00:00:00Z (default: no expiry)."),
    rotate: bool = ROTATE,
    no_verify: bool = NO_VERIFY,
    env: str = ENV,
    grant: str | None = GRANT_NAME,
    adopt: bool = ADOPT,
    yes: bool = YES,
    dry_run: bool = DRY_RUN,
    json_out: bool = JSON,
    show_secrets: bool = SHOW,
) -> None:
    """Buckets with secure defaults and a least-privilege IAM user + access key (or role) for exactly them."""
    overrides = {"buckets": buckets, "prefix": prefix, "iam_role": iam_role, "user": user, "region": region,
                 "endpoint_url": endpoint_url, "issuer": issuer, "iam_endpoint_url": iam_endpoint_url,
                 "key_expiry": key_expiry, "access": _access(readonly, full), "adopt": adopt or None}
    _apply("s3", env, grant, yes, overrides, dry_run, json_out, show_secrets, rotate, not no_verify)


@app.command("azure", epilog=examples(
    "provision azure --env sandbox --prefix demo --full",
    "provision azure --prefix sv --account svstore01 --account-key --subscription SUB_ID",
    "provision azure raw --account svstore01 --readonly --sas-expiry 90d",
    "provision azure --prefix sv --connection-string \"$AZURE_STORAGE_CONNECTION_STRING\" --full",
    "provision azure --prefix sv --account svstore01 --keyless PRINCIPAL_ID"))
@errors
def azure_command(
    containers: list[str] | None = typer.Argument(None, metavar="CONTAINER", help="Container names."),
    prefix: str | None = PREFIX,
    account: str | None = typer.Option(None, "--account", metavar="NAME", help="Storage account name (3–24 a-z0-9)."),
    resource_group: str | None = typer.Option(None, "--resource-group", metavar="GROUP", help="Resource group (default "
                                              "provision-<account>)."),
    location: str | None = typer.Option(None, "--location", metavar="LOCATION",
                                        help="Azure location (default westeurope)."),
    subscription: str | None = typer.Option(None, "--subscription", metavar="ID", help="Subscription id (default "
                                            "AZURE_SUBSCRIPTION_ID, else the only one)."),
    connection_string: str | None = typer.Option(None, "--connection-string", metavar="STRING",
                                                 help="Data-plane-only mode for an "
                                                      "existing account (or AZURE_STORAGE_CONNECTION_STRING)."),
    readonly: bool = typer.Option(False, "--readonly", help="Read + list only (SAS sp=rl; the default)."),
    full: bool = typer.Option(False, "--full", help="Read, add, create, write, delete, list (SAS sp=racwdl)."),
    sas_expiry: str | None = typer.Option(None, "--sas-expiry", metavar="DURATION", help="SAS lifetime: 30d, 12h or "
                                          "2027-01-31T00:00:00Z (default 30d)."),
    renew_before: str | None = typer.Option(None, "--renew-before", metavar="DURATION",
                                            help="Renew the stored SAS when less than "
                                                 "this remains (default 7d, at most half its lifetime)."),
    account_key: bool = typer.Option(False, "--account-key", help="Hand out the account name + key1 (full "
                                     "access; what Supervisely's Azure backend takes) instead of a SAS."),
    keyless: str | None = typer.Option(None, "--keyless", metavar="PRINCIPAL_ID", help="No secret: a role "
                                       "assignment on each container for this managed identity."),
    harden: bool = typer.Option(False, "--harden", help="Fix an adopted account's insecure settings."),
    shared_account: bool = typer.Option(False, "--shared-account", help="Accept that the account SAS also reaches "
                                        "the account's containers outside the grant (an account SAS is "
                                        "account-wide; CVAT needs one)."),
    rotate: bool = ROTATE,
    no_verify: bool = NO_VERIFY,
    env: str = ENV,
    grant: str | None = GRANT_NAME,
    adopt: bool = ADOPT,
    yes: bool = YES,
    dry_run: bool = DRY_RUN,
    json_out: bool = JSON,
    show_secrets: bool = SHOW,
) -> None:
    """A storage account with secure defaults, private containers, and a SAS with a known expiry (or the account
    key, or keyless RBAC) for exactly them."""
    overrides = {"buckets": containers, "prefix": prefix, "account": account, "resource_group": resource_group,
                 "location": location, "subscription": subscription, "connection_string": connection_string,
                 "sas_expiry": sas_expiry, "renew_before": renew_before, "account_key": account_key or None,
                 "keyless": True if keyless is not None else None, "principal_id": keyless,
                 "harden": harden or None, "access": _access(readonly, full), "adopt": adopt or None,
                 "shared_account": shared_account or None}
    _apply("azure", env, grant, yes, overrides, dry_run, json_out, show_secrets, rotate, not no_verify)


@app.command("gcs", epilog=examples(
    "provision gcs --env sandbox --prefix demo --keyless",
    "provision gcs --prefix sv --full --project my-project --location EU",
    "provision gcs raw-images --readonly --project my-project --hmac",
    "STORAGE_EMULATOR_HOST=localhost:9023 provision gcs --prefix dev --project demo --keyless"))
@errors
def gcs_command(
    buckets: list[str] | None = typer.Argument(None, metavar="BUCKET", help="Bucket names."),
    prefix: str | None = PREFIX,
    project: str | None = typer.Option(None, "--project", metavar="ID", help="GCP project id."),
    location: str | None = typer.Option(None, "--location", metavar="LOCATION", help="Bucket location (default US)."),
    readonly: bool = typer.Option(False, "--readonly", help="objectViewer + legacyBucketReader (the default)."),
    full: bool = typer.Option(False, "--full", help="objectAdmin + legacyBucketReader on these buckets only."),
    service_account: str | None = typer.Option(None, "--service-account", metavar="ID|EMAIL",
                                               help="Service-account id (default "
                                                    "provision-<prefix>-<ro|rw>)."),
    hmac: bool = typer.Option(False, "--hmac", help="An HMAC key for the S3-interoperable endpoint instead of a "
                              "JSON key file."),
    keyless: bool = typer.Option(False, "--keyless", help="No secret: the VM's attached service account."),
    harden: bool = typer.Option(False, "--harden", help="Fix an adopted bucket's insecure settings."),
    rotate: bool = ROTATE,
    no_verify: bool = NO_VERIFY,
    env: str = ENV,
    grant: str | None = GRANT_NAME,
    adopt: bool = ADOPT,
    yes: bool = YES,
    dry_run: bool = DRY_RUN,
    json_out: bool = JSON,
    show_secrets: bool = SHOW,
) -> None:
    """Buckets with uniform access and public access prevention, a service account bound to exactly them, and a
    key file (or HMAC key, or nothing with --keyless)."""
    overrides = {"buckets": buckets, "prefix": prefix, "project": project, "location": location,
                 "service_account": service_account, "hmac": hmac or None, "keyless": keyless or None,
                 "harden": harden or None, "access": _access(readonly, full), "adopt": adopt or None}
    _apply("gcs", env, grant, yes, overrides, dry_run, json_out, show_secrets, rotate, not no_verify)


def _access(readonly: bool, full: bool) -> str | None:
    """The ``access`` override of ``--readonly`` / ``--full`` (None: neither given). Raises BadInput for both."""
    if readonly and full:
        from provision.errors import BadInput

        raise BadInput("--readonly and --full are mutually exclusive", "pass one of them")
    return "full" if full else ("readonly" if readonly else None)


def _apply(provider: str, env: str, grant: str | None, yes: bool, overrides: dict[str, Any], dry_run: bool,
           json_out: bool, show_secrets: bool, rotate: bool, verify: bool) -> None:
    """Build the profile (the env's profile file, then the flags), apply it, print the report."""
    from provision import actions, output
    from provision.profiles import load_profile
    from provision.state import StateStore

    store = StateStore(env)
    profile = load_profile(env, overrides, provider)
    import sys

    confirm = (lambda question: typer.confirm(question, abort=True)) if sys.stdin.isatty() else None
    result = actions.apply(profile, store, grant=grant, dry_run=dry_run, rotate=rotate, verify=verify,
                           notify=output.say, yes=yes, confirm=confirm)
    output.apply_report(result, json_out, show_secrets)

