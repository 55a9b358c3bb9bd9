"""ORM models of the registry; `Base.metadata` is what the migrations must produce."""

from tenants.models.api_key import ApiKey
from tenants.models.audit_record import AuditChainHead, AuditRecord
from tenants.models.base import Base
from tenants.models.prompt_variant import PromptVariant
from tenants.models.public_prefix import PublicPrefix
from tenants.models.tenant import Tenant

__all__ = ["ApiKey", "AuditChainHead", "AuditRecord", "Base", "PromptVariant", "PublicPrefix",
           "Tenant"]
