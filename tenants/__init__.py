"""Durable state: tenants, API keys, prompt variants, quotas and the audit trail."""
