"""Durable state: tenants, API keys, prompt variants, quotas and the audit trail."""

from tenants.audit import AuditStore
from tenants.authenticator import Authenticator
from tenants.database import Database
from tenants.key_service import KeyService
from tenants.prompt_service import PromptService
from tenants.public_prefix_service import PublicPrefixService
from tenants.tenant_service import TenantService

__all__ = [
    "AuditStore",
    "Authenticator",
    "Database",
    "KeyService",
    "PromptService",
    "PublicPrefixService",
    "TenantService",
]
