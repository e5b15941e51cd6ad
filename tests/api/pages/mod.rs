//! The web pages (issue #4) in a real browser: headless Chromium driven over WebDriver by
//! a chromedriver this file starts itself. `.ci/run` installs Debian's `chromium` and
//! `chromium-driver`; without them these tests fail and say so (they are not skipped).
//!
//! Each run saves a full-page screenshot of every page under `target/screenshots/`.

use std::net::TcpListener as StdListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use muster::app::{self, Options};
use muster::gateway::auth::TokenKeys;
use serde_json::{Value, json};

use crate::helpers::*;

mod a11y;
mod campaign;
mod city;
mod command;
mod coverage;
mod flows;
mod offline;
mod push;
mod residents;
mod service;
mod unit;

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
const WAIT_UI: Duration = Duration::from_secs(30);

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// axe-core's browser script, from the npm package `.ci/run` installs under target/axe/
/// (`npm install --prefix target/axe axe-core@4`); not in the repository.
pub(crate) fn axe_source() -> String {
    static SRC: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SRC.get_or_init(|| {
        let path = target_dir().join("axe/node_modules/axe-core/axe.min.js");
        std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "the accessibility checks need axe-core at {}: {e}\n\
                 install it with `npm install --prefix target/axe axe-core@4` (.ci/run does this)",
                path.display()
            )
        })
    })
    .clone()
}

fn screenshots_dir() -> PathBuf {
    let dir = target_dir().join("screenshots");
    std::fs::create_dir_all(&dir).expect("create target/screenshots");
    dir
}

/// A chromedriver on a free port, killed on drop.
pub(crate) struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    pub(crate) async fn start() -> Driver {
        for bin in [CHROMEDRIVER, CHROMIUM] {
            assert!(
                Path::new(bin).exists(),
                "the browser tests need {bin}: install Debian's chromium and chromium-driver \
                 (apt-get install -y --no-install-recommends chromium chromium-driver; .ci/run does this)"
            );
        }
        let port = free_port();
        // Its own process group: the browsers it starts are ended with it, even when a
        // test fails before closing its sessions.
        let child = Command::new(CHROMEDRIVER)
            .process_group(0)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let driver = Driver { child, url: format!("http://127.0.0.1:{port}") };
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = http.get(format!("{}/status", driver.url)).send().await
                && r.status().is_success()
            {
                return driver;
            }
            assert!(Instant::now() < deadline, "chromedriver did not answer on {} within 20 s", driver.url);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub(crate) async fn browser(&self, name: &'static str) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                // Headless Chromium keeps windows at least 500 px wide: emulate the phone.
                "mobileEmulation": {"deviceMetrics": {"width": 360, "height": 800, "pixelRatio": 1.0, "mobile": true, "touch": false}},
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--no-first-run", "--window-size=360,800", "--disable-breakpad", "--disable-crash-reporter",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
            "goog:loggingPrefs": {"browser": "ALL"},
        });
        let Value::Object(caps) = caps else { unreachable!() };
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&self.url)
            .await
            .expect("a Chromium session starts");
        Browser { client, name, driver: self.url.clone(), width: AtomicU64::new(360), _profile: profile }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).stderr(Stdio::null()).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One Chromium session showing one page.
pub(crate) struct Browser {
    pub(crate) client: Client,
    pub(crate) name: &'static str,
    driver: String,
    /// The emulated screen's width (360 until [`Browser::set_width`]).
    width: AtomicU64,
    _profile: tempfile::TempDir,
}

impl Browser {
    pub(crate) async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap_or_else(|e| panic!("{}: open {url}: {e}", self.name));
    }

    pub(crate) async fn js(&self, script: &str) -> Value {
        self.client
            .execute(script, vec![])
            .await
            .unwrap_or_else(|e| panic!("{}: script failed: {e}\n{script}", self.name))
    }

    pub(crate) async fn text(&self, selector: &str) -> String {
        let v =
            self.js(&format!("const e = document.querySelector({selector:?}); return e ? e.textContent : null;")).await;
        v.as_str().unwrap_or_else(|| panic!("{}: nothing matches {selector}", self.name)).trim().to_string()
    }

    /// Polls a script returning a boolean until it is true; on a time-out saves a
    /// screenshot and the browser log, and fails with `what`.
    pub(crate) async fn wait(&self, what: &str, script: &str) {
        let deadline = Instant::now() + WAIT_UI;
        loop {
            if self.js(script).await == Value::Bool(true) {
                return;
            }
            if Instant::now() > deadline {
                self.screenshot(&format!("{}-FAILED", self.name)).await;
                let logs = self.log().await;
                let body = self.js("return document.body.innerText").await;
                panic!(
                    "{}: timed out waiting for {what}\nscript: {script}\nlog: {logs:#?}\npage text:\n{body}",
                    self.name
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Clicks an element, scrolled to the middle of the window first, as a person would
    /// (chromedriver leaves an element that is in view where it is, even under the sticky
    /// header).
    /// A live frame may redraw the element between finding and clicking it: then it is
    /// found again, as a person would click what is there now (a few times at most).
    pub(crate) async fn click(&self, selector: &str) {
        for attempt in 0.. {
            let el = self
                .client
                .find(Locator::Css(selector))
                .await
                .unwrap_or_else(|e| panic!("{}: find {selector}: {e}", self.name));
            let arg = serde_json::to_value(&el).unwrap();
            let _ = self.client.execute("arguments[0].scrollIntoView({block: 'center'})", vec![arg]).await;
            match el.click().await {
                Ok(()) => return,
                Err(e) if attempt < 5 && e.to_string().contains("stale element") => continue,
                Err(e) => panic!("{}: click {selector}: {e}", self.name),
            }
        }
    }

    /// Picks the option `value` of a select, once the page has put that option there (the
    /// pages fill their selects from the API after load, and may fill them again when the
    /// catalog or the language arrives: an element found before that is stale, so the pick
    /// is tried again until it holds or 20 s have passed).
    pub(crate) async fn select(&self, selector: &str, value: &str) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let tried = match self.client.find(Locator::Css(selector)).await {
                Ok(el) => el.select_by_value(value).await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match tried {
                Ok(()) => return,
                Err(e) if std::time::Instant::now() >= deadline => {
                    panic!("{}: select {value} in {selector}: {e}", self.name)
                }
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
            }
        }
    }

    pub(crate) async fn type_into(&self, selector: &str, text: &str) {
        let el = self
            .client
            .find(Locator::Css(selector))
            .await
            .unwrap_or_else(|e| panic!("{}: find {selector}: {e}", self.name));
        el.clear().await.unwrap();
        el.send_keys(text).await.unwrap_or_else(|e| panic!("{}: type into {selector}: {e}", self.name));
    }

    pub(crate) async fn sign_in(&self, token: &str) {
        self.wait("the sign-in form", "return !document.querySelector('#signin').hidden").await;
        self.type_into("#token", token).await;
        self.click("#signin-submit").await;
        self.wait("the page to connect", "return document.querySelector('#conn').dataset.state === 'connected'").await;
    }

    pub(crate) async fn press(&self, key: Key) {
        let k: char = key.into();
        let seq =
            KeyActions::new("keyboard".into()).then(KeyAction::Down { value: k }).then(KeyAction::Up { value: k });
        self.client.perform_actions(seq).await.unwrap();
    }

    /// Presses Tab `n` times from the top of the page; returns what had the focus each time
    /// (`#id`, or `tag.class[data-*]`).
    pub(crate) async fn tab_walk(&self, n: usize) -> Vec<String> {
        self.js("document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0); return true;").await;
        let mut seen = Vec::new();
        for _ in 0..n {
            self.press(Key::Tab).await;
            let v = self
                .js(
                    "const e = document.activeElement; if (!e || e === document.body) return 'body';
                     if (e.id) return '#' + e.id;
                     const d = Object.entries(e.dataset).map(([k, v]) => `[${k}=${v}]`).join('');
                     return e.tagName.toLowerCase() + '.' + (e.getAttribute('class') || '').trim().replace(/\\s+/g, '.') + d;",
                )
                .await;
            seen.push(v.as_str().unwrap_or("?").to_string());
        }
        seen
    }

    /// The page has no horizontal scroll at 360 px.
    pub(crate) async fn fits_360(&self) {
        let v = self.js("return [window.innerWidth, document.documentElement.scrollWidth]").await;
        let (w, sw) = (v[0].as_u64().unwrap(), v[1].as_u64().unwrap());
        if sw > w || w > 360 {
            // What sticks out: the innermost elements whose right edge passes 360 px.
            let wide = self
                .js("return [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > 361 \
                     && ![...e.children].some(c => c.getBoundingClientRect().right > 361)).slice(0, 8) \
                     .map(e => e.tagName + (e.id ? '#' + e.id : '') + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right))")
                .await;
            panic!("{}: the page is {sw} px wide in a {w} px window (horizontal scroll); too wide: {wide}", self.name);
        }
    }

    /// A chromedriver extension command on this session.
    pub(crate) async fn driver_cmd(&self, path: &str, body: Value) -> Value {
        let Ok(Some(session)) = self.client.session_id().await else { return Value::Null };
        let url = format!("{}/session/{session}/{path}", self.driver);
        match reqwest::Client::new().post(url).json(&body).send().await {
            Ok(resp) => resp.json().await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        }
    }

    /// Sets the viewport's height; the width is the one chosen with [`Browser::set_width`]
    /// (360 px, a phone, until then).
    pub(crate) async fn viewport_height(&self, height: u64) {
        let width = self.width.load(Ordering::Relaxed);
        let params = json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width <= 500,
            "screenWidth": width, "screenHeight": height});
        self.driver_cmd("goog/cdp/execute", json!({"cmd": "Emulation.setDeviceMetricsOverride", "params": params}))
            .await;
    }

    /// The phone's GPS: a position (the geolocation permission granted), or `None` for a
    /// position that cannot be had (the page then falls back on what it was given by hand).
    pub(crate) async fn geolocation(&self, at: Option<(f64, f64)>) {
        let origin = self.js("return location.origin").await;
        self.driver_cmd(
            "goog/cdp/execute",
            json!({"cmd": "Browser.grantPermissions", "params": {"permissions": ["geolocation"], "origin": origin}}),
        )
        .await;
        let params = match at {
            Some((lat, lng)) => json!({"latitude": lat, "longitude": lng, "accuracy": 5}),
            None => json!({}),
        };
        let v = self
            .driver_cmd("goog/cdp/execute", json!({"cmd": "Emulation.setGeolocationOverride", "params": params}))
            .await;
        assert!(
            v.get("value").is_some_and(|x| !x.is_null() || v.get("error").is_none()),
            "{}: geolocation: {v}",
            self.name
        );
    }

    /// Emulates a screen `width` px wide (360: the phone; 1920: a desktop at 1920×1080).
    pub(crate) async fn set_width(&self, width: u64) {
        self.width.store(width, Ordering::Relaxed);
        self.viewport_height(self.base_height()).await;
        let w = width;
        self.wait(&format!("a {w} px screen"), &format!("return window.screen.width === {w}")).await;
    }

    fn base_height(&self) -> u64 {
        if self.width.load(Ordering::Relaxed) <= 500 { 800 } else { 1080 }
    }

    /// Runs axe-core (injected from the npm package, see [`axe_source`]) on the page as it
    /// is; answers the serious and critical violations, one line each with the elements.
    pub(crate) async fn axe(&self) -> Vec<String> {
        let loaded = self.js("return typeof window.axe === 'object' && typeof window.axe.run === 'function'").await;
        if loaded != Value::Bool(true) {
            let src = axe_source();
            self.client
                .execute(&format!("{src}\n;return typeof window.axe;"), vec![])
                .await
                .unwrap_or_else(|e| panic!("{}: injecting axe-core failed: {e}", self.name));
        }
        let script = "const done = arguments[arguments.length - 1];
            window.axe.run(document, {resultTypes: ['violations']})
              .then(r => done(r.violations.filter(v => v.impact === 'serious' || v.impact === 'critical')
                .map(v => `${v.impact} ${v.id}: ${v.help} -- ` + v.nodes.slice(0, 6)
                  .map(n => n.target.join(' ') + ' ' + (n.failureSummary || '').replace(/\\s+/g, ' ')).join(' | '))))
              .catch(e => done(['axe failed: ' + e]));";
        let v = self
            .client
            .execute_async(script, vec![])
            .await
            .unwrap_or_else(|e| panic!("{}: axe.run failed: {e}", self.name));
        v.as_array()
            .unwrap_or_else(|| panic!("{}: axe.run answered {v}", self.name))
            .iter()
            .map(|x| x.as_str().unwrap_or("?").to_string())
            .collect()
    }

    /// Fails on any serious or critical axe-core violation, naming the page state `what`.
    pub(crate) async fn accessible(&self, what: &str) {
        let found = self.axe().await;
        if !found.is_empty() {
            self.screenshot(&format!("{}-AXE-FAILED", self.name)).await;
        }
        assert!(found.is_empty(), "{}: {what}: accessibility violations (axe-core):\n{}", self.name, found.join("\n"));
    }

    /// A full-page PNG under target/screenshots/.
    pub(crate) async fn screenshot(&self, file: &str) -> PathBuf {
        let h = self
            .js("return Math.min(6000, Math.ceil(document.documentElement.scrollHeight))")
            .await
            .as_u64()
            .unwrap_or(800);
        let base = self.base_height();
        self.viewport_height(h.max(base)).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let png = self.client.screenshot().await.expect("screenshot");
        self.viewport_height(base).await;
        let path = screenshots_dir().join(format!("{file}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }

    /// The browser's log since the last call (chromedriver's `se/log`), as
    /// `(level, message)`.
    pub(crate) async fn log(&self) -> Vec<(String, String)> {
        let v = self.driver_cmd("se/log", json!({"type": "browser"})).await;
        v["value"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|e| {
                        (e["level"].as_str().unwrap_or("").to_string(), e["message"].as_str().unwrap_or("").to_string())
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Fails on any console error (uncaught exceptions, CSP violations, failed loads and
    /// console.error), except messages containing one of `allowed`.
    pub(crate) async fn no_console_errors(&self, allowed: &[&str]) {
        // A probe first, so an empty log cannot pass for a clean one.
        self.js("console.info('muster-log-probe'); return true").await;
        let log = self.log().await;
        assert!(
            log.iter().any(|(_, m)| m.contains("muster-log-probe")),
            "{}: the browser log is not readable: {log:?}",
            self.name
        );
        let errors: Vec<_> = log
            .into_iter()
            .filter(|(level, msg)| level == "SEVERE" && !allowed.iter().any(|a| msg.contains(a)))
            .collect();
        assert!(errors.is_empty(), "{}: console errors: {errors:#?}", self.name);
    }

    pub(crate) async fn close(self) {
        let _ = self.client.close().await;
    }
}

pub(crate) fn has_all(walk: &[String], want: &[&str], page: &str) {
    for w in want {
        assert!(walk.iter().any(|s| s.contains(w)), "{page}: Tab never reached {w}; the focus went through {walk:?}");
    }
}
