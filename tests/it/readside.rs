//! The read side on both stores: the live projections always equal a from-scratch fold of the log
//! (after signals stream in, after kill -9 at random points, with two runners at once), and the
//! trader's endpoints show each trader only their own rows.

use std::str::FromStr;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use cqrs_es::persist::SerializedEvent;
use rand::Rng;
use rust_decimal::Decimal;
use serde_json::Value;
use tokio::task::JoinSet;

use aggregates::{
    upcasters, AccountEvent, ClientOrderId, Market, Quantity, RiskLimits, Side, SignalId,
    TradingAccount, UsdAmount,
};
use cqrs_es::Aggregate;
use ledgerhook::catchup::status::lag_after;
use ledgerhook::ledger::{decode, encode, EventContext};
use ledgerhook::readside::{Runner, Step};
use ledgerhook::store::{LogPosition, Store, TableSet};
use projections::{Envelope, Projection, ReadModels};

use crate::on_both_stores;
use crate::support::alerts::Alert;
use crate::support::eventually;
use crate::support::log::whole_log;
use crate::support::seed::seeded_rng;
use crate::support::service::{cli, cli_output, create_user, Options, Service, User};
use crate::support::stores::{Backend, TestStore};

/// Every account event of the log, folded from scratch, and the position of the log's last event.
async fn fold_of_the_log(store: &Store) -> (LogPosition, ReadModels) {
    let upcasters = upcasters();
    let log = whole_log(store, 1000).await;
    let head = log
        .last()
        .map_or_else(LogPosition::default, |last| last.position);
    let envelopes: Vec<Envelope> = log
        .into_iter()
        .filter(|logged| logged.event.aggregate_type == TradingAccount::TYPE)
        .map(|logged| {
            let recorded = decode(&logged.event, &upcasters).expect("every event decodes");
            Envelope {
                account_id: recorded.account_id,
                sequence: recorded.sequence,
                recorded_at: recorded.recorded_at,
                event: recorded.event,
            }
        })
        .collect();
    (head, ReadModels::fold(&envelopes))
}

/// Waits until every live projection has applied the whole log (which may still be growing:
/// notifications follow fills), then checks each equals a fold of it.
async fn assert_live_equals_the_fold(store: &Store) -> ReadModels {
    let (expected, live) = eventually("the projections to reach the log's head", || async {
        let (head, expected) = fold_of_the_log(store).await;
        let mut live = Vec::new();
        for projection in Projection::ALL {
            let (at, rows) = store
                .read_models()
                .rows(TableSet::Live, projection)
                .await
                .expect("the live rows read");
            if at != head {
                return None;
            }
            live.push((projection, rows));
        }
        Some((expected, live))
    })
    .await;
    for (projection, rows) in live {
        assert_eq!(
            rows,
            expected.only(projection),
            "{} differs from a fold of the log",
            projection.name()
        );
    }
    expected
}

/// `ledgerhook projections rebuild` agrees (it exits non-zero when the copies differ).
async fn assert_rebuild_agrees(url: &str) {
    let out = cli(url, &["projections", "rebuild"]).await;
    assert_eq!(out.matches("equals the live rows").count(), 4, "{out}");
}

/// `audit verify`'s report once the trail holds every event of a log that has stopped growing.
async fn audit_chains_every_event(url: &str, store: &Store) -> Value {
    eventually("the audit trail to chain every event", || async {
        // Read the log first: the trail can only have caught up with what is already there.
        let events = crate::audit::logged_events(store).await.len();
        let out = cli(url, &["audit", "verify", "--json"]).await;
        let report: Value = serde_json::from_str(out.trim()).ok()?;
        let settled = crate::audit::logged_events(store).await.len() == events;
        (settled && report["rows"].as_u64() == Some(events as u64)).then_some(report)
    })
    .await
}

async fn send_signals(service: &Service, user: &User, prefix: &str, n: usize) {
    for i in 0..n {
        let side = if i % 3 == 2 { "sell" } else { "buy" };
        let (status, body) = service
            .post_signal(
                &user.webhook_token,
                &Alert::new(format!("{prefix}-{i}"))
                    .side(side)
                    .size("0.01")
                    .json(),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
}

async fn projections_equal_a_rebuild_after_signals_stream_in(backend: Backend) {
    let test = TestStore::new(backend).await;
    let alice = create_user(&test.url, "alice").await;
    let bob = create_user(&test.url, "bob").await;
    let service = Service::start(&test.url, Options::default()).await;
    tokio::join!(
        send_signals(&service, &alice, "a", 12),
        send_signals(&service, &bob, "b", 9)
    );
    // A resent alert: counted on its original signal.
    service
        .post_signal(&alice.webhook_token, &Alert::new("a-0").size("0.01").json())
        .await;
    let store = test.open().await;
    eventually("every signal to be notified", || async {
        let (_, models) = fold_of_the_log(&store).await;
        let done = models
            .signals
            .values()
            .filter(|s| s.status == "notified")
            .count();
        (done == 21).then_some(())
    })
    .await;
    let models = assert_live_equals_the_fold(&store).await;
    assert_eq!(models.trades.len(), 21);
    assert!(models.signals.values().any(|s| s.duplicates == 1));
    assert_rebuild_agrees(&test.url).await;
    service.stop().await;
}
on_both_stores!(projections_equal_a_rebuild_after_signals_stream_in);

/// kill -9 at random moments while several accounts stream signals in; after the last restart
/// every projection equals a from-scratch fold and the audit chain verifies with every event in it:
/// nothing was applied twice or lost.
async fn killed_at_random_points_the_read_side_and_audit_trail_hold_every_event_once(
    backend: Backend,
) {
    let test = TestStore::new(backend).await;
    let mut users = Vec::new();
    for i in 0..3 {
        users.push(create_user(&test.url, &format!("k{i}")).await);
    }
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("an HTTP client");
    let mut rng = seeded_rng(&format!("read side killed at random points on {backend:?}"));
    for round in 0..4 {
        let service = Service::start(&test.url, Options::default()).await;
        let mut senders = JoinSet::new();
        for user in &users {
            let (http, base, token) = (
                http.clone(),
                service.base_url.clone(),
                user.webhook_token.clone(),
            );
            senders.spawn(async move {
                for i in 0..40 {
                    let side = if i % 4 == 3 { "sell" } else { "buy" };
                    // The service may die under this request: errors are expected here.
                    let _ = http
                        .post(format!("{base}/api/webhook?token={token}"))
                        .header("content-type", "text/plain")
                        .body(
                            Alert::new(format!("r{round}-{i}"))
                                .side(side)
                                .size("0.01")
                                .json(),
                        )
                        .send()
                        .await;
                }
            });
        }
        let pause = rng.random_range(50..600);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        service.kill_9().await;
        senders.shutdown().await;
    }
    // The last instance runs to the end.
    let service = Service::start(&test.url, Options::default()).await;
    let store = test.open().await;
    eventually("every accepted signal to be concluded", || async {
        let (_, models) = fold_of_the_log(&store).await;
        let open = models
            .signals
            .values()
            .filter(|s| matches!(s.status.as_str(), "received" | "accepted" | "submitted"))
            .count();
        (open == 0).then_some(())
    })
    .await;
    let models = assert_live_equals_the_fold(&store).await;
    assert!(!models.trades.is_empty());
    assert_rebuild_agrees(&test.url).await;
    // The audit trail went through the same kills: it chains every event once and verifies.
    let report = audit_chains_every_event(&test.url, &store).await;
    assert_eq!(report["first_mismatch"], Value::Null, "{report}");
    service.stop().await;
}
on_both_stores!(killed_at_random_points_the_read_side_and_audit_trail_hold_every_event_once);

fn at(minute: i64) -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 23, 0, 0)
        .single()
        .unwrap_or_default()
        + chrono::Duration::minutes(minute)
}

/// A synthetic history: accounts trading back and forth across midnight, appended in batches that
/// interleave the accounts.
fn history(accounts: usize, fills: usize) -> Vec<Vec<SerializedEvent>> {
    let market = Market::parse("ETH-USD").expect("a market");
    let context = EventContext::new("test", at(0));
    let mut batches = Vec::new();
    let mut states: Vec<(TradingAccount, usize)> = Vec::new();
    for account in 0..accounts {
        let opened = AccountEvent::AccountOpened {
            display_name: format!("t{account}"),
            limits: RiskLimits::default(),
            opened_at: at(0),
        };
        batches.push(
            encode(
                &format!("acct-{account}"),
                1,
                std::slice::from_ref(&opened),
                &context,
            )
            .expect("encodes"),
        );
        let mut state = TradingAccount::default();
        state.apply(opened);
        states.push((state, 2));
    }
    for fill in 0..fills {
        for (account, (state, next)) in states.iter_mut().enumerate() {
            let signal = SignalId(format!("s-{account}-{fill}"));
            let side = if (fill + account) % 3 == 2 {
                Side::Sell
            } else {
                Side::Buy
            };
            let size =
                Quantity::new(Decimal::from_str("0.5").expect("a decimal")).expect("positive");
            let price = Decimal::from(3000 + (fill % 17) as i64);
            let mut events = vec![AccountEvent::OrderFilled {
                signal_id: signal.clone(),
                client_order_id: ClientOrderId::for_signal(&signal),
                exchange_order_id: format!("x-{account}-{fill}"),
                market: market.clone(),
                side,
                price,
                size,
                fee_usd: UsdAmount::new(Decimal::new(15, 2)),
                filled_at: at(i64::try_from(fill).unwrap_or(0) * 7),
            }];
            let position = state.positions.get(&market).cloned().unwrap_or_default();
            events.extend(
                position
                    .events_for_fill(&signal, &market, side, size, price)
                    .expect("an ordinary fill"),
            );
            for event in &events {
                state.apply(event.clone());
            }
            batches.push(
                encode(&format!("acct-{account}"), *next, &events, &context).expect("encodes"),
            );
            *next += events.len();
        }
    }
    batches
}

/// Appends the history; returns how many events it holds.
async fn append_history(store: &Store, accounts: usize, fills: usize) -> i64 {
    let mut appended = 0;
    for batch in history(accounts, fills) {
        store
            .events()
            .append(&batch)
            .await
            .expect("the history appends");
        appended += i64::try_from(batch.len()).expect("small");
    }
    appended
}

/// Catches the live projections up until they have applied all `appended` events. (On PostgreSQL
/// the log shows an event only once no older transaction of the whole cluster is open, so one
/// pass may stop short while other tests' transactions run.)
async fn catch_up_fully(store: &Store, appended: i64) {
    eventually("the projections to apply every appended event", || async {
        let mut runner = Runner::new(store.clone(), TableSet::Live, &Projection::ALL);
        runner
            .catch_up(None, &mut |_| {})
            .await
            .expect("the runner catches up");
        let position = runner.position().await.expect("checkpoints read");
        let behind = store.events().count_after(position).await.expect("count");
        let visible = store
            .events()
            .count_after(LogPosition::default())
            .await
            .expect("count");
        (behind == 0 && visible == appended).then_some(())
    })
    .await;
}

/// A reader's lag is measured from the log's head, so it costs the same however far behind the
/// reader is, and reads zero once the reader has caught up.
async fn a_readers_lag_is_the_distance_to_the_head(backend: Backend) {
    let test = TestStore::new(backend).await;
    let store = test.open().await;
    let empty = store.events().head().await.expect("head");
    assert_eq!(empty, LogPosition::default());
    let appended = append_history(&store, 3, 10).await;
    let head = store.events().head().await.expect("head");
    assert_eq!(head.global_seq, appended);
    let (behind, _) = lag_after(&store, LogPosition::default())
        .await
        .expect("lag");
    assert_eq!(behind, appended);
    let halfway = LogPosition {
        global_seq: appended / 2,
    };
    let (behind, _) = lag_after(&store, halfway).await.expect("lag");
    assert_eq!(behind, appended - appended / 2);
    assert_eq!(lag_after(&store, head).await.expect("lag"), (0, 0));
}
on_both_stores!(a_readers_lag_is_the_distance_to_the_head);

/// Two runners over the same projections at once (another instance, a rebuild racing the
/// service...): the checkpoint's compare-and-set lets one apply each page, never both.
async fn two_runners_at_once_do_not_double_apply(backend: Backend) {
    let test = TestStore::new(backend).await;
    let store = test.open().await;
    let appended = append_history(&store, 4, 60).await;
    let mut runners = JoinSet::new();
    for _ in 0..2 {
        let store = test.open().await;
        runners.spawn(async move {
            // Small pages: many transactions, many chances to collide.
            let mut runner = Runner::new(store, TableSet::Live, &Projection::ALL).with_page_size(7);
            runner.catch_up(None, &mut |_| {}).await
        });
    }
    while let Some(result) = runners.join_next().await {
        result
            .expect("the runner task")
            .expect("the runner catches up");
    }
    catch_up_fully(&store, appended).await;
    let models = assert_live_equals_the_fold(&store).await;
    assert_eq!(models.trades.len(), 240);
    // Fills cross midnight: each account has two days of volume.
    assert_eq!(models.daily_volume.len(), 8);
}
on_both_stores!(two_runners_at_once_do_not_double_apply);

/// Readers commit without waiting for the flush, so a database crash can take back the last pages
/// a running reader saw commit. A page read from where the reader believed it stood then no longer
/// follows its checkpoints: it is refused whole, and the reader goes back to where they really are
/// instead of passing over the lost events.
async fn a_page_after_checkpoints_that_went_back_is_refused(backend: Backend) {
    let test = TestStore::new(backend).await;
    let store = test.open().await;
    let appended = append_history(&store, 2, 10).await;
    let mut before_crash =
        Runner::new(store.clone(), TableSet::Live, &Projection::ALL).with_page_size(20);
    assert_eq!(
        before_crash.step(None).await.expect("a page"),
        Step::Applied(20)
    );
    let stood = before_crash.position().await.expect("checkpoints read");
    // The crash took every page back: rows and checkpoints, together.
    for projection in Projection::ALL {
        store
            .read_models()
            .reset(TableSet::Live, projection)
            .await
            .expect("the projection resets");
    }
    let next_page = store
        .events()
        .read_log(stood, 20)
        .await
        .expect("the log reads");
    let mut after_crash = Runner::new(store.clone(), TableSet::Live, &Projection::ALL);
    assert_eq!(
        after_crash
            .apply_page(stood, next_page)
            .await
            .expect("the page is looked at"),
        Step::Contended
    );
    assert_eq!(
        after_crash.position().await.expect("checkpoints read"),
        LogPosition::default(),
        "the reader reads again from where its checkpoints stand"
    );
    catch_up_fully(&store, appended).await;
    assert_live_equals_the_fold(&store).await;
}
on_both_stores!(a_page_after_checkpoints_that_went_back_is_refused);

/// A projection with no checkpoint (a new one, or one reset) builds itself from the beginning.
async fn a_new_projection_builds_itself_from_the_beginning(backend: Backend) {
    let test = TestStore::new(backend).await;
    let store = test.open().await;
    let appended = append_history(&store, 2, 10).await;
    let mut positions = Runner::new(store.clone(), TableSet::Live, &[Projection::Positions]);
    positions
        .catch_up(None, &mut |_| {})
        .await
        .expect("positions catch up");
    // Trades, volume and signals start later, from nothing; positions is already there.
    let mut all = Runner::new(store.clone(), TableSet::Live, &Projection::ALL);
    all.catch_up(None, &mut |_| {}).await.expect("all catch up");
    catch_up_fully(&store, appended).await;
    assert_live_equals_the_fold(&store).await;
}
on_both_stores!(a_new_projection_builds_itself_from_the_beginning);

async fn get(service: &Service, path: &str, key: Option<&str>) -> (u16, Value) {
    let mut request = service.client().get(format!("{}{path}", service.base_url));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    service.send(request).await
}

/// Two traders: each sees only their own positions, trades and signals; another's signal id is a
/// 404 exactly like an unknown one; without a key every endpoint is a 401.
async fn the_trader_endpoints_show_only_the_callers_rows(backend: Backend) {
    let test = TestStore::new(backend).await;
    let alice = create_user(&test.url, "alice").await;
    let bob = create_user(&test.url, "bob").await;
    let service = Service::start(&test.url, Options::default()).await;
    let mut alice_signals = Vec::new();
    for i in 0..5 {
        let (_, body) = service
            .post_signal(
                &alice.webhook_token,
                &Alert::new(format!("a{i}")).size("0.02").json(),
            )
            .await;
        alice_signals.push(body["signal_id"].as_str().expect("a signal id").to_owned());
    }
    let (_, bobs) = service
        .post_signal(
            &bob.webhook_token,
            &Alert::new("b0").side("sell").size("0.01").json(),
        )
        .await;
    let bob_signal = bobs["signal_id"].as_str().expect("a signal id").to_owned();

    // Alice's trades, two per page, until the cursor runs out.
    let trades = eventually("alice's five trades", || async {
        let mut seen = Vec::new();
        let mut path = "/api/trades?limit=2".to_owned();
        loop {
            let (status, body) = get(&service, &path, Some(&alice.api_key)).await;
            assert_eq!(status, 200, "{body}");
            seen.extend(body["trades"].as_array().cloned().unwrap_or_default());
            match body["next_cursor"].as_str() {
                Some(cursor) => path = format!("/api/trades?limit=2&cursor={cursor}"),
                None => break,
            }
        }
        (seen.len() == 5).then_some(seen)
    })
    .await;
    for trade in &trades {
        let id = trade["signal_id"].as_str().unwrap_or_default();
        assert!(alice_signals.iter().any(|s| s == id), "{trade}");
        assert_eq!(trade["side"], "buy");
    }
    let (_, positions) = get(&service, "/api/positions", Some(&alice.api_key)).await;
    assert_eq!(
        positions["positions"],
        serde_json::json!([{
            "market": "BTC-USD", "side": "long", "size": "0.1",
            "average_entry_price": positions["positions"][0]["average_entry_price"],
            "realized_pnl_usd": "0"
        }])
    );
    let (_, bob_positions) = eventually("bob's position", || async {
        let (status, body) = get(&service, "/api/positions", Some(&bob.api_key)).await;
        (body["positions"].as_array().is_some_and(|p| !p.is_empty())).then_some((status, body))
    })
    .await;
    assert_eq!(bob_positions["positions"][0]["side"], "short");

    let (status, own) = get(
        &service,
        &format!("/api/signals/{}", alice_signals[0]),
        Some(&alice.api_key),
    )
    .await;
    assert_eq!(status, 200, "{own}");
    assert_eq!(own["outcome"], "filled");
    assert_eq!(own["events"][0]["event_type"], "SignalReceived");
    let (status, theirs) = get(
        &service,
        &format!("/api/signals/{bob_signal}"),
        Some(&alice.api_key),
    )
    .await;
    let (unknown_status, unknown) = get(
        &service,
        "/api/signals/no-such-signal",
        Some(&alice.api_key),
    )
    .await;
    assert_eq!((status, unknown_status), (404, 404));
    assert_eq!(
        (&theirs["code"], &theirs["error"]),
        (&unknown["code"], &unknown["error"])
    );
    let (status, _) = get(
        &service,
        &format!("/api/signals/{bob_signal}"),
        Some(&bob.api_key),
    )
    .await;
    assert_eq!(status, 200);

    for path in ["/api/positions", "/api/trades", "/api/signals/x"] {
        let (status, body) = get(&service, path, None).await;
        assert_eq!(status, 401, "{path}: {body}");
        assert_eq!(body["code"], "INVALID_TOKEN");
        let (status, _) = get(&service, path, Some("lhk_not-a-key")).await;
        assert_eq!(status, 401, "{path}");
    }
    for bad in ["limit=0", "limit=501", "limit=x", "cursor=-1"] {
        let (status, body) = get(
            &service,
            &format!("/api/trades?{bad}"),
            Some(&alice.api_key),
        )
        .await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    service.stop().await;
}
on_both_stores!(the_trader_endpoints_show_only_the_callers_rows);

/// A rebuild that finds the live copy different says so and exits non-zero.
async fn a_rebuild_reports_live_rows_that_differ(backend: Backend) {
    let test = TestStore::new(backend).await;
    let store = test.open().await;
    let appended = append_history(&store, 1, 5).await;
    catch_up_fully(&store, appended).await;
    // Damage one live row behind the runner's back.
    let damage = "UPDATE daily_volume SET traded_usd = '1'";
    let damaged = match &store {
        Store::Sqlite(sqlite) => sqlx::query(damage)
            .execute(sqlite.pool())
            .await
            .map(|done| done.rows_affected()),
        Store::Postgres(postgres) => sqlx::query(damage)
            .execute(postgres.pool())
            .await
            .map(|done| done.rows_affected()),
    };
    assert_eq!(damaged.expect("the damage applies"), 1);
    let output = cli_output(&test.url, &["projections", "rebuild", "daily_volume"]).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success(), "{stdout}");
    assert!(
        stdout.contains("daily_volume") && stdout.contains("DIFFERS"),
        "{stdout}"
    );
}
on_both_stores!(a_rebuild_reports_live_rows_that_differ);

/// An instance started with `--no-read-side` (and `--no-execution`) only records alerts; an
/// instance that runs the read side, started later, chains and projects what it recorded.
async fn the_read_side_can_run_in_another_instance(backend: Backend) {
    let test = TestStore::new(backend).await;
    let alice = create_user(&test.url, "alice").await;
    let front = Service::start(
        &test.url,
        Options {
            args: vec!["--no-read-side".into()],
            ..Options::ingest_only()
        },
    )
    .await;
    send_signals(&front, &alice, "front", 3).await;
    front.stop().await;
    let back = Service::start(&test.url, Options::default()).await;
    let store = test.open().await;
    eventually(
        "the other instance to execute and project the signals",
        || async {
            let (_, models) = fold_of_the_log(&store).await;
            (models.trades.len() == 3).then_some(())
        },
    )
    .await;
    assert_live_equals_the_fold(&store).await;
    let report = audit_chains_every_event(&test.url, &store).await;
    assert_eq!(report["first_mismatch"], Value::Null, "{report}");
    back.stop().await;
}
on_both_stores!(the_read_side_can_run_in_another_instance);
