"""``provision render-env | verify | status | destroy``: one `provision.actions` call each, printed through
`provision.output`."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from provision.cli import DRY_RUN, ENV, GRANT, JSON, SHOW, app, errors, examples, path_of


@app.command("render-env", epilog=examples(
    "provision render-env --env sandbox --out ./supervisely",
    "provision render-env --out /opt/supervisely --storage sv",
    "provision render-env --target cvat --grant raw --bucket raw-images --out .",
    "provision render-env --target onepanel --namespace vision --out .",
    "provision render-env --out /opt/supervisely --cache previews-size=2g --dry-run"))
@errors
def render_env_command(
    target: str = typer.Option("supervisely", "--target", metavar="supervisely|cvat|onepanel",
                               help="supervisely, cvat or onepanel."),
    out: Path = typer.Option(Path("."), "--out", metavar="DIR", parser=path_of("--out"),
                             help="Directory to write into (Supervisely: `supervisely where`)."),
    grant: str | None = GRANT,
    storage: str | None = typer.Option(None, "--storage", metavar="GRANT", help="supervisely: the grant that "
                                       "becomes the instance storage (.env STORAGE_*; needs read, write, delete and "
                                       "multipart on a P-public / P-private pair); default: the only one that can."),
    skip_migration_check: bool = typer.Option(False, "--skip-migration-check", help="supervisely: switch .env "
                                              "away from local storage even though DATA_PATH holds files "
                                              "`provision migrate` did not copy."),
    bucket: str | None = typer.Option(None, "--bucket", metavar="BUCKET",
                                      help="cvat, onepanel: the grant's bucket to use "
                                           "(default: the first)."),
    display_name: str | None = typer.Option(None, "--display-name", metavar="NAME",
                                            help="cvat: display name (default: bucket)."),
    manifest: list[str] | None = typer.Option(None, "--manifest", metavar="KEY",
                                              help="cvat: a manifest key in the bucket (repeatable)."),
    namespace: str | None = typer.Option(None, "--namespace", metavar="NAMESPACE",
                                         help="onepanel: the Onepanel namespace (required)."),
    sync_dir: str | None = typer.Option(None, "--sync-dir", metavar="DIR",
                                        help="onepanel: file syncer directory, relative to "
                                             "the namespace, or /PATH from the bucket root (default: workflow-data)."),
    model_dir: str | None = typer.Option(None, "--model-dir", metavar="DIR",
                                         help="onepanel: trained-model folder inside the "
                                              "sync directory (default: output)."),
    cache: list[str] | None = typer.Option(None, "--cache", metavar="NAME=VALUE", help="supervisely: a front-end "
                                           "proxy cache setting (repeatable), e.g. --cache previews-size=2g --cache "
                                           "storage-expires=14d; names: previews-size, previews-expires, "
                                           "storage-size, storage-expires, image-converter-size, "
                                           "image-converter-expires (Supervisely's defaults apply to the rest)."),
    env: str = ENV,
    dry_run: bool = DRY_RUN,
    json_out: bool = JSON,
    show_secrets: bool = SHOW,
) -> None:
    """Render the platform's files from the environment's grants into DIR. supervisely: the instance storage into
    .env STORAGE_*, every other grant as a remote_links.yml connection, the mounts in docker-compose.override.yml
    (all merged); cvat: cvat-cloudstorage.json; onepanel: onepanel.env (+ its bucket folders)."""
    from provision import actions, output
    from provision.state import StateStore

    options = actions.RenderOptions(grant=grant, storage=storage, skip_migration_check=skip_migration_check,
                                    bucket=bucket, display_name=display_name,
                                    manifests=manifest, namespace=namespace, sync_dir=sync_dir, model_dir=model_dir,
                                    cache=cache)
    result = actions.render(StateStore(env), target, out, options, dry_run=dry_run)
    output.render_report(result, json_out, show_secrets)


@app.command("verify", epilog=examples(
    "provision verify --env sandbox",
    "provision verify --env prod --grant sv",
    "provision verify --json"))
@errors
def verify_command(env: str = ENV, grant: str | None = GRANT, json_out: bool = JSON) -> None:
    """Probe each grant's credential for what the platform does with it: what it should do succeeds, everything
    else is denied (exit 5 otherwise)."""
    from provision import actions, output
    from provision.state import StateStore

    result = actions.verify(StateStore(env), grant)
    output.verify_report(result, json_out)
    result.check()


@app.command("status", epilog=examples(
    "provision status --env sandbox",
    "provision status --env prod --grant sv --json"))
@errors
def status_command(env: str = ENV, grant: str | None = GRANT, json_out: bool = JSON) -> None:
    """Live resources vs the state file: missing, drifted, deleted or expiring, each with the command to fix it
    (exit 6 when anything drifted)."""
    from provision import actions, output
    from provision.state import StateStore

    result = actions.status(StateStore(env), grant)
    output.status_report(result, json_out)
    if not result.in_sync:
        from provision.errors import DriftFound, counted

        raise DriftFound(f"{counted(len(result.rows), 'resource')} drifted from the state file",
                         "run the fix shown for each (`provision status` lists them)")


@app.command("destroy", epilog=examples(
    "provision destroy --env sandbox --dry-run",
    "provision destroy --env sandbox --yes",
    "provision destroy --env prod --grant raw --yes --delete-data --json"))
@errors
def destroy_command(
    env: str = ENV,
    grant: str | None = GRANT,
    yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation (needed without a terminal)."),
    delete_data: bool = typer.Option(False, "--delete-data", help="Also delete objects in buckets it created."),
    dry_run: bool = DRY_RUN,
    json_out: bool = JSON,
) -> None:
    """Delete, newest first, what provision created (keys, policies, users, roles, empty buckets); never what it
    adopted. Asks first on a terminal; answering no exits 1 with "aborted, nothing deleted"."""
    from provision import actions, output
    from provision.state import StateStore

    confirm = _confirm if sys.stdin.isatty() else None
    result = actions.destroy(StateStore(env), grant=grant, yes=yes, delete_data=delete_data, dry_run=dry_run,
                             confirm=confirm)
    output.destroy_report(result, json_out)


def _confirm(question: str) -> None:
    """Ask ``question`` (y/N); raise `provision.errors.Aborted` (exit 1, "aborted, nothing deleted") on no."""
    if not typer.confirm(question, err=True):  # stdout stays for --json
        from provision.errors import Aborted

        raise Aborted("aborted, nothing deleted")
