//! schemathesis (PyPI) against the real binary's `/openapi.json`, every check (`--checks all`):
//! no 5xx, no answer outside the document (status, content type, headers, body schema), invalid
//! input refused, valid input accepted, credentials never ignored. Once per credential: a
//! trader's API key, a compliance and an operator staff key, a wallet's session cookie; every run
//! also holds the trader's webhook token and two-factor secret (tests/it/schemathesis.toml says
//! what it configures and why). Bounded: a few examples per operation and a time budget per run,
//! under 2 minutes in all.
//!
//! Nothing is excluded: the webhooks are exercised too, and what they accept is filled by the
//! paper venue (loopback, no real exchange). SQLite only: the document and the handlers' checks
//! do not depend on the store, which the other tests cover on both.

use std::path::Path;
use std::time::Duration;

use crate::support::alerts::Alert;
use crate::support::audit::create_staff;
use crate::support::eventually;
use crate::support::python_tools;
use crate::support::service::{create_user, Options, Service};
use crate::support::sign_in::{wallet_sign_in, TestWallet};
use crate::support::stores::{Backend, TestStore};

/// Test cases per operation and phase, and each run's time budget (four runs).
const MAX_EXAMPLES: &str = "20";
const SECONDS_PER_RUN: &str = "20";
/// A run that has not finished well past its budget is stuck.
const RUN_TIMEOUT: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_nothing_outside_the_document() {
    python_tools::require("schemathesis", "schemathesis");
    let test = TestStore::new(Backend::Sqlite).await;
    let alice = create_user(&test.url, "alice").await;
    let (_, compliance_key) = create_staff(&test.url, "Carol Compliance", "compliance").await;
    let (_, operator_key) = create_staff(&test.url, "Oscar Operator", "operator").await;
    let options = Options {
        // schemathesis sends wrong secrets by the hundred: without this, the two-factor webhook
        // would answer only 429 after the fifth and the logic behind it would go untested.
        env: vec![(
            "LEDGERHOOK_LOCKOUT_AFTER_FAILURES".to_owned(),
            "1000000".to_owned(),
        )],
        ..Options::default()
    };
    let service = Service::start(&test.url, options).await;

    // One signal filled on paper, so the signal, positions and trades answer with real rows.
    let (status, receipt) = service
        .post_signal(
            &alice.webhook_token,
            &Alert::btc_usd("schemathesis-first").json(),
        )
        .await;
    assert_eq!((status, &receipt["status"]), (200, &"accepted".into()));
    let signal_id = receipt["signal_id"]
        .as_str()
        .expect("a signal id")
        .to_owned();
    let trades = format!("{}/api/trades", service.base_url);
    eventually("the first alert's fill in /api/trades", || {
        let request = service.client().get(&trades).bearer_auth(&alice.api_key);
        async move {
            let answer: serde_json::Value = request.send().await.ok()?.json().await.ok()?;
            (answer["trades"].as_array()?.len() == 1).then_some(())
        }
    })
    .await;

    let session = wallet_sign_in(&service, &TestWallet::random()).await;

    let base = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/schemathesis.toml"),
    )
    .expect("tests/it/schemathesis.toml");
    let work = tempfile::tempdir().expect("a directory for schemathesis' files");
    // The trader's key last: its run rotates the webhook credentials every run is given.
    for (who, credential) in [
        ("compliance key", Credential::Key(&compliance_key)),
        ("operator key", Credential::Key(&operator_key)),
        ("wallet session", Credential::Session(&session.token)),
        ("trader key", Credential::Key(&alice.api_key)),
    ] {
        let config = work.path().join("schemathesis.toml");
        std::fs::write(&config, format!("{base}\n{}", credential.auth_tables()))
            .expect("the run's configuration is written");
        let run = tokio::process::Command::new("python3")
            .args(["-m", "schemathesis.cli", "--config-file"])
            .arg(&config)
            .arg("run")
            .arg(format!("{}/openapi.json", service.base_url))
            .args(["--checks", "all", "--max-examples", MAX_EXAMPLES])
            .args(["--max-time", SECONDS_PER_RUN])
            .args(["--generation-database", "none", "--no-color"])
            .env("LH_CREDENTIAL", credential.value())
            .env("LH_WEBHOOK_TOKEN", &alice.webhook_token)
            .env("LH_WEBHOOK_UUID", &alice.webhook_uuid)
            .env("LH_WEBHOOK_SECRET", &alice.webhook_secret)
            .env("LH_SIGNAL_ID", &signal_id)
            .current_dir(work.path())
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(RUN_TIMEOUT, run)
            .await
            .unwrap_or_else(|_| panic!("schemathesis ({who}) ran past {RUN_TIMEOUT:?}"))
            .expect("schemathesis runs");
        let report = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            output.status.success(),
            "schemathesis with the {who} key found problems ({}):\n{report}",
            output.status
        );
        // Shown with --nocapture: what was generated and tested, and the seed to replay it.
        let summary: Vec<&str> = report
            .lines()
            .map(str::trim)
            .filter(|line| line.contains(" generated, ") || line.starts_with("Seed:"))
            .collect();
        println!("schemathesis ({who}): {}", summary.join(" / "));
    }
}

enum Credential<'a> {
    Key(&'a str),
    Session(&'a str),
}

impl Credential<'_> {
    fn value(&self) -> &str {
        match self {
            Self::Key(key) | Self::Session(key) => key,
        }
    }

    /// The run's `[auth.openapi.*]` tables, by the document's security scheme names; the value
    /// itself stays in the environment (`LH_CREDENTIAL`), never in a file.
    fn auth_tables(&self) -> String {
        let webhook = "[auth.openapi.webhook_token]\napi_key = \"${LH_WEBHOOK_TOKEN}\"\n";
        match self {
            // In both bearer slots: the other role's operations must refuse it.
            Self::Key(_) => format!(
                "[auth.openapi.trader_key]\nbearer = \"${{LH_CREDENTIAL}}\"\n\
                 [auth.openapi.staff_key]\nbearer = \"${{LH_CREDENTIAL}}\"\n{webhook}"
            ),
            Self::Session(_) => {
                format!("[auth.openapi.session]\napi_key = \"${{LH_CREDENTIAL}}\"\n{webhook}")
            }
        }
    }
}
