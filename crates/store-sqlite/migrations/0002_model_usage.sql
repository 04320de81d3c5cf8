-- Model usage per tenant, end user and UTC day: tokens and cost, for accounting and for the
-- daily budgets. One row per (tenant, day, end user), added to after each model turn.
CREATE TABLE model_usage_daily (
    tenant_id     BLOB NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    -- Days since 1970-01-01 (UTC).
    day           INTEGER NOT NULL,
    end_user_id   BLOB NOT NULL REFERENCES end_users(id) ON DELETE CASCADE,
    calls         INTEGER NOT NULL DEFAULT 0,
    input_tokens  INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    -- US dollars times 1,000,000.
    cost_micros   INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, day, end_user_id)
) STRICT;
CREATE INDEX model_usage_daily_end_user ON model_usage_daily(end_user_id);
