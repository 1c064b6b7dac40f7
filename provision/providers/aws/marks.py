"""Owner marks: tags naming the environment, grant and state that created a resource, so that another state
never adopts it unknowingly, and a resource shared with ``--adopt`` is handed over rather than deleted under its
other user.

Tags used (S3 bucket tags: https://docs.aws.amazon.com/AmazonS3/latest/userguide/object-tagging.html limits;
IAM tags: https://docs.aws.amazon.com/IAM/latest/UserGuide/id_tags.html, keys up to 128 characters of letters,
digits, spaces and ``_ . : / = + - @``, values up to 256):

- ``provision:env``, ``provision:grant``, ``provision:state``: the owner mark of a resource `provision` created
  (older versions wrote ``provision:env`` alone: such a mark names an env and no grant).
- ``provision:shared:<state id>:<grant>`` = ``<env>``: another state adopted it with ``--adopt`` and uses it.

Every reader and writer of those tags for buckets, IAM users, roles and instance profiles is here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from provision.errors import BadInput
from provision.ledger import Plan
from provision.models import Resource
from provision.providers.aws.sdk import answered_errors, error_code

ENV, GRANT, STATE = "provision:env", "provision:grant", "provision:state"
SHARED = "provision:shared:"
MARKED_KINDS = ("bucket", "iam_user", "iam_role", "instance_profile")
"""Resource kinds that carry an owner mark."""
_GONE = ("NoSuchEntity", "NoSuchBucket", "404")


@dataclass(frozen=True)
class Owner:
    """Who a mark names. ``grant``/``state`` are empty in a mark written by an older version (env only)."""

    env: str
    grant: str = ""
    state: str = ""

    def __str__(self) -> str:
        return f"env {self.env!r}, grant {self.grant!r}" if self.grant else f"env {self.env!r}"


def me(state: Any) -> Owner:
    """The `Owner` a grant record (``env``, ``name``, ``state_id``) writes."""
    return Owner(state.env, state.name, state.state_id)


def mark(state: Any) -> dict[str, str]:
    """The owner-mark tags of ``state``'s grant: ``{provision:env, provision:grant, provision:state}``."""
    return {ENV: state.env, GRANT: state.name, STATE: state.state_id}


def iam_tags(tags: dict[str, str]) -> list[dict[str, str]]:
    """``tags`` as IAM's and S3's ``[{"Key", "Value"}]`` list."""
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def owner(tags: dict[str, str]) -> Owner | None:
    """The owner a resource's tags name, or None when it carries no mark."""
    if ENV not in tags:
        return None
    return Owner(tags[ENV], tags.get(GRANT, ""), tags.get(STATE, ""))


def sharers(tags: dict[str, str]) -> list[Owner]:
    """The states that adopted the resource with ``--adopt`` and still use it, in tag order."""
    found = []
    for key, env in tags.items():
        if key.startswith(SHARED):
            state_id, _, grant = key[len(SHARED):].partition(":")
            found.append(Owner(env, grant, state_id))
    return found


def shared_key(who: Owner) -> str:
    """The tag key recording that ``who`` shares a resource."""
    return f"{SHARED}{who.state}:{who.grant}"


def is_mine(who: Owner | None, state: Any) -> bool:
    """True when the mark ``who`` names exactly this state's grant."""
    return who is not None and who.state == state.state_id and who.grant == state.name


def is_other(who: Owner | None, state: Any) -> bool:
    """True when the mark ``who`` names another environment or state. Another grant of this same state (one
    install's storage and its Links connection on one bucket) is not another's: the environment's ``destroy``
    hands such a bucket over between its grants. A mark naming only this env, written by an older version, is not
    another's either."""
    if who is None:
        return False
    return who.env != state.env or bool(who.state and who.state != state.state_id)


class Tags:
    """Read and change the tags of the marked resource kinds (`MARKED_KINDS`) through one interface.

    Args:
        s3, iam: admin clients.
    """

    def __init__(self, s3: Any, iam: Any) -> None:
        self.s3, self.iam = s3, iam

    def read(self, kind: str, name: str) -> dict[str, str] | None:
        """The resource's tags (``{}`` when it has none); None when it does not exist."""
        try:
            if kind == "bucket":
                try:
                    return _dict(self.s3.get_bucket_tagging(Bucket=name)["TagSet"])
                except answered_errors() as exc:
                    if error_code(exc) == "NoSuchTagSet":
                        return {}
                    raise
            if kind == "iam_user":
                return _dict(self.iam.get_user(UserName=name)["User"].get("Tags", []))
            if kind == "iam_role":
                return _dict(self.iam.get_role(RoleName=name)["Role"].get("Tags", []))
            if kind == "instance_profile":
                return _dict(self.iam.get_instance_profile(InstanceProfileName=name)["InstanceProfile"]
                             .get("Tags", []))
        except answered_errors() as exc:
            if error_code(exc) in _GONE:
                return None
            raise
        raise ValueError(f"no owner mark on {kind}")

    def change(self, plan: Plan, kind: str, name: str, detail: str, add: dict[str, str],
               remove: tuple[str, ...] = (), known: dict[str, str] | None = None) -> None:
        """Add (or overwrite) ``add`` and drop ``remove`` on the resource, through ``plan.update``. S3 replaces a
        bucket's whole tag set, so its current tags (``known``, else read) are merged first."""
        if kind == "bucket":
            current = known if known is not None else (self.read(kind, name) or {})
            merged = {k: v for k, v in {**current, **add}.items() if k not in remove}
            if merged:
                plan.update(kind, name, detail, self.s3.put_bucket_tagging, Bucket=name,
                            Tagging={"TagSet": iam_tags(merged)})
            else:
                plan.update(kind, name, detail, self.s3.delete_bucket_tagging, Bucket=name)
            return
        arg, tag, untag = {
            "iam_user": ("UserName", self.iam.tag_user, self.iam.untag_user),
            "iam_role": ("RoleName", self.iam.tag_role, self.iam.untag_role),
            "instance_profile": ("InstanceProfileName", self.iam.tag_instance_profile,
                                 self.iam.untag_instance_profile),
        }[kind]
        if add:
            plan.update(kind, name, detail, tag, **{arg: name, "Tags": iam_tags(add)})
        if remove:
            plan.update(kind, name, detail if not add else "drop the share tag", untag,
                        **{arg: name, "TagKeys": list(remove)})


def _dict(tags: list[dict[str, str]]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in tags}


def check_claim(state: Any, adopt: bool, kind: str, name: str, tags: dict[str, str] | None) -> None:
    """Refuse to adopt a resource another state marked, unless ``adopt`` (``--adopt``). Makes no request.

    Args:
        state: the grant record. adopt: the profile's ``adopt``. kind, name: the resource.
        tags: its tags (None: it does not exist).

    Raises:
        BadInput: it exists, the state does not record it, and its mark names another env/grant/state.
    """
    if tags is None or adopt or state.find(kind, name) is not None:
        return
    who = owner(tags)
    if is_other(who, state):
        raise BadInput(f"{kind} {name!r} belongs to provision {who} (its owner mark says so)",
                       "pass --adopt to share it knowingly (this env's destroy never deletes it), or choose "
                       "other names (--prefix, --user)")


def settle(plan: Plan, state: Any, tagger: Tags, resource: Resource, tags: dict[str, str],
           kept: str | None = None, adopted: str = "adopted (destroy never deletes it)") -> bool:
    """Record an existing resource after `check_claim` passed, and keep its tags right.

    - It carries this grant's own mark (a create whose answer was lost, a run cut short): recorded as created.
    - The state created it: its owner mark is added when missing.
    - It carries another state's mark: adopted (``--adopt``), with this grant's share tag added.
    - No mark: adopted, as before marks existed.

    Args:
        plan: the ledger. state: the grant record. tagger: `Tags`. resource: the record to make (``created``
            is decided here). tags: its current tags.
        kept: the ``no change`` line's detail when the state already recorded it and nothing changed (None: no
            line). adopted: the end of the ``adopt`` line.

    Returns:
        True when the state now records it as created by `provision`.
    """
    kind, name = resource.kind, resource.name
    recorded = state.find(kind, name)
    who = owner(tags)
    if is_mine(who, state):
        if recorded is None or not recorded.created:
            plan.record(resource.model_copy(update={"created": True}))
            plan.note("no change", kind, name, "carries this grant's owner mark: tracked as created")
        elif kept:
            plan.note("no change", kind, name, kept)
        return True
    if recorded is not None and recorded.created:
        if who is None:
            tagger.change(plan, kind, name, "owner mark: " + ", ".join(f"{k}={v}" for k, v in mark(state).items()),
                          mark(state), known=tags)
        elif kept:
            plan.note("no change", kind, name, kept)
        return True
    mine = shared_key(me(state))
    if is_other(who, state):
        if plan.adopt(resource.model_copy(update={"created": False}), f"owned by provision {who}; {adopted}; "
                      "shared (--adopt)") or mine not in tags:
            tagger.change(plan, kind, name, f"shared with provision {me(state)}", {mine: state.env}, known=tags)
        elif kept:
            plan.note("no change", kind, name, kept)
        return False
    if not plan.adopt(resource.model_copy(update={"created": False}), f"exists; {adopted}") and kept:
        plan.note("no change", kind, name, kept)
    return False


def _given_away(tags: dict[str, str], state: Any) -> bool:
    """Its mark already names another state (an earlier, interrupted destroy handed it over)."""
    who = owner(tags)
    return who is not None and bool(who.state) and is_other(who, state)


def _heirs(tags: dict[str, str], state: Any) -> list[Owner]:
    return [h for h in sharers(tags) if h.state != state.state_id or h.grant != state.name]


def stays(tagger: Tags, state: Any, kind: str, name: str) -> bool:
    """True when this state's destroy must leave the resource to another state (it shares it, or it was already
    handed over); read-only."""
    tags = tagger.read(kind, name)
    return tags is not None and (_given_away(tags, state) or bool(_heirs(tags, state)))


def hand_over(plan: Plan, state: Any, tagger: Tags, kind: str, name: str) -> bool:
    """Before deleting a resource this state created: when another state shares it (``--adopt``), hand it over
    (the first sharer's mark replaces this one, its share tag goes) instead of deleting it; when its mark already
    names another state (handed over by an earlier, interrupted destroy), leave it.

    Returns:
        True when the resource must not be deleted by this state.
    """
    tags = tagger.read(kind, name)
    if tags is None:
        return False
    if _given_away(tags, state):
        plan.note("no change", kind, name, f"handed over to provision {owner(tags)}")
        return True
    heirs = _heirs(tags, state)
    if not heirs:
        return False
    heir = heirs[0]
    tagger.change(plan, kind, name, f"handed over to provision {heir} (it shares it); not deleted",
                  {ENV: heir.env, GRANT: heir.grant, STATE: heir.state}, remove=(shared_key(heir),), known=tags)
    return True


def take_over(plan: Plan, state: Any, tagger: Tags) -> None:
    """Before a destroy: a resource this state adopted whose mark now names it (handed over by its creator's
    destroy) becomes this state's (recorded as created), so this destroy deletes it."""
    for r in list(state.resources):
        if r.kind in MARKED_KINDS and not r.created:
            tags = tagger.read(r.kind, r.name)
            if tags is not None and is_mine(owner(tags), state):
                plan.record(r.model_copy(update={"created": True}))
                plan.note("no change", r.kind, r.name, "handed over to this grant by its creator")


def leave(plan: Plan, state: Any, tagger: Tags) -> None:
    """After a destroy: drop this state's share tag from the resources it adopted (it no longer uses them)."""
    key = shared_key(me(state))
    for r in list(state.resources):
        if r.kind in MARKED_KINDS and not r.created:
            tags = tagger.read(r.kind, r.name)
            if tags is not None and key in tags:
                tagger.change(plan, r.kind, r.name, f"no longer shared with provision {me(state)}", {},
                              remove=(key,))
