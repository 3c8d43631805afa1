-- The queue's fair order looks up when each waiting owner was last served.
CREATE INDEX videos_by_owner_started ON videos (owner, started_at);
