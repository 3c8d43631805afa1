-- Resumable (tus) uploads in progress. The partial bytes live in <media>/uploads/<id>;
-- received_bytes only ever counts bytes already fdatasynced there, so after a crash the
-- offset HEAD reports is always on disk.
CREATE TABLE uploads (
    id              TEXT PRIMARY KEY NOT NULL,   -- UUIDv7, made by reel
    owner           TEXT NOT NULL DEFAULT '',
    total_bytes     INTEGER NOT NULL,            -- Upload-Length
    received_bytes  INTEGER NOT NULL DEFAULT 0,  -- Upload-Offset (durable)
    tus_metadata    TEXT,                        -- Upload-Metadata as sent, echoed by HEAD
    title           TEXT,
    filename        TEXT,
    visibility      TEXT NOT NULL DEFAULT 'public',
    metadata_json   TEXT,
    user_agent      TEXT,
    container       TEXT,                        -- sniffed from the first bytes (media type)
    video_id        TEXT,                        -- set once the upload became a video
    lock_token      TEXT,                        -- the request writing it, if any
    lock_node       TEXT,                        -- the process of that request
    lock_until      INTEGER,                     -- ms since the epoch; renewed while bytes flow
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL             -- Upload-Expires; moved on by every write
);
CREATE INDEX uploads_by_expiry ON uploads (expires_at);
