-- Plugboard store, schema version 2: what the admin API changes (endpoints, plugins,
-- outbound event webhooks) and the indexes its conversation views read by.

-- Endpoint specs as JSON (`EndpointSpec`: secrets as written, literal or `env:NAME`).
-- A TOML endpoint seeds its row; `seed_hash` is the hash of the TOML spec it was last
-- seeded from, so an edited TOML wins once and admin changes win otherwise.
CREATE TABLE endpoints (
    id                TEXT    PRIMARY KEY,
    spec              TEXT    NOT NULL,
    state             TEXT    NOT NULL DEFAULT 'active', -- active | disconnected
    seed_hash         TEXT,
    last_handshake_ms INTEGER,
    verified          TEXT,   -- JSON: what the last `verify` learned about the number
    created_ms        INTEGER NOT NULL,
    updated_ms        INTEGER NOT NULL
);

-- Installed adapter components.
CREATE TABLE plugins (
    name             TEXT    PRIMARY KEY,
    version          TEXT    NOT NULL,
    wit_version      TEXT    NOT NULL,
    sha256           TEXT    NOT NULL,
    wasm             BLOB    NOT NULL,
    info             TEXT    NOT NULL, -- JSON channel-info, from the install-time smoke call
    max_memory_bytes INTEGER NOT NULL,
    call_timeout_ms  INTEGER NOT NULL,
    installed_ms     INTEGER NOT NULL
);

-- Outbound event webhooks: who wants which events of an endpoint.
CREATE TABLE hook_subscriptions (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    endpoint   TEXT    NOT NULL,
    url        TEXT    NOT NULL,
    secret     TEXT    NOT NULL,
    events     TEXT    NOT NULL, -- JSON array of event names
    created_ms INTEGER NOT NULL
);
CREATE INDEX hook_subscriptions_endpoint ON hook_subscriptions (endpoint);

-- One row per (event, subscription), written in the transaction that produced the event.
CREATE TABLE hook_deliveries (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    subscription    INTEGER NOT NULL,
    event           TEXT    NOT NULL,
    payload         TEXT    NOT NULL,
    state           TEXT    NOT NULL DEFAULT 'pending', -- pending | delivered | dead
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    created_ms      INTEGER NOT NULL,
    done_ms         INTEGER
);
CREATE INDEX hook_deliveries_state ON hook_deliveries (state, next_attempt_ms);

-- Conversation views: a conversation's events and outbox rows in order.
CREATE INDEX events_conversation ON events (endpoint, conversation, id);
CREATE INDEX outbox_conversation ON outbox (endpoint, conversation, id);
CREATE INDEX windows_recent ON windows (endpoint, last_inbound_ms);
