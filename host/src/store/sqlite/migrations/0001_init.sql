-- Plugboard store, schema version 1. Times are milliseconds since the Unix epoch.
-- Ids are AUTOINCREMENT so a pruned or replaced row never hands its id to a new one:
-- cursors (`after_id`) and fired-timer ids held in memory stay unambiguous.

-- Raw webhook bodies, appended before Meta gets its 200.
CREATE TABLE inbox (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    endpoint    TEXT    NOT NULL,
    received_ms INTEGER NOT NULL,
    body        BLOB    NOT NULL,
    state       TEXT    NOT NULL DEFAULT 'pending', -- pending | done | dead
    done_ms     INTEGER
);
CREATE INDEX inbox_state ON inbox (state, id);

-- Decoded events; the unique key turns Meta's redeliveries into no-ops.
CREATE TABLE events (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    endpoint     TEXT    NOT NULL,
    dedupe_key   TEXT    NOT NULL,
    conversation TEXT    NOT NULL,
    kind         TEXT    NOT NULL,
    body         TEXT    NOT NULL,
    created_ms   INTEGER NOT NULL,
    state        TEXT    NOT NULL DEFAULT 'pending', -- pending | done
    done_ms      INTEGER,
    UNIQUE (endpoint, dedupe_key)
);
CREATE INDEX events_state ON events (state, id);

CREATE TABLE sessions (
    endpoint     TEXT    NOT NULL,
    conversation TEXT    NOT NULL,
    record       TEXT    NOT NULL,
    updated_ms   INTEGER NOT NULL,
    PRIMARY KEY (endpoint, conversation)
);

-- The last inbound message per conversation (the 24-hour customer service window).
CREATE TABLE windows (
    endpoint        TEXT    NOT NULL,
    conversation    TEXT    NOT NULL,
    last_inbound_ms INTEGER NOT NULL,
    PRIMARY KEY (endpoint, conversation)
);

CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    endpoint        TEXT    NOT NULL,
    conversation    TEXT    NOT NULL,
    recipient       TEXT    NOT NULL,
    business        TEXT    NOT NULL,
    output          TEXT    NOT NULL,
    free_form       INTEGER NOT NULL,
    state           TEXT    NOT NULL DEFAULT 'pending', -- OutboxState::as_str
    attempts        INTEGER NOT NULL DEFAULT 0,
    parts_sent      INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    source_event    INTEGER,
    created_ms      INTEGER NOT NULL,
    updated_ms      INTEGER NOT NULL
);
CREATE INDEX outbox_state ON outbox (state, id);

-- The channel's message ids (wamid) of each outbox row; a row rendered into several
-- requests has several.
CREATE TABLE sent_messages (
    endpoint   TEXT    NOT NULL,
    message_id TEXT    NOT NULL,
    outbox_id  INTEGER NOT NULL,
    PRIMARY KEY (endpoint, message_id)
);
CREATE INDEX sent_messages_outbox ON sent_messages (outbox_id);

-- The furthest delivery status seen per message id, kept even before its outbox row is
-- known (a status can beat the send's own response).
CREATE TABLE statuses (
    endpoint   TEXT    NOT NULL,
    message_id TEXT    NOT NULL,
    status     TEXT    NOT NULL,
    rank       INTEGER NOT NULL,
    at_ms      INTEGER,
    errors     TEXT,
    PRIMARY KEY (endpoint, message_id)
);

CREATE TABLE timers (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    endpoint     TEXT    NOT NULL,
    conversation TEXT    NOT NULL,
    kind         TEXT    NOT NULL,
    due_ms       INTEGER NOT NULL,
    UNIQUE (endpoint, conversation, kind)
);
CREATE INDEX timers_due ON timers (due_ms);

CREATE TABLE dead_letters (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    endpoint    TEXT    NOT NULL,
    source      TEXT    NOT NULL, -- inbox | outbox
    source_id   INTEGER NOT NULL,
    reason      TEXT    NOT NULL,
    detail      TEXT    NOT NULL,
    created_ms  INTEGER NOT NULL,
    replayed_ms INTEGER
);
CREATE INDEX dead_letters_source ON dead_letters (source, source_id);
