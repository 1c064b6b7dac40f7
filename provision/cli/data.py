"""``provision migrate | links | manifest | cvat attach``: the data commands. Each loads the environment through
`provision.actions` and calls the module that does the job (`provision.migrate`, `provision.links`,
`provision.manifest`, `provision.cvat`), then prints through `provision.output`."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from provision.cli import ENV, GRANT, JSON, app, errors, examples, path_of, sub_app


@app.command("migrate", epilog=examples(
    "provision migrate --env prod --data-path /opt/supervisely/data --dry-run",
    "provision migrate --env prod --data-path /opt/supervisely/data --concurrency 32",
    "provision migrate --data-path /opt/supervisely/data --grant sv --json"))
@errors
def migrate_command(
    data_path: Path = typer.Option(..., "--data-path", metavar="DIR", parser=path_of("--data-path"),
                                   help="Supervisely's DATA_PATH: DIR/storage/<bucket>/ goes into each bucket."),
    concurrency: int = typer.Option(16, "--concurrency", min=1, max=64, metavar="N",  # = migrate.DEFAULT_CONCURRENCY
                                    help="Parallel requests (1-64)."),
    env: str = ENV,
    grant: str | None = GRANT,
    dry_run: bool = typer.Option(False, "--dry-run", help="Say what would be uploaded or skipped; upload nothing."),
    json_out: bool = JSON,
) -> None:
    """Copy an existing install's local storage into the grant's buckets; re-runs skip what is already there."""
    from provision import actions, output, output_data
    from provision.state import StateStore

    store = StateStore(env)
    if json_out:
        report = actions.migrate(store, data_path, grant=grant, dry_run=dry_run, concurrency=concurrency,
                                 notify=output.say)
    else:
        with output_data.MigrateProgress() as bar:
            report = actions.migrate(store, data_path, grant=grant, dry_run=dry_run, concurrency=concurrency,
                                     progress=bar, notify=output.say)
    output_data.migrate_report(report, json_out)
    failed = actions.migrate_failed(report, data_path)
    if failed is not None:
        raise failed


@app.command("links", epilog=examples(
    "provision links --env sandbox > links.txt",
    "provision links --grant raw --bucket raw-images --prefix 2024/ --ext .jpg,.png --out links.txt",
    "provision links --env sandbox --json"))
@errors
def links_command(
    bucket: list[str] | None = typer.Option(None, "--bucket", metavar="BUCKET",
                                            help="Only this bucket (repeatable; default: all of the grant's)."),
    key_prefix: str = typer.Option("", "--prefix", metavar="KEYPREFIX", help="Only keys starting with KEYPREFIX."),
    ext: list[str] | None = typer.Option(None, "--ext", metavar=".jpg,.png,...",
                                         help="Only keys with these extensions (case-insensitive)."),
    out: Path | None = typer.Option(None, "--out", metavar="FILE", parser=path_of("--out"),
                                      help="Write to FILE instead of stdout."),
    env: str = ENV,
    grant: str | None = GRANT,
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document on stdout: the counts, and the "
                                  "links themselves unless --out writes them to a file."),
) -> None:
    """A Supervisely links file: one s3://, azure:// or google://bucket/key per line for the grant's objects, in key
    order, streamed."""
    from provision import actions, output_data
    from provision.links import parse_extensions, write_links, write_links_file

    extensions = parse_extensions(ext)
    if out is not None:
        _check_out_file(out)
    env_state = actions.load(env, need="grant")
    state = actions.data_grant(env_state, grant, "links")
    options = {"buckets": bucket, "prefix": key_prefix, "extensions": extensions}
    if out is not None:
        report = write_links_file(state, out.absolute(), **options)
    elif json_out:
        import io

        buffer = io.StringIO()
        report = write_links(state, buffer, **options)
        output_data.links_report(report, out, buffer.getvalue().splitlines())
        return
    else:
        try:
            report = write_links(state, sys.stdout, **options)  # type: ignore[arg-type]
            sys.stdout.flush()
        except BrokenPipeError:  # `provision links | head`: the reader has gone; that is not an error
            raise typer.Exit(0) from None
    if json_out:
        output_data.links_report(report, out, None)
        return
    output_data.links_summary(report, out, env, any(r.target == "supervisely" for r in env_state.renders))


@app.command("manifest", epilog=examples(
    "provision manifest --env sandbox --prefix images/",
    "provision manifest --bucket raw-images --prefix 2024/ --upload --checksum",
    "provision manifest --grant raw --out /tmp/manifest.jsonl --json"))
@errors
def manifest_command(
    bucket: str | None = typer.Option(None, "--bucket", metavar="BUCKET",
                                      help="The grant's bucket (default: the first)."),
    key_prefix: str = typer.Option("", "--prefix", metavar="KEYPREFIX",
                                   help="The images' folder: names are relative to it, and --upload puts "
                                   "manifest.jsonl there (default: the bucket root)."),
    upload: bool = typer.Option(False, "--upload", help="Put manifest.jsonl next to the images (with the admin "
                                "credential unless the grant is --full)."),
    checksum: bool = typer.Option(False, "--checksum", help="Add CVAT's checksum (md5 of the decoded pixels); "
                                  "reads every image completely."),
    out: Path = typer.Option(Path("manifest.jsonl"), "--out", metavar="FILE", parser=path_of("--out"),
                             help="Where to write it (default: ./manifest.jsonl)."),
    concurrency: int = typer.Option(8, "--concurrency", min=1, max=64, metavar="N",
                                    help="Images read in parallel (1-64)."),
    env: str = ENV,
    grant: str | None = GRANT,
    json_out: bool = JSON,
) -> None:
    """CVAT's manifest.jsonl for the images in a bucket, from ranged reads of their headers (no full download)."""
    from provision import actions, output_data
    from provision.manifest import make_manifest

    _check_out_file(out)
    state = actions.data_grant(actions.load(env, need="grant"), grant, "manifest")
    with output_data.ProgressBar("reading image headers") as bar:
        run = make_manifest(state, bucket, key_prefix, out, upload=upload, checksum=checksum,
                            concurrency=concurrency, on_total=bar.total, on_image=bar.advance)
    output_data.manifest_report(run, env, json_out)


def _check_out_file(out: Path) -> None:
    """Refuse an ``--out FILE`` that cannot be written before anything is read: a directory, or a path whose
    directory does not exist.

    Raises:
        BadInput: names the path.
    """
    from provision.errors import BadInput

    if out.is_dir():
        raise BadInput(f"--out {out} is a directory", f"pass a file path, e.g. --out {out / 'out.txt'}")
    if not out.absolute().parent.is_dir():
        raise BadInput(f"--out {out}: directory {out.absolute().parent} does not exist", "create it first")


cvat_app = sub_app("CVAT: attach the grant's bucket as a cloud storage (needs the cvat extra).",
                   examples("provision cvat attach --url https://cvat.example.com --token \"$CVAT_TOKEN\""))
app.add_typer(cvat_app, name="cvat")


@cvat_app.command("attach", epilog=examples(
    "provision cvat attach --env sandbox --url http://localhost:8080 --token \"$CVAT_ACCESS_TOKEN\"",
    "provision cvat attach --url https://cvat.example.com --username admin --bucket raw-images",
    "provision cvat attach --url https://cvat.example.com --manifest 2024/manifest.jsonl --json"))
@errors
def cvat_attach_command(
    url: str = typer.Option(..., "--url", metavar="URL", help="CVAT's URL, e.g. https://cvat.example.com."),
    token: str | None = typer.Option(None, "--token", metavar="TOKEN", envvar="CVAT_ACCESS_TOKEN",
                                     help="A CVAT Personal Access Token (or $CVAT_ACCESS_TOKEN)."),
    username: str | None = typer.Option(None, "--username", metavar="USER", help="A CVAT user, with --password."),
    password: str | None = typer.Option(None, "--password", metavar="PASSWORD", envvar="CVAT_PASSWORD",
                                        help="The CVAT user's password (or $CVAT_PASSWORD)."),
    bucket: str | None = typer.Option(None, "--bucket", metavar="BUCKET",
                                      help="The grant's bucket to attach (default: the first)."),
    display_name: str | None = typer.Option(None, "--display-name", metavar="NAME",
                                            help="CVAT display name (default: bucket)."),
    manifest: list[str] | None = typer.Option(None, "--manifest", metavar="KEY",
                                              help="A manifest key in the bucket (repeatable), e.g. from "
                                              "`provision manifest --upload`."),
    env: str = ENV,
    grant: str | None = GRANT,
    json_out: bool = JSON,
) -> None:
    """Create CVAT's cloud storage for the bucket, or update the existing one in place (same id)."""
    from provision import actions, output_data
    from provision.cvat import attach

    state = actions.data_grant(actions.load(env, need="grant"), grant, "cvat attach")
    result = attach(state.grant, url, token=token, username=username,  # type: ignore[arg-type]
                    password=password, bucket=bucket, display_name=display_name, manifests=manifest)
    output_data.cvat_attach_report(result, env, json_out)
