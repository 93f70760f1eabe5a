-- The wallet an order was sent from (the address whose subaccount holds it, and that
-- subaccount's number): a restarted service looks the order up there, not on whatever wallet the
-- trader holds now, so a wallet changed after a lost answer cannot make it send the order again.
-- NULL for sends recorded before this column (they are looked up on the current wallet).
ALTER TABLE dydx_sends ADD COLUMN address text;
ALTER TABLE dydx_sends ADD COLUMN subaccount_number bigint;
