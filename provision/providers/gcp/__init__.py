"""Google Cloud Storage: buckets, a least-privilege service account bound to them, and one credential.

Modules: `provider` (`GcsProvider`, the apply/destroy/verify/data entry points), `options` (the profile's GCS
fields and their rules), `sdk` (the one seam to Google's SDKs: clients, credentials, retries, error types),
`buckets`, `bindings` (bucket IAM), `credentials` (service account, key file, HMAC key), `intents` (key intents),
`marks` (share marks and the hand-over of shared buckets and service accounts on destroy), `verify` (the probe
table), `objects` (`GcsObjects`, `GcsTransfer`).
"""

from provision.providers.gcp.credentials import key_file_path
from provision.providers.gcp.objects import GcsObjects, GcsTransfer
from provision.providers.gcp.options import SANDBOX_NOTE, GcsOptions
from provision.providers.gcp.provider import GcsProvider
from provision.providers.gcp.sdk import IAM_ENDPOINT_ENV

__all__ = ["IAM_ENDPOINT_ENV", "SANDBOX_NOTE", "GcsObjects", "GcsOptions", "GcsProvider", "GcsTransfer",
           "key_file_path"]
