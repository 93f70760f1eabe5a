//! Headless Chromium for the dashboard's tests, driven over WebDriver (chromedriver + fantoccini).
//!
//! Debian's `chromium` and `chromium-driver` are installed by `ensure_installed` where missing
//! (as root, with apt-get); where that is impossible the test fails saying how to install them.
//! The browser gets a fresh profile and the flags that keep it off the network (the machine has
//! none, and Chromium's background requests would only fail slowly). Every wait is on a
//! condition with a deadline, never a sleep.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use tokio::process::{Child, Command};

use super::eventually;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
pub const DESKTOP: (u32, u32) = (1280, 900);
pub const PHONE: (u32, u32) = (390, 844);

/// Where screenshots are kept: `target/screenshots/`, beside the build's other artifacts.
pub fn screenshot_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("screenshots")
}

/// Chromium and chromedriver, installed from Debian's packages if missing.
pub async fn ensure_installed() {
    if Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists() {
        return;
    }
    let how = "install them with `apt-get install chromium chromium-driver` (Debian) and run the \
               tests again";
    let root = Command::new("id")
        .arg("-u")
        .output()
        .await
        .is_ok_and(|output| output.stdout.starts_with(b"0"));
    assert!(
        root,
        "the browser tests need {CHROMIUM} and {CHROMEDRIVER}, and only root can install them: {how}"
    );
    let installed =
        tokio::task::spawn_blocking(|| super::apt_install(&["chromium", "chromium-driver"]))
            .await
            .unwrap_or(false);
    assert!(
        installed && Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists(),
        "apt-get failed while installing Chromium for the browser tests: {how}"
    );
}

/// One browser: chromedriver and the Chromium it started, ended when dropped.
pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    pub async fn start() -> Self {
        ensure_installed().await;
        let port = free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        let profile = tempfile::tempdir().expect("a profile directory");
        let capabilities = json!({
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--disable-dev-shm-usage",
                    format!("--user-data-dir={}", profile.path().display()),
                    format!("--window-size={},{}", DESKTOP.0, DESKTOP.1),
                ],
            }
        });
        let capabilities = match capabilities {
            Value::Object(map) => map,
            _ => unreachable!("an object"),
        };
        let url = format!("http://127.0.0.1:{port}");
        let client = eventually("chromedriver to start a browser", || {
            let capabilities = capabilities.clone();
            let url = url.clone();
            async move {
                let connector = hyper_util::client::legacy::connect::HttpConnector::new();
                ClientBuilder::new(connector)
                    .capabilities(capabilities)
                    .connect(&url)
                    .await
                    .ok()
            }
        })
        .await;
        Self {
            client,
            driver,
            _profile: profile,
        }
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("the page loads");
    }

    /// The element matching `css`, once it exists.
    pub async fn find(&self, css: &str) -> Element {
        self.client
            .wait()
            .at_most(Duration::from_secs(30))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|error| panic!("{css} never appeared: {error}"))
    }

    pub async fn click(&self, css: &str) {
        self.find(css).await.click().await.expect("a click");
    }

    pub async fn fill(&self, css: &str, text: &str) {
        let field = self.find(css).await;
        field.clear().await.expect("cleared");
        field.send_keys(text).await.expect("typed");
    }

    /// The text of `css` once `accept` takes it.
    pub async fn text_when(&self, css: &str, what: &str, accept: impl Fn(&str) -> bool) -> String {
        eventually(what, || async {
            let element = self.client.find(Locator::Css(css)).await.ok()?;
            let text = element.text().await.ok()?;
            accept(&text).then_some(text)
        })
        .await
    }

    /// The current path, once it is `path`.
    pub async fn arrive(&self, path: &str) {
        eventually(&format!("the browser to arrive at {path}"), || async {
            let url = self.client.current_url().await.ok()?;
            (url.path() == path).then_some(())
        })
        .await;
    }

    pub async fn run(&self, script: &str, args: Vec<Value>) -> Value {
        self.client
            .execute(script, args)
            .await
            .unwrap_or_else(|error| panic!("script failed: {error}\n{script}"))
    }

    /// `fetch(path)` from the page (same origin, its cookies): status and body text.
    pub async fn fetch_text(&self, path: &str) -> (u16, String) {
        let answer = self
            .client
            .execute_async(
                "const [path, done] = arguments;
                 fetch(path, { credentials: 'same-origin' })
                   .then(async (r) => done([r.status, await r.text()]))
                   .catch((e) => done([0, String(e)]));",
                vec![json!(path)],
            )
            .await
            .expect("the fetch runs");
        let status = answer[0].as_u64().unwrap_or_default() as u16;
        (status, answer[1].as_str().unwrap_or_default().to_owned())
    }

    pub async fn resize(&self, (width, height): (u32, u32)) {
        self.client
            .set_window_size(width, height)
            .await
            .expect("the window resizes");
    }

    /// A PNG of the whole page (the window stretched to its height for the shot), kept as
    /// `target/screenshots/NAME.png`; returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let (width, height) = self
            .client
            .get_window_size()
            .await
            .expect("the window's size");
        let (width, height) = (
            u32::try_from(width).unwrap_or(DESKTOP.0),
            u32::try_from(height).unwrap_or(DESKTOP.1),
        );
        let page_height = self
            .run("return document.documentElement.scrollHeight;", vec![])
            .await
            .as_u64()
            .and_then(|value| u32::try_from(value).ok())
            .unwrap_or(height);
        // The window's height includes the browser's own frame; a little more shows it all.
        let tall = page_height.saturating_add(140).clamp(height, 8_000);
        self.resize((width, tall)).await;
        let png = self.client.screenshot().await.expect("a screenshot");
        self.resize((width, height)).await;
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).expect("the screenshot directory");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("the screenshot is written");
        println!("screenshot: {}", path.display());
        path
    }

    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill().await;
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free loopback port")
}

/// An EIP-1193 provider for the page (`window.ethereum`) that holds no key: `personal_sign`
/// leaves the message for the test, which signs it with its own key and resolves the promise
/// (`resolve_signature`). The clipboard is recorded too, so the test sees what "Copy" copied.
pub const INJECTED_WALLET: &str = r#"
const [address] = arguments;
window.__lhTest = { pending: null, resolve: null, copied: [] };
window.ethereum = {
  request: async ({ method, params }) => {
    if (method === 'eth_requestAccounts' || method === 'eth_accounts') return [address];
    if (method === 'personal_sign') {
      return new Promise((resolve) => {
        window.__lhTest.pending = params[0];
        window.__lhTest.resolve = resolve;
      });
    }
    throw Object.assign(new Error('unsupported ' + method), { code: 4200 });
  },
};
if (navigator.clipboard) {
  navigator.clipboard.writeText = async (value) => { window.__lhTest.copied.push(value); };
}
"#;

/// Records what the page copies (see `INJECTED_WALLET`) on a page without the wallet.
pub const RECORD_CLIPBOARD: &str = r#"
window.__lhTest = window.__lhTest || { pending: null, resolve: null, copied: [] };
if (navigator.clipboard) {
  navigator.clipboard.writeText = async (value) => { window.__lhTest.copied.push(value); };
}
"#;
