-- The resting-order watcher asks which accounts have a limit order resting on a venue's book.
CREATE INDEX signals_resting ON signals (account_id) WHERE status = 'resting';
