-- reel on PostgreSQL: the same tables as on SQLite (see migrations/sqlite), in one step.
CREATE TABLE videos (
    id              TEXT PRIMARY KEY NOT NULL,   -- UUIDv7: sorts by creation time
    owner           TEXT NOT NULL DEFAULT '',
    title           TEXT,
    filename        TEXT,
    visibility      TEXT NOT NULL DEFAULT 'public',
    status          TEXT NOT NULL CHECK (status IN ('queued', 'processing', 'ready', 'failed', 'canceled')),
    step            TEXT NOT NULL DEFAULT 'queued',
    progress        DOUBLE PRECISION NOT NULL DEFAULT 0,
    source_size     BIGINT NOT NULL,
    source_json     TEXT,
    renditions_json TEXT,
    metadata_json   TEXT,
    properties_json TEXT,
    error_code      TEXT,
    error_message   TEXT,
    attempts        BIGINT NOT NULL DEFAULT 0,
    interruptions   BIGINT NOT NULL DEFAULT 0,
    lease_token     BIGINT NOT NULL DEFAULT 0,   -- fencing token: grows with every claim
    lease_until     BIGINT,
    worker          TEXT,
    run_after       BIGINT NOT NULL DEFAULT 0,
    started_at      BIGINT,
    playable_at     BIGINT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE INDEX videos_by_status ON videos (status, id);
CREATE INDEX videos_by_owner ON videos (owner, status, id);

-- seq is assigned under a transaction-scoped advisory lock (see src/store), so seq order is
-- commit order and a change-feed reader never skips an event.
CREATE TABLE history (
    seq      BIGSERIAL PRIMARY KEY,
    video_id TEXT NOT NULL,
    owner    TEXT NOT NULL DEFAULT '',
    kind     TEXT NOT NULL,
    at       BIGINT NOT NULL,
    data     TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX history_by_video ON history (video_id, seq);
CREATE INDEX history_by_owner ON history (owner, seq);
CREATE INDEX history_by_time ON history (at);

-- Global ids for events crossing machines on NOTIFY (SSE `id:`), so Last-Event-ID taken from
-- one API node resumes on another.
CREATE SEQUENCE event_ids;
