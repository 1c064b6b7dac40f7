"""`AwsProvider`: S3 buckets and a least-privilege credential for them, issued by AWS's IAM API (AWS, and
IAM-shaped servers: Ceph RGW, Wasabi, the sandbox's moto) or by MinIO's admin API (the ``minio`` issuer).

The work is split by concern: `sdk` (the one client seam), `buckets`, `credentials` (IAM), `minio` (MinIO's admin
API), `destroy`, `verify` and `objects` (the data commands); this class wires them into
`provision.providers.base.BaseProvider`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from provision.errors import BadInput, CloudRefused, ProvisionError
from provision.models import Access, Grant, KeyPair, Resource
from provision.names import check_s3_bucket, resolve_buckets
from provision.policies import IAM_ROLE_INLINE_LIMIT, IAM_USER_INLINE_LIMIT, policy_json, s3_policy
from provision.profiles import Profile
from provision.providers.aws import buckets as s3_buckets
from provision.providers.aws import credentials, destroy, marks, minio, sdk
from provision.providers.aws.objects import S3Objects
from provision.providers.aws.options import AwsOptions
from provision.providers.aws.verify import verify_key
from provision.providers.base import BaseProvider, Plan, VerifyRow, grant_credential


class AwsProvider(BaseProvider):
    """Provision S3 buckets and a least-privilege IAM user (or role) for them; with the ``minio`` issuer, a MinIO
    user with a canned policy and an access key (`provision.providers.aws.minio`).

    Args:
        profile: the validated inputs (``provider == "s3"``). No I/O happens here.

    Attributes:
        options: the profile's S3 options. sdk: the client seam. buckets: the checked bucket names.
        role: the IAM role (IAM-role mode), else None. user: the IAM user name (user mode), else None.

    Raises:
        BadInput: from `check`: invalid bucket/user/role names, conflicting options, a policy over IAM's size limit.
    """

    name = "s3"
    service = "AWS"
    bucket_kinds = ("bucket",)

    def __init__(self, profile: Profile) -> None:
        super().__init__(profile)
        self.options = AwsOptions.model_validate(profile.model_dump(include=set(AwsOptions.model_fields)))
        self.sdk = sdk.AwsSdk(self.options, profile.sandbox)
        self.role: str | None = None
        self.user: str | None = None
        self._issuer: str | None = None
        self._minio: minio.MinioIam | None = None
        self.buckets = self.check()

    # ---- validation (pure, before any call) -------------------------------------------------------------------
    def check(self) -> list[str]:
        """Validate the profile for S3 and settle the IAM identity (`role` or `user`); returns the bucket names.

        The policy must fit IAM's inline-policy quota for a user or a role
        (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html).

        Raises:
            BadInput: see the class docstring.
        """
        p = self.profile
        buckets = resolve_buckets(p.buckets, p.prefix, check_s3_bucket, "bucket")
        kind, name = self.options.identity(buckets, p.prefix, p.access)
        if kind == "role":
            self.role, limit = name, IAM_ROLE_INLINE_LIMIT
        else:
            self.user, limit = name, IAM_USER_INLINE_LIMIT
        size = len(policy_json(s3_policy(buckets, p.access)))
        if size > limit and self.options.issuer != "minio":  # MinIO has no inline-policy quota
            raise BadInput(
                f"the policy for {len(buckets)} buckets is {size} characters, over IAM's inline limit of {limit}",
                "split the buckets across environments (--env)",
            )
        return buckets

    def client(self, service: str, key: KeyPair | None = None) -> Any:
        """A boto3 client (see `provision.providers.aws.sdk.AwsSdk.client`)."""
        return self.sdk.client(service, key)

    # ---- the SDK's errors -------------------------------------------------------------------------------------
    def refused_errors(self) -> tuple[type[BaseException], ...]:
        """botocore's ``ClientError`` and ``BotoCoreError``, and MinIO's admin-API answers
        (`provision.providers.aws.minio.AdminRefused`); the base tells `unreachable_errors` apart first."""
        return sdk.sdk_errors() + minio.admin_errors()

    def unreachable_errors(self) -> tuple[type[BaseException], ...]:
        """botocore's connection and timeout errors (`provision.providers.aws.sdk.unreachable_errors`), and
        urllib3's (what ``MinioAdmin`` raises when MinIO does not answer)."""
        import urllib3

        return sdk.unreachable_errors() + (urllib3.exceptions.HTTPError,)

    def describe(self, exc: BaseException) -> str:
        """One line for ``exc``; an admin-API error names the command and the fix (`minio.describe`)."""
        if isinstance(exc, minio.AdminRefused):
            return minio.describe(exc)
        return super().describe(exc)

    # ---- the issuer -------------------------------------------------------------------------------------------
    def issuer(self) -> str:
        """Who issues the credential: ``--issuer``, else ``aws-iam`` on AWS itself, else what the endpoint says it
        is (`provision.providers.aws.minio.detect_issuer`: one read request). Sets `service` to ``MinIO`` for the
        ``minio`` issuer (error messages name it).

        Raises:
            BadInput: an option that does not apply to the detected issuer
                (`provision.providers.aws.options.AwsOptions.check_issuer`).
        """
        if self._issuer is None:
            issuer = self.options.issuer
            if issuer is None:
                issuer = minio.detect_issuer(self.client("s3")) if self.sdk.endpoint_url() else "aws-iam"
                self.options.model_copy(update={"issuer": issuer}).check_issuer()
            self._issuer = issuer
            if issuer == "minio":
                self.service = "MinIO"
        return self._issuer

    def minio_iam(self) -> minio.MinioIam:
        """The admin-API calls of the ``minio`` issuer, with the admin credential (one per provider object)."""
        if self._minio is None:
            self._minio = minio.MinioIam(self.sdk.minio_admin(), self.sdk.minio_admin)
        return self._minio

    def missing_credentials(self, exc: BaseException) -> ProvisionError | None:
        """`CloudRefused` naming the fix when botocore found no credentials (``NoCredentialsError``)."""
        from botocore.exceptions import NoCredentialsError

        if not isinstance(exc, NoCredentialsError):
            return None
        return CloudRefused("no AWS credentials found",
                            "configure the AWS credential chain (aws configure, AWS_PROFILE, ...) or try --env sandbox")

    # ---- apply ------------------------------------------------------------------------------------------------
    def ensure(self, state: Any, plan: Plan) -> Grant | None:
        """Ensure the buckets (private, encrypted, owner-enforced), the policy and the credential (an access key,
        or in IAM-role mode the role and its instance profile; with the ``minio`` issuer the canned policy, user and
        access key of `provision.providers.aws.minio.ensure_minio`).

        Returns:
            The Grant; None in a dry run when a new access key would be issued.

        Raises:
            CloudRefused: a bucket name is taken or not visible; the user already has 2 other keys.
            PartialFailure: the new key is still refused after the probe timeout.
        """
        s3, iam = self.client("s3"), self.client("iam")
        tagger = marks.Tags(s3, iam)
        region = self.sdk.region()
        issuer = self.issuer()
        if issuer == "minio":
            self.minio_iam().check()
        # every claim and region is checked before the first change (owner marks: provision.providers.aws.marks)
        found = s3_buckets.survey(s3, tagger, self.buckets, region, state, self.profile.adopt)
        if issuer != "minio":
            found.update(credentials.survey(self, tagger, state))
        for bucket in self.buckets:
            s3_buckets.ensure_bucket(s3, tagger, bucket, region, found[("bucket", bucket)], state, plan,
                                     found.get(("settings", bucket)))
        if issuer == "minio":
            key = minio.ensure_minio(self, self.minio_iam(), state, plan)
            return None if key is None else self.grant(key)
        if self.role:
            auth: Any = credentials.ensure_role(self, iam, tagger, found, state, plan)
        else:
            auth = credentials.ensure_user_and_key(self, iam, tagger, found, state, plan)
        return None if auth is None else self.grant(auth)

    def grant(self, auth: Any) -> Grant:
        """The Grant for ``auth`` on this profile's buckets and endpoint (``s3.amazonaws.com:443`` for AWS)."""
        endpoint = self.sdk.endpoint_url()
        if endpoint:
            url = urlparse(endpoint)
            host, secure = url.hostname or "", url.scheme == "https"
            port = url.port or (443 if secure else 80)
        else:
            host, port, secure = "s3.amazonaws.com", 443, True
        return Grant(
            provider="s3", storage_provider="minio", access=self.profile.access, buckets=self.buckets,
            endpoint=host, endpoint_url=endpoint, port=port, secure=secure, region=self.sdk.region(), auth=auth,
        )

    # ---- destroy ----------------------------------------------------------------------------------------------
    def holds_objects(self, state: Any, resource: Resource) -> bool:
        """True when the bucket still holds an object or object version (False when it is gone, or when it is
        handed over to another state that shares it rather than deleted)."""
        if marks.stays(self.tagger(), state, resource.kind, resource.name):
            return False
        return s3_buckets.holds_objects(self.client("s3"), resource.name)

    def delete_resource(self, state: Any, resource: Resource, plan: Plan, delete_data: bool) -> None:
        """Delete one created resource (`provision.providers.aws.destroy.delete_resource`). An inline policy or
        access key that `provision` added to an adopted user or role is deleted (it is ours); the adopted user,
        role or bucket is never passed here. MinIO's resources (``minio_*``) go through its admin API
        (`provision.providers.aws.minio.delete_resource`)."""
        if resource.kind.startswith("minio_"):
            minio.delete_resource(self.minio_iam(), resource, plan)
            return
        destroy.delete_resource(self.client("s3"), self.client("iam"), self.tagger(), state, resource, plan)

    # ---- owner marks on destroy (issue "Nothing lost, leaked or orphaned") -----------------------------------
    def tagger(self) -> marks.Tags:
        """The owner-mark tag reader/writer on the admin clients."""
        return marks.Tags(self.client("s3"), self.client("iam"))

    def mark_store(self, state: Any) -> marks.Tags:
        """`BaseProvider.mark_store`: S3 bucket and IAM tags (`provision.providers.aws.marks.Tags`)."""
        return self.tagger()

    # ---- verify and data --------------------------------------------------------------------------------------
    def verify(self, state: Any) -> list[VerifyRow]:
        """Probe the stored access key against its grant (`provision.providers.aws.verify.verify_key`).

        Raises:
            BadInput: the grant is not a key pair (IAM-role mode has no key to probe from here).
            CloudRefused: the admin credentials could not set up the probes.
        """
        grant = state.grant
        key = grant_credential(grant, write=False)
        if not isinstance(key, KeyPair):
            raise BadInput("this grant has no access key to probe (IAM-role mode)",
                           "verify from an instance that carries the instance profile")
        return verify_key(self.client("s3", key), self.client("s3"), grant.buckets, grant.access == Access.full,
                          self.sdk.region())

    def objects(self, state: Any, bucket: str, write: bool) -> S3Objects:
        """An `S3Objects` store for ``bucket``: the grant's key when it can do the job (`grant_credential`:
        reads; writes only with a ``full`` grant), else the admin credentials. Stores opened from one provider
        object with the same credential share one client (`provision.providers.aws.sdk.AwsSdk.data_client`)."""
        key = grant_credential(state.grant, write)
        return S3Objects(self.sdk.data_client(key if isinstance(key, KeyPair) else None), bucket)
