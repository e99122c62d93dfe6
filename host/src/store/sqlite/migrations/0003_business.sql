-- Plugboard store, schema version 3: WhatsApp Business accounts and their numbers and
-- templates, outbound campaigns, opt-outs, and the messaging-limit ledger and the
-- monthly reply quota. (Webhooks for a number no endpoint owns are `events` of kind
-- `unowned`.)

-- A WhatsApp Business Account (WABA) found with a system-user token. `token` is the
-- literal secret (never listed); `portfolio` is the owning business portfolio, which
-- Meta's messaging limit is counted per.
CREATE TABLE wa_accounts (
    id                 TEXT    PRIMARY KEY,
    name               TEXT,
    portfolio          TEXT,
    graph_api_base     TEXT    NOT NULL,
    graph_api_version  TEXT    NOT NULL,
    token              TEXT    NOT NULL,
    subscribed         INTEGER,          -- NULL: unknown; 0 / 1: our app gets its webhooks
    refreshed_ms       INTEGER NOT NULL,
    created_ms         INTEGER NOT NULL
);

-- The phone numbers of an account, as the last setup found them.
CREATE TABLE wa_numbers (
    id                   TEXT    PRIMARY KEY,  -- phone_number_id
    account              TEXT    NOT NULL REFERENCES wa_accounts (id) ON DELETE CASCADE,
    display_phone_number TEXT,
    verified_name        TEXT,
    quality_rating       TEXT,
    throughput_level     TEXT,
    messaging_limit_tier TEXT,
    updated_ms           INTEGER NOT NULL
);
CREATE INDEX wa_numbers_account ON wa_numbers (account);

-- Message templates of an account (one row per name and language).
CREATE TABLE wa_templates (
    account     TEXT    NOT NULL REFERENCES wa_accounts (id) ON DELETE CASCADE,
    name        TEXT    NOT NULL,
    language    TEXT    NOT NULL,
    template_id TEXT,
    category    TEXT,
    status      TEXT    NOT NULL,
    quality     TEXT,
    components  TEXT    NOT NULL,  -- JSON array, as Meta returns it
    updated_ms  INTEGER NOT NULL,
    PRIMARY KEY (account, name, language)
);
CREATE INDEX wa_templates_id ON wa_templates (template_id);

-- A campaign: one template sent to many recipients from one endpoint, from `start_ms`.
CREATE TABLE campaigns (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    endpoint    TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    template    TEXT    NOT NULL,
    language    TEXT    NOT NULL,
    start_ms    INTEGER NOT NULL,
    state       TEXT    NOT NULL,  -- scheduled | running | paused | completed | cancelled
    waiting     TEXT,              -- why a running campaign sends nothing now
    created_ms  INTEGER NOT NULL,
    updated_ms  INTEGER NOT NULL,
    finished_ms INTEGER
);
CREATE INDEX campaigns_endpoint ON campaigns (endpoint, id);
CREATE INDEX campaigns_state ON campaigns (state, id);

-- One recipient of a campaign. A recipient is claimed (state `sending`) in the same
-- transaction that inserts its outbox row, and never again: that is the no-duplicate rule.
-- `state` holds the outbox row's final state once the row is pruned (`outbox_id` NULL).
CREATE TABLE campaign_recipients (
    campaign   INTEGER NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    seq        INTEGER NOT NULL,
    recipient  TEXT    NOT NULL,  -- the conversation key (the user's number)
    user_json  TEXT    NOT NULL,  -- JSON User
    output     TEXT    NOT NULL,  -- JSON BotOutput: the template with this recipient's values
    state      TEXT    NOT NULL DEFAULT 'queued',
    reason     TEXT,
    outbox_id  INTEGER,
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (campaign, recipient)
);
CREATE INDEX campaign_recipients_queue ON campaign_recipients (campaign, state, seq);
CREATE INDEX campaign_recipients_outbox ON campaign_recipients (outbox_id);
CREATE INDEX campaign_recipients_user ON campaign_recipients (recipient, campaign);

-- Users who asked for no more business-initiated messages (STOP) or whom Meta reported
-- with 131050 (stopped marketing messages), per endpoint.
CREATE TABLE opt_outs (
    endpoint TEXT    NOT NULL,
    user     TEXT    NOT NULL,
    reason   TEXT    NOT NULL,
    at_ms    INTEGER NOT NULL,
    PRIMARY KEY (endpoint, user)
);

-- The messaging-limit ledger: when each user last got a business-initiated template, per
-- portfolio (Meta counts unique users per moving 24 hours).
CREATE TABLE business_initiated (
    portfolio TEXT    NOT NULL,
    user      TEXT    NOT NULL,
    at_ms     INTEGER NOT NULL,
    PRIMARY KEY (portfolio, user)
);
CREATE INDEX business_initiated_at ON business_initiated (portfolio, at_ms);

-- Bot replies per endpoint and calendar month (UTC), for the optional monthly quota; and
-- the users who already got the over-quota message this month.
CREATE TABLE reply_quota (
    endpoint TEXT    NOT NULL,
    month    TEXT    NOT NULL,  -- YYYY-MM
    replies  INTEGER NOT NULL,
    PRIMARY KEY (endpoint, month)
);
CREATE TABLE quota_told (
    endpoint TEXT NOT NULL,
    month    TEXT NOT NULL,
    user     TEXT NOT NULL,
    PRIMARY KEY (endpoint, month, user)
);
