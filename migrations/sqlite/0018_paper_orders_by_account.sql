-- The paper venue's positions (reconciliation, every five minutes for every account) read one
-- account's orders: without this index each read was the whole book, and the soak's
-- reconciliation grew with every order any account had placed.
CREATE INDEX paper_orders_by_account ON paper_orders (account_id, placed_at, client_order_id);
