"""Azure Blob: `AzureProvider` and its parts, one module per concern (options, sdk, account, containers,
credentials, destroy, verify, objects). Imported only when ``provision azure`` (or a command on an Azure
environment) runs: the SDKs themselves are imported inside the functions that use them."""

from provision.providers.azure.objects import BlobObjects, BlobTransfer
from provision.providers.azure.provider import AzureProvider
from provision.providers.azure.sas import SAS_CLOCK_SKEW, SasExpiry, issue_sas, sas_fields, sas_renewal
from provision.providers.azure.sdk import AccountAccess

__all__ = ["SAS_CLOCK_SKEW", "AccountAccess", "AzureProvider", "BlobObjects", "BlobTransfer", "SasExpiry",
           "issue_sas", "sas_fields", "sas_renewal"]
