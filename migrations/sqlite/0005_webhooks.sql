-- Webhook endpoints and their delivery state. Each endpoint reads the history (the outbox) by
-- its own durable cursor, which moves only once an event was delivered (2xx), skipped (a type it
-- did not subscribe to) or dead-lettered. One delivery lease per endpoint (with a fencing
-- token) keeps two processes from sending its events at the same time.
CREATE TABLE webhooks (
    id              TEXT PRIMARY KEY NOT NULL,   -- UUIDv7
    owner           TEXT NOT NULL DEFAULT '',    -- who created it ('' with auth off)
    scope           TEXT,                        -- whose videos' events: NULL every video's
    url             TEXT NOT NULL,
    events          TEXT NOT NULL,               -- JSON array of event types
    description     TEXT NOT NULL DEFAULT '',
    secret          TEXT NOT NULL,               -- whsec_<base64>, needed to sign
    created_at      INTEGER NOT NULL,            -- ms since the epoch
    cursor_seq      INTEGER NOT NULL,            -- the cursor: history seq handled up to
    attempt_seq     INTEGER NOT NULL DEFAULT 0,  -- the event the failed attempts are of
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL DEFAULT 0,  -- ms: back-off or breaker cool-down
    failures        INTEGER NOT NULL DEFAULT 0,  -- consecutive failed calls
    circuit         TEXT NOT NULL DEFAULT 'closed' CHECK (circuit IN ('closed', 'open', 'half_open')),
    last_attempt_at INTEGER,
    last_success_at INTEGER,
    last_status     INTEGER,
    last_error      TEXT,
    lease_holder    TEXT,
    lease_until     INTEGER NOT NULL DEFAULT 0,
    lease_token     INTEGER NOT NULL DEFAULT 0   -- fencing token: grows with every claim
);
CREATE INDEX webhooks_by_owner ON webhooks (owner, id);

-- Events an endpoint gave up on after its last attempt, with the body that was sent.
CREATE TABLE webhook_dead_letters (
    webhook_id TEXT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    seq        INTEGER NOT NULL,
    event_type TEXT NOT NULL,
    payload    TEXT NOT NULL,
    attempts   INTEGER NOT NULL,
    last_error TEXT NOT NULL,
    failed_at  INTEGER NOT NULL,
    redeliver  INTEGER NOT NULL DEFAULT 0,       -- 1: queued for redelivery
    PRIMARY KEY (webhook_id, seq)
);
