-- How many times each paper order was sent. The paper book still trades a client id once, but
-- counts every send, so a test can show that every approval reached the venue exactly once: no
-- real venue deduplicates for the saga.
ALTER TABLE paper_orders ADD COLUMN placements BIGINT NOT NULL DEFAULT 1;
