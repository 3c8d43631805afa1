-- One row per video; the row is also the job (status queued/processing is the queue).
CREATE TABLE videos (
    id              TEXT PRIMARY KEY NOT NULL,   -- UUIDv7: sorts by creation time
    title           TEXT,
    filename        TEXT,
    status          TEXT NOT NULL CHECK (status IN ('queued', 'processing', 'ready', 'failed', 'canceled')),
    step            TEXT NOT NULL DEFAULT 'queued',
    progress        REAL NOT NULL DEFAULT 0,
    source_size     INTEGER NOT NULL,
    source_json     TEXT,
    renditions_json TEXT,
    error_code      TEXT,
    error_message   TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    lease_until     INTEGER,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);

CREATE INDEX videos_by_status ON videos (status, id);
