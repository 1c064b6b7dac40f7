"""AWS S3 + IAM (and any S3-compatible endpoint with an IAM API, or MinIO's admin API). The provider is imported
only when the ``s3`` provider is used (`provision.providers.base.load_provider`; the exports below are lazy, so
the profile's fields in ``options`` come without it); boto3 is imported inside functions."""

from provision.providers import lazy_exports

__getattr__ = lazy_exports(__name__, {
    "S3Objects": "objects",
    "S3Transfer": "objects",
    "s3_etag": "objects",
    "AwsProvider": "provider",
})

__all__ = ["AwsProvider", "S3Objects", "S3Transfer", "s3_etag"]
