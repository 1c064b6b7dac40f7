"""Google Cloud Storage: buckets, a least-privilege service account bound to them, and one credential.

Modules: `provider` (`GcsProvider`, the apply/destroy/verify/data entry points), `options` (the profile's GCS
fields and their rules), `sdk` (the one seam to Google's SDKs: clients, credentials, retries, error types),
`buckets`, `bindings` (bucket IAM), `credentials` (service account, key file, HMAC key), `intents` (key intents),
`marks` (share marks and the hand-over of shared buckets and service accounts on destroy), `verify` (the probe
table), `objects` (`GcsObjects`, `GcsTransfer`).
"""

from provision.providers import lazy_exports

__getattr__ = lazy_exports(__name__, {
    "key_file_path": "credentials",
    "GcsObjects": "objects",
    "GcsTransfer": "objects",
    "SANDBOX_NOTE": "options",
    "GcsOptions": "options",
    "GcsProvider": "provider",
    "IAM_ENDPOINT_ENV": "sdk",
})

__all__ = ["IAM_ENDPOINT_ENV", "SANDBOX_NOTE", "GcsObjects", "GcsOptions", "GcsProvider", "GcsTransfer",
           "key_file_path"]
