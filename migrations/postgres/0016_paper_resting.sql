-- A paper limit order the reference price has not reached rests until it does or `good_til`
-- passes: `status` is filled (every order before this), resting or expired.
ALTER TABLE paper_orders ADD COLUMN status text NOT NULL DEFAULT 'filled'
    CHECK (status IN ('filled', 'resting', 'expired'));
ALTER TABLE paper_orders ADD COLUMN good_til timestamptz;
