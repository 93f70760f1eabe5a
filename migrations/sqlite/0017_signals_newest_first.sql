-- The trader's signal list, newest first (`GET /api/signals`): a signal's place is the sequence of
-- its first event in the account, the first entry of its story.
CREATE INDEX signals_newest_first ON signals (account_id, json_extract(events, '$[0].sequence'));
