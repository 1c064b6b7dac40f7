"""Owner marks: tags naming the environment, grant and state that created a resource, so that another state
never adopts it unknowingly, and a resource shared with ``--adopt`` is handed over rather than deleted under its
other user.

Tags used (S3 bucket tags: https://docs.aws.amazon.com/AmazonS3/latest/userguide/object-tagging.html limits;
IAM tags: https://docs.aws.amazon.com/IAM/latest/UserGuide/id_tags.html, keys up to 128 characters of letters,
digits, spaces and ``_ . : / = + - @``, values up to 256):

- ``provision:env``, ``provision:grant``, ``provision:state``: the owner mark of a resource `provision` created
  (older versions wrote ``provision:env`` alone: such a mark names an env and no grant).
- ``provision:shared:<state id>:<grant>`` = ``<env>``: another state adopted it with ``--adopt`` and uses it.

Every reader and writer of those tags for buckets, IAM users, roles and instance profiles is here (`Tags`, the
AWS `provision.providers.owner_marks.MarkStore`); the share and hand-over decisions on destroy (`stays`,
`hand_over`, `take_over`, `leave`) are the cloud-independent ones of `provision.providers.owner_marks`. Tag rules:
https://docs.aws.amazon.com/tag-editor/latest/userguide/tagging.html.
"""

from __future__ import annotations

from typing import Any

from provision.errors import BadInput
from provision.ledger import Plan
from provision.models import Resource
from provision.providers.aws.sdk import answered_errors, error_code
from provision.providers.owner_marks import Marks, MarkStore, OwnerMark, Texts
from provision.providers.owner_marks import hand_over as hand_over  # the decisions, re-exported (on `Tags`)
from provision.providers.owner_marks import leave as leave
from provision.providers.owner_marks import stays as stays
from provision.providers.owner_marks import take_over as take_over

ENV, GRANT, STATE = "provision:env", "provision:grant", "provision:state"
SHARED = "provision:shared:"
MARKED_KINDS = ("bucket", "iam_user", "iam_role", "instance_profile")
"""Resource kinds that carry an owner mark."""
_GONE = ("NoSuchEntity", "NoSuchBucket", "404")


TEXTS = Texts(shared="shared with provision {who.named}", given_away="handed over to provision {who.named}",
              handed_over="handed over to provision {who.named} (it shares it); not deleted",
              left="no longer shared with provision {who.named}")
"""The report lines of the share decisions on AWS."""


def me(state: Any) -> OwnerMark:
    """The `OwnerMark` a grant record (``env``, ``name``, ``state_id``) writes."""
    return OwnerMark(state.env, state.name, state.state_id)


def mark(state: Any) -> dict[str, str]:
    """The owner-mark tags of ``state``'s grant: ``{provision:env, provision:grant, provision:state}``."""
    return owner_tags(me(state))


def owner_tags(who: OwnerMark) -> dict[str, str]:
    """The owner-mark tags naming ``who``."""
    return {ENV: who.env, GRANT: who.grant, STATE: who.state}


def iam_tags(tags: dict[str, str]) -> list[dict[str, str]]:
    """``tags`` as IAM's and S3's ``[{"Key", "Value"}]`` list."""
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def owner(tags: dict[str, str]) -> OwnerMark | None:
    """The owner a resource's tags name (``grant``/``state`` empty in a mark of an older version, which wrote
    ``provision:env`` alone), or None when it carries no mark."""
    if ENV not in tags:
        return None
    return OwnerMark(tags[ENV], tags.get(GRANT, ""), tags.get(STATE, ""))


def sharers(tags: dict[str, str]) -> list[OwnerMark]:
    """The states that adopted the resource with ``--adopt`` and still use it, in tag order."""
    found = []
    for key, env in tags.items():
        if key.startswith(SHARED):
            state_id, _, grant = key[len(SHARED):].partition(":")
            found.append(OwnerMark(env, grant, state_id))
    return found


def shared_key(who: OwnerMark) -> str:
    """The tag key recording that ``who`` shares a resource."""
    return f"{SHARED}{who.state}:{who.grant}"


def is_mine(who: OwnerMark | None, state: Any) -> bool:
    """True when the mark ``who`` names exactly this state's grant."""
    return who is not None and who.names(me(state))


def is_other(who: OwnerMark | None, state: Any) -> bool:
    """True when the mark ``who`` names another environment or state. Another grant of this same state (one
    install's storage and its Links connection on one bucket) is not another's: the environment's ``destroy``
    hands such a bucket over between its grants. A mark naming only this env, written by an older version, is not
    another's either."""
    if who is None:
        return False
    return who.env != state.env or bool(who.state and who.state != state.state_id)


class Tags(MarkStore):
    """Read and change the tags of the marked resource kinds (`MARKED_KINDS`): the AWS `MarkStore`.

    Args:
        s3, iam: admin clients.
    """

    kinds = MARKED_KINDS
    texts = TEXTS

    def __init__(self, s3: Any, iam: Any) -> None:
        self.s3, self.iam = s3, iam

    def read(self, kind: str, name: str) -> Marks | None:
        """The owner and share marks in the resource's tags (``raw``: the tags); None when it does not exist.

        Raises:
            botocore.exceptions.ClientError: a refusal other than "gone". ValueError: a kind with no marks.
        """
        tags = self.tags(kind, name)
        return None if tags is None else Marks(owner(tags), tuple(sharers(tags)), raw=tags)

    def write(self, plan: Plan, kind: str, name: str, detail: str, before: Marks, owner: OwnerMark | None = None,
              add: OwnerMark | None = None, drop: OwnerMark | None = None) -> None:
        """`MarkStore.write` through `change`: the owner-mark tags of ``owner`` and the share tag of ``add`` are
        added, the share tag of ``drop`` removed (a bucket's other tags kept, from ``before.raw``)."""
        tags = owner_tags(owner) if owner is not None else {}
        if add is not None:
            tags[shared_key(add)] = add.env
        self.change(plan, kind, name, detail, tags, remove=(shared_key(drop),) if drop is not None else (),
                    known=before.raw)

    def tags(self, kind: str, name: str) -> dict[str, str] | None:
        """The resource's tags (``{}`` when it has none); None when it does not exist.

        Raises:
            botocore.exceptions.ClientError: a refusal other than "gone". ValueError: a kind with no marks.
        """
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
        bucket's whole tag set (https://docs.aws.amazon.com/AmazonS3/latest/API/API_PutBucketTagging.html), so its
        current tags (``known``, else read) are merged first; IAM tags and untags keys one call each.

        Raises:
            botocore.exceptions.ClientError: AWS refused.
        """
        if kind == "bucket":
            current = known if known is not None else (self.tags(kind, name) or {})
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
        raise BadInput(f"{kind} {name!r} belongs to provision {who.named} (its owner mark says so)",
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
        if plan.adopt(resource.model_copy(update={"created": False}),
                      f"owned by provision {who.named}; {adopted}; shared (--adopt)") or mine not in tags:
            tagger.change(plan, kind, name, TEXTS.shared.format(who=me(state)), {mine: state.env}, known=tags)
        elif kept:
            plan.note("no change", kind, name, kept)
        return False
    if not plan.adopt(resource.model_copy(update={"created": False}), f"exists; {adopted}") and kept:
        plan.note("no change", kind, name, kept)
    return False
