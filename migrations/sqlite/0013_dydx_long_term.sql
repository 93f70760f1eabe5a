-- A long-term (resting) dYdX order's last moment is a time, not a block: NULL for short-term
-- orders, whose last block is good_til_block.
ALTER TABLE dydx_sends ADD COLUMN good_til_time text;
