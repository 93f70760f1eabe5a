-- Where each user's signals trade: the paper exchange (the default) or dYdX v4.
ALTER TABLE users ADD COLUMN venue text NOT NULL DEFAULT 'paper' CHECK (venue IN ('paper', 'dydx'));
