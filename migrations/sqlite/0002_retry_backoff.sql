-- A job put back after a passing failure waits until run_after (ms since the epoch).
ALTER TABLE videos ADD COLUMN run_after INTEGER NOT NULL DEFAULT 0;
