"""Account SAS maths: expiry parsing, the fields of a token, the renewal rule, signing. Pure except `issue_sas`,
which signs with azure-storage-blob (imported when called).

What a SAS may do (``sp``, ``ss``, ``srt``) is `provision.policies`' (`sas_permissions`); the token format is
https://learn.microsoft.com/rest/api/storageservices/create-account-sas.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs

from provision.errors import BadInput
from provision.models import Access, SasToken
from provision.names import parse_duration, parse_expiry
from provision.policies import SAS_RESOURCE_TYPES, SAS_SERVICES, sas_permissions

SAS_CLOCK_SKEW = timedelta(minutes=5)
"""A SAS starts this long before it is issued, so a server whose clock runs behind accepts it at once."""


@dataclass(frozen=True)
class SasExpiry:
    """A parsed ``--sas-expiry``: a lifetime (``30d``, ``12h``) or a fixed UTC instant.

    Attributes:
        text: the value as given.
        lifetime: the lifetime, for ``Nd`` / ``Nh``; else None.
        instant: the fixed expiry (aware UTC), for an ISO-8601 value; else None.
    """

    text: str
    lifetime: timedelta | None
    instant: datetime | None

    @classmethod
    def parse(cls, value: str, now: datetime) -> SasExpiry:
        """Parse ``value`` (``Nd``, ``Nh`` or an ISO-8601 UTC instant) against ``now`` (aware UTC).

        Raises:
            BadInput: unparseable, zero, without a time zone, or not in the future (`provision.names.parse_expiry`).
        """
        instant = parse_expiry(value, now, "--sas-expiry")
        try:
            return cls(value, parse_duration(value, "--sas-expiry"), None)
        except BadInput:
            return cls(value, None, instant)

    def expiry(self, start: datetime) -> datetime:
        """The expiry of a SAS issued at ``start`` (aware UTC, whole seconds)."""
        if self.instant is not None:
            return self.instant
        assert self.lifetime is not None
        return (start + self.lifetime).replace(microsecond=0)

    def differs(self, stored: SasToken) -> str | None:
        """How ``stored``'s expiry differs from this one (None when the same within a minute, or unknown): for
        an instant, the expiry; for a lifetime, the stored SAS's lifetime (``se`` minus its issue time)."""
        if self.instant is not None:
            if abs((self.instant - stored.expires_at).total_seconds()) > 60:
                return f"it expires {when(stored.expires_at)}"
            return None
        fields = sas_fields(stored.token)
        if "st" not in fields or self.lifetime is None:
            return None
        lifetime = stored.expires_at - (instant(fields["st"]) + SAS_CLOCK_SKEW)
        if abs((lifetime - self.lifetime).total_seconds()) > 60:
            return f"its lifetime is {span(lifetime)}, expiring {when(stored.expires_at)}"
        return None


def sas_fields(token: str) -> dict[str, str]:
    """The query parameters of a SAS token (``sp``, ``st``, ``se``, ``srt``, ``ss``, ``spr``, ``sig`` ...)."""
    return {k: v[0] for k, v in parse_qs(token.lstrip("?"), keep_blank_values=True).items()}


def instant(text: str) -> datetime:
    """A SAS time field (``2027-01-01T00:00:00Z``) as an aware UTC datetime."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc)


def span(delta: timedelta) -> str:
    """A duration for messages: ``6 d 0 h``, or ``5 h 30 min`` under a day."""
    hours = int(delta.total_seconds() // 3600)
    if hours >= 24:
        return f"{hours // 24} d {hours % 24} h"
    return f"{hours} h {int(delta.total_seconds() // 60) % 60} min"


def when(moment: datetime) -> str:
    """An instant for messages: ``2027-01-01T00:00:00Z``."""
    return f"{moment.astimezone(timezone.utc):%Y-%m-%dT%H:%M:%SZ}"


def describe_sas(access: Access) -> str:
    """The fields every issued SAS has, for messages: ``ss=b srt=co sp=rl spr=https``."""
    return f"ss={SAS_SERVICES} srt={SAS_RESOURCE_TYPES} sp={sas_permissions(access)} spr=https"


def issue_sas(account: str, key: str, access: Access, start: datetime, expiry: datetime) -> str:
    """An account SAS for the Blob service, signed with ``key``.

    Args:
        account: the storage account name.
        key: the base64 account key that signs it (key2 in management mode).
        access: ``readonly`` → ``sp=rl``; ``full`` → ``sp=racwdl`` (`provision.policies.sas_permissions`).
        start, expiry: aware UTC datetimes (``st`` / ``se``).

    Returns:
        The token, a query string without the leading ``?``: ``ss=b``, ``srt=co``, ``spr=https`` always.
    """
    from azure.storage.blob import AccountSasPermissions, ResourceTypes, Services, generate_account_sas

    return generate_account_sas(
        account, key, resource_types=ResourceTypes.from_string(SAS_RESOURCE_TYPES),
        permission=AccountSasPermissions.from_string(sas_permissions(access)), expiry=expiry, start=start,
        services=Services.from_string(SAS_SERVICES), protocol="https")


def sas_renewal(stored: SasToken, access: Access, now: datetime, renew_before: timedelta) -> str | None:
    """Why the stored SAS must be replaced, or None when it can be kept.

    The rule: keep it until less than the smaller of ``renew_before`` and half its lifetime remains; replace it at
    once when it does not grant ``access`` exactly (``sp``) or is not an https-only Blob account SAS for
    containers + objects.

    Args:
        stored: the SAS in state (its token's ``st`` is the issue time minus `SAS_CLOCK_SKEW`).
        access: the access the grant must have now.
        now: the current time (aware UTC).
        renew_before: ``--renew-before``.

    Returns:
        A one-line reason, or None.
    """
    fields = sas_fields(stored.token)
    wanted = sas_permissions(access)
    if set(fields.get("sp", "")) != set(wanted):
        return f"access changed: the stored SAS has sp={fields.get('sp', '')}, {access.value} needs sp={wanted}"
    if (fields.get("ss"), set(fields.get("srt", "")), fields.get("spr")) != (SAS_SERVICES, set(SAS_RESOURCE_TYPES),
                                                                             "https"):
        return "the stored SAS is not an https-only Blob account SAS for containers and objects"
    expires = stored.expires_at.astimezone(timezone.utc)
    left = expires - now
    if left <= timedelta(0):
        return f"the stored SAS expired at {when(expires)}"
    issued = instant(fields["st"]) + SAS_CLOCK_SKEW if "st" in fields else expires - 2 * renew_before
    threshold = min(renew_before, (expires - issued) / 2)
    if left < threshold:
        return f"renewal: {span(left)} left of the stored SAS, under {span(threshold)}"
    return None
