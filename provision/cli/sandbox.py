"""``provision sandbox up | down | status``: the embedded local cloud (`provision.sandbox`)."""

from __future__ import annotations

import typer

from provision.cli import JSON, app, errors, examples, sub_app

sandbox_app = sub_app("The embedded local cloud: real S3/IAM, Azure Blob and GCS APIs on 127.0.0.1.",
                      examples("provision sandbox up", "provision sandbox status --json", "provision sandbox down"))
app.add_typer(sandbox_app, name="sandbox")


@sandbox_app.command("up", epilog=examples(
    "provision sandbox up",
    "provision sandbox up --json",
    "provision sandbox up && provision s3 --env sandbox --prefix demo --full"))
@errors
def sandbox_up(json_out: bool = JSON) -> None:
    """Start the local clouds on 127.0.0.1: S3 + IAM + STS (IAM policies enforced), Azure Blob (Azurite, HTTPS,
    SAS enforced) and Cloud Storage (emulator; no IAM)."""
    from provision import output, output_data, sandbox

    info, started = sandbox.up(notify=output.say)
    output_data.sandbox_up_report(info, started, json_out)


@sandbox_app.command("down", epilog=examples("provision sandbox down", "provision sandbox down --json"))
@errors
def sandbox_down(json_out: bool = JSON) -> None:
    """Stop the sandbox (its data lives in memory and goes with it)."""
    from provision import output_data, sandbox

    output_data.sandbox_down_report(sandbox.down(), json_out)


@sandbox_app.command("status", epilog=examples("provision sandbox status",
                                                  "provision sandbox status --json"))
@errors
def sandbox_status(json_out: bool = JSON) -> None:
    """Say whether the sandbox runs, and where."""
    from provision import output_data, sandbox

    info = sandbox.read_info()
    output_data.sandbox_status_report(info, json_out)
    if info is None:
        raise typer.Exit(1)
