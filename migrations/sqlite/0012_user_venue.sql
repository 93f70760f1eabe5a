-- Where each user's signals trade: the paper exchange (the default) or dYdX v4.
ALTER TABLE users ADD COLUMN venue text NOT NULL DEFAULT 'paper' CHECK (venue IN ('paper', 'dydx'));

-- Orders the dYdX adapter sent (or was about to send) and the last block each can execute in,
-- written before the order leaves: after a crash the adapter waits out an order whose fate is
-- still open instead of sending it again.
CREATE TABLE dydx_sends
(
    client_order_id text PRIMARY KEY,
    account_id      text    NOT NULL,
    market          text    NOT NULL,
    side            text    NOT NULL,
    good_til_block  integer NOT NULL,
    sent_at         text    NOT NULL
);
