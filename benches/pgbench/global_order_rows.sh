#!/usr/bin/env bash
# What the global order costs per event row (issue 13): 0010's row trigger against 0021's statement
# trigger and column default. A scratch database gets the real `events` table (0001, 0007, 0010),
# and a copy of it under each variant; ROWS events (in statements of BATCH rows, as the group
# committer writes them) are inserted into each, ROUNDS times, alternating, and every time printed.
#   benches/pgbench/global_order_rows.sh [ROWS=200000] [BATCH=300] [ROUNDS=3]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
rows="${1:-200000}"
batch="${2:-300}"
rounds="${3:-3}"
source "$here/scratch.sh"
scratch_database ledgerhook_rows
migrate 0001_ledger 0007_global_order 0010_global_order_shared
psql -q "$url" >/dev/null <<SQL
-- 0010's row trigger, as it was before 0021.
CREATE TABLE by_row (LIKE events INCLUDING DEFAULTS INCLUDING INDEXES);
CREATE SEQUENCE by_row_seq;
CREATE FUNCTION by_row_position() RETURNS trigger LANGUAGE plpgsql AS \$\$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(
        hashtextextended('ledgerhook global order ' || TG_RELID::text, 0));
    NEW.global_seq := nextval(quote_ident(TG_TABLE_SCHEMA) || '.by_row_seq');
    RETURN NEW;
END;
\$\$;
CREATE TRIGGER by_row_position BEFORE INSERT ON by_row
    FOR EACH ROW EXECUTE FUNCTION by_row_position();
-- 0021's statement trigger and column default.
CREATE TABLE by_statement (LIKE events INCLUDING DEFAULTS INCLUDING INDEXES);
CREATE SEQUENCE by_statement_seq;
ALTER TABLE by_statement ALTER COLUMN global_seq SET DEFAULT nextval('by_statement_seq');
CREATE FUNCTION by_statement_lock() RETURNS trigger LANGUAGE plpgsql AS \$\$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(
        hashtextextended('ledgerhook global order ' || TG_RELID::text, 0));
    RETURN NULL;
END;
\$\$;
CREATE TRIGGER by_statement_lock BEFORE INSERT ON by_statement
    FOR EACH STATEMENT EXECUTE FUNCTION by_statement_lock();
-- About the size of a real event: 200 accounts, a few hundred bytes of JSON.
CREATE TABLE source AS
SELECT n, 'acct-' || md5((n % 200)::text) AS account, n / 200 + 1 AS sequence,
       '{"OrderFilled":{"fill":"' || repeat(md5(n::text), 8) || '"}}' AS payload
  FROM generate_series(1, $rows) AS n;
ALTER TABLE source ADD PRIMARY KEY (n);
CREATE FUNCTION fill(target text, batch int) RETURNS void LANGUAGE plpgsql AS \$\$
DECLARE
    first bigint := 1;
    total bigint := (SELECT count(*) FROM source);
BEGIN
    WHILE first <= total LOOP
        EXECUTE format('INSERT INTO %I (aggregate_type, aggregate_id, sequence, event_type,
                            event_version, payload, metadata)
                        SELECT ''TradingAccount'', account, sequence, ''OrderFilled'', ''1.1'',
                               payload::json, ''{"source":"bench"}''::json
                          FROM source WHERE n >= \$1 AND n < \$2', target)
            USING first, first + batch;
        first := first + batch;
    END LOOP;
END;
\$\$;
SQL
for round in $(seq "$rounds"); do
    for table in by_row by_statement; do
        psql -q "$url" -c "TRUNCATE $table" -c "CHECKPOINT" >/dev/null
        start=$(date +%s%N)
        psql -q "$url" -c "SELECT fill('$table', $batch)" >/dev/null
        end=$(date +%s%N)
        echo "round $round $table: $(( (end - start) / 1000000 )) ms for $rows rows," \
             "$(( (end - start) / rows )) ns a row"
    done
done
