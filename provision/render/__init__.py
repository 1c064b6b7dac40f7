"""Render platform configuration from the Grant, through Jinja templates, and merge it into existing files.

Templates (``templates/<target>/*.j2``) see only the Grant and the render options, never an SDK object. Every
value passes a quoting filter written for the parser that will really read the file, and every rendered file is
parsed back and compared with the intended values before anything is written: a value that cannot be written
safely is refused (`BadInput`, exit 2), never written mangled. Existing files are merged without losing what is not
ours (`provision.render.envfile`, `provision.render.yamlfile`), and a set of files is written all or none (`write`).

Modules: `formats` (quoting, Jinja, `RenderedFile`, `write`), `envfile` (``.env`` merge), `yamlfile` (round-trip YAML
edits), `grants` (what targets share about a Grant), one module per target (`supervisely`, `cvat`, `onepanel`), and
here the one target table, `TARGETS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provision.errors import BadInput
from provision.output import mask, mask_text, secrets_of
from provision.render import cvat, onepanel, supervisely
from provision.render.cvat import (
    AWS_S3_ENDPOINT,
    CVAT_CREDENTIALS,
    CVAT_FILE,
    CVAT_LIMITS,
    CVAT_PROVIDER_TYPES,
    azure_connection_string,
    cvat_cloudstorage_body,
    cvat_credentials,
    cvat_specific_attributes,
    render_cvat,
)
from provision.render.envfile import check_env, merge_env
from provision.render.formats import (
    RenderedFile,
    compose_path,
    env_value,
    json_value,
    read_text_exact,
    write,
    yaml_str,
)
from provision.render.grants import AUTH_NAMES, S3_COMPATIBLE
from provision.render.onepanel import ONEPANEL_FILE, OnepanelLayout, onepanel_layout, render_onepanel
from provision.render.supervisely import (
    ENV_KEYS,
    HTTP_STORAGE,
    KEY_FILE_TARGET,
    PROXY_CACHE_DEFAULTS,
    REMOTE_LINKS_TARGET,
    SuperviselyPlan,
    env_expected,
    merge_override,
    plan_supervisely,
    proxy_cache_env,
    render_supervisely,
)
from provision.roles import links_endpoint


@dataclass(frozen=True)
class Target:
    """One ``render-env --target``.

    Attributes:
        render: ``render(state, out, options)`` -> the files (nothing written; see `write`).
        options: the render option names it reads (what `provision.state.RenderRecord.options` may hold).
        flags: the ``render-env`` flags that apply to it (any other option flag is refused).
        rerender: repeated from the state after a rotation (its files hold the grant's secret).
    """

    render: Callable[[Any, Path, dict[str, Any]], list[RenderedFile]]
    options: tuple[str, ...]
    flags: tuple[str, ...]
    rerender: bool


TARGETS: dict[str, Target] = {
    "supervisely": Target(supervisely.render, ("grant", "storage", "proxy_env", "connections", "mounts"),
                          ("--grant", "--storage", "--cache", "--skip-migration-check"), True),
    "cvat": Target(cvat.render, ("grant", "bucket", "display_name", "manifests"),
                   ("--grant", "--bucket", "--display-name", "--manifest"), True),
    "onepanel": Target(onepanel.render, ("grant", "bucket", "namespace", "sync_dir", "model_dir"),
                       ("--grant", "--bucket", "--namespace", "--sync-dir", "--model-dir"), False),
}
"""The one table of targets: name -> `Target`. ``render-env``, `render_target` and the rotation's re-render all read
it."""


def target_of(name: str) -> Target:
    """The `Target` called ``name``.

    Raises:
        BadInput: no such target (the message lists them).
    """
    if name not in TARGETS:
        names = list(TARGETS)
        raise BadInput(f"unknown --target {name!r}", f"use --target {', '.join(names[:-1])} or {names[-1]}")
    return TARGETS[name]


def render_target(target: str, state: Any, out: Path, options: dict[str, Any]) -> list[RenderedFile]:
    """Render ``target``'s files for the grant of ``state`` into ``out`` (nothing written; then call `write`, which
    writes them all or none).

    Args:
        target: a name in `TARGETS` (``supervisely``, ``cvat``, ``onepanel``).
        state: the environment's `provision.state.State` (its ``grant`` must be set).
        out: destination directory.
        options: render options (`Target.options`; supervisely: ``connection``, the remote_links.yml connection
            name, and ``proxy_env``, the proxy cache settings; cvat: ``bucket``, ``display_name``, ``manifests``;
            onepanel: ``namespace``, ``sync_dir``, ``model_dir``, ``bucket``).

    Returns:
        The files, each with its content and the action writing it would take.

    Raises:
        BadInput: unknown target, or a value that cannot be written safely, or an existing file that cannot be
            merged.
    """
    return target_of(target).render(state, out, options)


__all__ = [
    "AUTH_NAMES", "AWS_S3_ENDPOINT", "CVAT_CREDENTIALS", "CVAT_FILE", "CVAT_LIMITS", "CVAT_PROVIDER_TYPES", "ENV_KEYS",
    "HTTP_STORAGE", "KEY_FILE_TARGET", "ONEPANEL_FILE", "PROXY_CACHE_DEFAULTS", "REMOTE_LINKS_TARGET",
    "S3_COMPATIBLE", "SuperviselyPlan", "TARGETS", "OnepanelLayout", "RenderedFile",
    "Target", "azure_connection_string", "check_env", "compose_path", "cvat_cloudstorage_body",
    "cvat_credentials", "cvat_specific_attributes", "env_expected", "env_value", "json_value", "links_endpoint",
    "mask", "mask_text", "merge_env", "merge_override", "onepanel_layout", "plan_supervisely", "proxy_cache_env",
    "read_text_exact",
    "render_cvat", "render_onepanel", "render_supervisely", "render_target", "secrets_of", "target_of", "write",
    "yaml_str",
]
