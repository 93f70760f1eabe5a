-- Issue 10: a position in the global order is one number on both stores (PostgreSQL's transaction
-- id went with the server-wide horizon); SQLite always stored 0 here.
ALTER TABLE checkpoints DROP COLUMN tx_id;
