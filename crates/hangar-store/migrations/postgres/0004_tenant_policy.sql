-- What a tenant's agents may use (`TenantPolicy` as JSON): tool allow/deny lists and the
-- domains the egress proxy and WebFetch may reach. The PostgreSQL tree has the same file.
ALTER TABLE tenants ADD COLUMN policy TEXT NOT NULL DEFAULT '{}';
