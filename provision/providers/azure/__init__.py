"""Azure Blob: `AzureProvider` and its parts, one module per concern (options, sdk, account, containers,
credentials, destroy, verify, objects). The provider is imported only when ``provision azure`` (or a command on
an Azure environment) runs (the exports below are lazy, so the profile's fields in ``options`` come without it):
the SDKs themselves are imported inside the functions that use them."""

from provision.providers import lazy_exports

__getattr__ = lazy_exports(__name__, {
    "BlobObjects": "objects",
    "BlobTransfer": "objects",
    "AzureProvider": "provider",
    "SAS_CLOCK_SKEW": "sas",
    "SasExpiry": "sas",
    "issue_sas": "sas",
    "sas_fields": "sas",
    "sas_renewal": "sas",
    "AccountAccess": "sdk",
})

__all__ = ["SAS_CLOCK_SKEW", "AccountAccess", "AzureProvider", "BlobObjects", "BlobTransfer", "SasExpiry",
           "issue_sas", "sas_fields", "sas_renewal"]
