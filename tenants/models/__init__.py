"""ORM models of the registry; `Base.metadata` is what the migrations must produce."""

from tenants.models.api_key import ApiKey
from tenants.models.audit_archive import AuditAnchor
from tenants.models.audit_record import AuditChainHead, AuditRecord
from tenants.models.base import Base
from tenants.models.prompt_variant import PromptVariant
from tenants.models.public_prefix import PublicPrefix
from tenants.models.tenant import Tenant
from tenants.models.usage import UsagePolicy, UsageRollup  # also the audit_records indexes
from tenants.models.usage_budget import BudgetCounter, UsageBudget
from tenants.models.usage_rate import RateBucket

__all__ = ["ApiKey", "AuditAnchor", "AuditChainHead", "AuditRecord", "Base", "BudgetCounter",
           "PromptVariant", "PublicPrefix", "RateBucket", "Tenant", "UsageBudget", "UsagePolicy",
           "UsageRollup"]
