"""CVAT behind its SSRF proxy (smokescreen): ``render-env --target cvat`` writes the Compose override and Helm values
allowing a storage endpoint on a private address (none for a public one); ``cvat attach`` turns CVAT's private-range
denial into that advice; CVAT's field lengths are refused before any request to CVAT."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml

from provision.models import Access, Grant, KeyPair
from provision.render.cvat import (
    HELM_VALUES_FILE,
    SMOKESCREEN_FILE,
    SMOKESCREEN_SERVICES,
    denied_address,
    private_addresses,
)
from provision.state import GrantState, State, StateStore
from tests.conftest import Cli, error_lines
from tests.cvat_fake import TOKEN, FakeCvat

DENIAL = ("Egress proxying is denied to host '{host}:9000': The destination address ({ip}) was denied by rule "
          "'Deny: Private Range'. destination address was denied by rule, see error.")


def _grant(endpoint_url: str | None, access_key: str = "AKIAEXAMPLEEXAMPLE01", bucket: str = "acme-public") -> Grant:
    from urllib.parse import urlparse

    url = urlparse(endpoint_url) if endpoint_url else None
    return Grant(provider="s3", storage_provider="minio", access=Access.readonly, buckets=[bucket],
                 endpoint=url.hostname if url else "s3.amazonaws.com", endpoint_url=endpoint_url,
                 port=(url.port or 443) if url else 443, secure=not url or url.scheme == "https", region="us-east-1",
                 auth=KeyPair(access_key=access_key, secret_key="s" * 40))


def _save(env: str, grant: Grant) -> None:
    StateStore(env).save(State(env=env, grants={"g": GrantState(provider="s3", grant=grant)}))


def _render(cli: Cli, env: str, out: Path) -> Any:
    out.mkdir(exist_ok=True)
    return cli("render-env", "--env", env, "--target", "cvat", "--out", str(out))


@pytest.mark.parametrize("endpoint_url, allowed", [
    ("http://127.0.0.1:9000", "127.0.0.1"),
    ("http://10.20.30.40:9000", "10.20.30.40"),
    ("https://192.168.1.20:9000", "192.168.1.20"),
    ("http://172.20.0.5:9000", "172.20.0.5"),
    ("http://[fd12::5]:9000", "fd12::5"),
    ("http://localhost:9000", "127.0.0.1"),
])
def test_private_endpoint_gets_override_and_helm_values(cli: Cli, workdir: Path, endpoint_url: str,
                                                        allowed: str) -> None:
    _save("lan", _grant(endpoint_url))
    out = workdir / "cvat"
    result = _render(cli, "lan", out)
    assert result.exit_code == 0, result.output
    opts = f"--allow-address={allowed}"
    override = yaml.safe_load((out / SMOKESCREEN_FILE).read_text())
    assert override == {"services": {s: {"environment": {"SMOKESCREEN_OPTS": opts}} for s in SMOKESCREEN_SERVICES}}
    assert set(SMOKESCREEN_SERVICES) >= {"cvat_server", "cvat_worker_import", "cvat_worker_export",
                                         "cvat_worker_chunks"}
    assert yaml.safe_load((out / HELM_VALUES_FILE).read_text()) == {"smokescreen": {"opts": opts}}
    for name in (SMOKESCREEN_FILE, HELM_VALUES_FILE):
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o600
    flat = " ".join(result.output.split())
    assert f"docker compose -f docker-compose.yml -f {SMOKESCREEN_FILE} up -d" in flat
    assert f"-f {HELM_VALUES_FILE}" in flat
    assert "s" * 40 not in result.output
    again = _render(cli, "lan", out)
    assert again.exit_code == 0 and not list(out.glob("*.provision-backup-*"))


@pytest.mark.parametrize("endpoint_url", ["https://93.184.216.34:9000", None, "http://172.32.0.1:9000"])
def test_public_endpoint_gets_none(cli: Cli, workdir: Path, endpoint_url: str | None,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    def offline(*args: Any, **kwargs: Any) -> Any:  # no DNS in the test: s3.amazonaws.com does not resolve
        raise socket.gaierror("offline")

    monkeypatch.setattr(socket, "getaddrinfo", offline)
    _save("pub", _grant(endpoint_url))
    out = workdir / "cvat"
    result = _render(cli, "pub", out)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["cvat-cloudstorage.json"]
    assert SMOKESCREEN_FILE not in result.output


def test_private_addresses_and_denial_parsing() -> None:
    assert private_addresses("127.8.9.10") == ["127.8.9.10"]
    assert private_addresses("::1") == ["::1"]
    assert private_addresses("172.15.255.255") == [] and private_addresses("172.31.0.1") == ["172.31.0.1"]
    assert private_addresses("8.8.8.8") == []
    assert denied_address(DENIAL.format(host="minio", ip="172.18.0.5")) == "172.18.0.5"
    assert denied_address("HTTP 400: The resource acme not found") is None


def test_attach_turns_the_private_range_denial_into_advice(cli: Cli, cvat: FakeCvat) -> None:
    _save("lan", _grant("http://192.168.1.20:9000"))
    message = DENIAL.format(host="192.168.1.20", ip="192.168.1.20")

    def deny(body: Any, patch: bool) -> None:
        cvat.errors.append(message)
        return None

    cvat.validate = deny  # type: ignore[method-assign]
    result = cli("cvat", "attach", "--env", "lan", "--url", cvat.url, "--token", TOKEN)
    assert result.exit_code == 3, result.output
    lines = error_lines(result)
    assert len(lines) == 1, result.stderr
    assert "SSRF proxy (smokescreen) denies private addresses" in lines[0]
    assert "SMOKESCREEN_OPTS=--allow-address=192.168.1.20" in lines[0] and SMOKESCREEN_FILE in lines[0]
    assert TOKEN not in result.output and "s" * 40 not in result.output
    assert ("POST", "/api/cloudstorages") in cvat.calls


@pytest.mark.parametrize("grant_kwargs, args, field, limit", [
    ({"access_key": "A" * 41}, [], "key", 40),
    ({"bucket": "acme-public"}, ["--display-name", "d" * 64], "display_name", 63),
])
def test_over_long_fields_refused_before_any_request(cli: Cli, cvat: FakeCvat, workdir: Path,
                                                     grant_kwargs: dict[str, Any], args: list[str], field: str,
                                                     limit: int) -> None:
    _save("long", _grant("http://10.0.0.9:9000", **grant_kwargs))
    result = cli("cvat", "attach", "--env", "long", "--url", cvat.url, "--token", TOKEN, *args)
    assert result.exit_code == 2, result.output
    assert f"CVAT accepts at most {limit}" in result.stderr and field in result.stderr
    assert len(error_lines(result)) == 1
    assert cvat.calls == []
    rendered = cli("render-env", "--env", "long", "--target", "cvat", "--out", str(workdir), *args)
    assert rendered.exit_code == 2 and f"CVAT accepts at most {limit}" in rendered.stderr
    assert not (workdir / "cvat-cloudstorage.json").exists() and not (workdir / SMOKESCREEN_FILE).exists()
    assert json.dumps(cvat.storages) == "{}"
