"""The Onepanel target: ``onepanel.env`` (the variables to export before creating the CVAT workspace) and the
bucket folder layout they imply (Onepanel docs, "Using data from cloud storage in CVAT":
https://docs.onepanel.ai/docs/getting-started/use-cases/computervision/annotation/cvat/cvat_cloud_storage/)."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provision.errors import BadInput
from provision.models import Grant
from provision.render.formats import RenderedFile, decide, environment, read_text_exact
from provision.render.grants import grant_bucket

ONEPANEL_FILE = "onepanel.env"
_K8S_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


@dataclass(frozen=True)
class OnepanelLayout:
    """Where Onepanel's CVAT workspace syncs and stores trained models, in one bucket.

    Semantics (Onepanel docs, "Using data from cloud storage in CVAT", linked in the module's docstring): the
    file syncer downloads ``<namespace>/<ONEPANEL_SYNC_DIRECTORY>`` (the workspace template prepends the namespace);
    CVAT writes trained models under ``<namespace>/<ONEPANEL_SYNC_DIRECTORY>/<ONEPANEL_WORKFLOW_MODEL_DIR>/`` and
    finds them in the synced copy, so both variables are relative: the first to the namespace, the second to the
    sync directory. A sync directory outside the namespace is still synced, but trained models are then stored
    where the syncer does not look, and must be uploaded to CVAT by hand.

    Attributes:
        namespace: the Onepanel namespace (a Kubernetes namespace name).
        sync_dir: ``ONEPANEL_SYNC_DIRECTORY``.
        model_dir: ``ONEPANEL_WORKFLOW_MODEL_DIR``.
        sync_prefix: the synced folder in the bucket (``<namespace>/<sync_dir>/``, or the bucket path given).
        model_prefix: the folder trained models go to (``<namespace>/<sync_dir>/<model_dir>/``).
        inside: True when the synced folder is inside the namespace (CVAT then sees trained models itself).
    """

    namespace: str
    sync_dir: str
    model_dir: str
    sync_prefix: str
    model_prefix: str
    inside: bool

    @property
    def prefixes(self) -> list[str]:
        """The folder keys to ensure in the bucket, parents first."""
        return [self.sync_prefix, self.model_prefix]


def _clean_path(value: str, what: str) -> str:
    parts = value.strip("/").split("/")
    if not value.strip("/") or any(p in ("", ".", "..") for p in parts) or any(
            c in value for c in "\r\n\0\\"):
        raise BadInput(f"invalid {what} {value!r}: use folder names separated by '/', without '.', '..' or "
                       "empty parts", f"e.g. {what} workflow-data")
    return "/".join(parts)


def onepanel_layout(namespace: str, sync_dir: str = "workflow-data", model_dir: str = "output") -> OnepanelLayout:
    """Validate the Onepanel options and work out the variables and bucket folders (see `OnepanelLayout`).

    Args:
        namespace: the Onepanel namespace (lowercase letters, digits and ``-``, ≤ 63 characters).
        sync_dir: the file syncer directory, relative to the namespace (default ``workflow-data``); a path
            starting with ``/`` is taken from the bucket root (inside the namespace if it starts with
            ``/<namespace>/``).
        model_dir: the trained-model folder, relative to the sync directory (default ``output``).

    Returns:
        The layout.

    Raises:
        BadInput: an invalid namespace or folder path.
    """
    if not _K8S_NAME.match(namespace or ""):
        raise BadInput(f"invalid --namespace {namespace!r}: Onepanel namespaces are 1–63 lowercase letters, "
                       "digits and '-', starting and ending with a letter or digit", "pass your namespace's name")
    model = _clean_path(model_dir, "--model-dir")
    absolute = sync_dir.startswith("/")
    sync = _clean_path(sync_dir, "--sync-dir")
    inside = True
    if absolute:
        if sync.startswith(f"{namespace}/"):
            sync = sync[len(namespace) + 1:]
        else:
            inside = False
    sync_prefix = f"{namespace}/{sync}/" if inside else f"{sync}/"
    return OnepanelLayout(namespace=namespace, sync_dir=sync, model_dir=model, sync_prefix=sync_prefix,
                          model_prefix=f"{namespace}/{sync}/{model}/", inside=inside)


def render_onepanel(grant: Grant, out: Path, layout: OnepanelLayout, bucket: str | None = None) -> list[RenderedFile]:
    """Render ``out/onepanel.env``: ``export ONEPANEL_SYNC_DIRECTORY=...`` and
    ``export ONEPANEL_WORKFLOW_MODEL_DIR=...`` (to export in Onepanel before creating the CVAT workspace), through
    ``templates/onepanel/onepanel.env.j2``, values quoted with `env_value` and parsed back with python-dotenv.

    Nothing is written here (see `provision.render.write`); the bucket folders of ``layout.prefixes`` are made by
    ``provision.onepanel.ensure_folders``.

    Args:
        grant: the stored Grant (its first bucket, or ``bucket``, is the one named in the file's comment).
        out: an existing directory.
        layout: from `onepanel_layout`.
        bucket: one of the grant's buckets; default the first.

    Returns:
        One file, with its content and the action writing it would take.

    Raises:
        BadInput: ``bucket`` is not in the grant; a value would not read back as written.
    """
    from dotenv import dotenv_values

    bucket = grant_bucket(grant, bucket or None)
    text = environment().get_template("onepanel/onepanel.env.j2").render(grant=grant, layout=layout, bucket=bucket)
    want = {"ONEPANEL_SYNC_DIRECTORY": layout.sync_dir, "ONEPANEL_WORKFLOW_MODEL_DIR": layout.model_dir}
    if dotenv_values(stream=io.StringIO(text), interpolate=False) != want:
        raise BadInput(f"{ONEPANEL_FILE} would not read back as written", "report this as a bug")
    path = out / ONEPANEL_FILE
    return [decide(path, text, text, read_text_exact(path), secret=False)]


def render(state: Any, out: Path, options: dict[str, Any]) -> list[RenderedFile]:
    """`render_onepanel` for ``state``'s grant with the render ``options`` ``namespace`` (required), ``sync_dir``,
    ``model_dir`` (see `onepanel_layout`) and ``bucket``.

    Raises:
        BadInput: no ``namespace``; see `onepanel_layout` and `render_onepanel`.
    """
    if not options.get("namespace"):
        raise BadInput("--target onepanel needs --namespace", "pass your Onepanel namespace, e.g. --namespace default")
    layout = onepanel_layout(options["namespace"], options.get("sync_dir") or "workflow-data",
                             options.get("model_dir") or "output")
    grant = state.one(options.get("grant"), "render-env --target onepanel").grant
    return render_onepanel(grant, out, layout, options.get("bucket"))
