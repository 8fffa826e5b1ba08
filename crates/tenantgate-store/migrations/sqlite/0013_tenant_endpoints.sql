-- A tenant's own provider endpoints (issue 17). The endpoint itself (base URL, API key,
-- api_version) is a tenant secret, sealed in tenant_secrets under `provider_endpoint/<provider>`;
-- the request path reads only that sealed copy. This table is what an operator may see (never
-- the key) and the revision gateways key their opened endpoints by.
CREATE TABLE tenant_endpoints (
    tenant_id      TEXT NOT NULL,
    provider       TEXT NOT NULL,      -- a configured provider's name
    base_url       TEXT NOT NULL,
    api_version    TEXT,               -- Azure only
    revision       INTEGER NOT NULL,   -- control-plane revision of the last change
    updated_at_ms  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, provider)
) STRICT;
