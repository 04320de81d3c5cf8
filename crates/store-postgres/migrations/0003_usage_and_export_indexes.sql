-- Model usage per tenant, end user and UTC day: tokens and cost, for accounting and for the
-- daily budgets. One row per (tenant, day, end user), added to after each model turn.
CREATE TABLE model_usage_daily (
    tenant_id     UUID NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    -- Days since 1970-01-01 (UTC).
    day           BIGINT NOT NULL,
    end_user_id   UUID NOT NULL REFERENCES end_users(id) ON DELETE CASCADE,
    calls         BIGINT NOT NULL DEFAULT 0,
    input_tokens  BIGINT NOT NULL DEFAULT 0,
    output_tokens BIGINT NOT NULL DEFAULT 0,
    -- US dollars times 1,000,000.
    cost_micros   BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, day, end_user_id)
);
CREATE INDEX model_usage_daily_end_user ON model_usage_daily(end_user_id);

ALTER TABLE model_usage_daily ENABLE ROW LEVEL SECURITY;
ALTER TABLE model_usage_daily FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON model_usage_daily
    USING (tenant_id = concierge_tenant()) WITH CHECK (tenant_id = concierge_tenant());

-- Backups read tenant tables one tenant at a time: these make that an index range instead
-- of a scan of every tenant's rows. (Messages are read through conversations_tenant.)
CREATE INDEX end_users_tenant ON end_users(tenant_id, id);
CREATE INDEX consent_events_tenant ON consent_events(tenant_id, id);
