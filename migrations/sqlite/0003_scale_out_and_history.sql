-- Owners, visibility and client metadata on videos; fencing tokens and interruption counts on
-- jobs; the history every state change appends (the change feed reads it by seq).
ALTER TABLE videos ADD COLUMN owner TEXT NOT NULL DEFAULT '';
ALTER TABLE videos ADD COLUMN visibility TEXT NOT NULL DEFAULT 'public';
ALTER TABLE videos ADD COLUMN metadata_json TEXT;
ALTER TABLE videos ADD COLUMN properties_json TEXT;
ALTER TABLE videos ADD COLUMN lease_token INTEGER NOT NULL DEFAULT 0;
ALTER TABLE videos ADD COLUMN worker TEXT;
ALTER TABLE videos ADD COLUMN interruptions INTEGER NOT NULL DEFAULT 0;
ALTER TABLE videos ADD COLUMN started_at INTEGER;
ALTER TABLE videos ADD COLUMN playable_at INTEGER;

CREATE INDEX videos_by_owner ON videos (owner, status, id);

CREATE TABLE history (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,   -- commit order: one writer at a time
    video_id TEXT NOT NULL,                       -- no foreign key: history outlives the video
    owner    TEXT NOT NULL DEFAULT '',
    kind     TEXT NOT NULL,
    at       INTEGER NOT NULL,                    -- ms since the epoch
    data     TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX history_by_video ON history (video_id, seq);
CREATE INDEX history_by_owner ON history (owner, seq);
CREATE INDEX history_by_time ON history (at);
