"""AWS S3 + IAM (and any S3-compatible endpoint with an IAM API). Imported only when the ``s3`` provider is
used (`provision.providers.base.load_provider`): it imports boto3's dependencies lazily, inside functions."""

from provision.providers.aws.objects import S3Objects, S3Transfer, s3_etag
from provision.providers.aws.provider import AwsProvider

__all__ = ["AwsProvider", "S3Objects", "S3Transfer", "s3_etag"]
