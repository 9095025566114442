//! A headless Chromium driven over the W3C WebDriver protocol by Debian's
//! chromedriver: enough of the protocol for the console's tests, spoken with
//! the crate's small HTTP client.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::{Process, TempDir, free_port, http_text, installed, wait_for};

/// WebDriver's key for an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// One browser session; the browser and its driver stop when it is dropped.
#[derive(Debug)]
pub struct Browser {
    _driver: Process,
    _profile: TempDir,
    port: u16,
    session: String,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a fresh profile,
    /// its language English.
    pub fn start() -> Browser {
        let driver_binary = installed(&["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"], "chromium-driver");
        let chromium = installed(&["/usr/bin/chromium", "/usr/bin/chromium-browser"], "chromium");
        let profile = TempDir::new("chromium");
        let port = free_port();
        let driver = Process::start(&driver_binary, &[&format!("--port={port}")], profile.path().join("chromedriver.log"));
        wait_for("chromedriver", Duration::from_secs(20), || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
        let capabilities = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1440,1000",
                     "--lang=en-US", &format!("--user-data-dir={}", profile.path().join("profile").display())],
            "prefs": {"intl.accept_languages": "en-US"}
        }}}});
        let (status, answer) = http_text(port, "POST", "/session", None, Some(&capabilities));
        let answer: Value = serde_json::from_str(&answer).unwrap_or(Value::Null);
        let session = answer["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no browser session ({status}): {answer}")).to_owned();
        Browser { _driver: driver, _profile: profile, port, session }
    }

    fn command(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}{path}", self.session);
        let (status, answer) = http_text(self.port, method, &path, None, Some(&body.unwrap_or_else(|| json!({}))));
        let answer: Value = serde_json::from_str(&answer).unwrap_or(Value::Null);
        assert_eq!(status, 200, "WebDriver {method} {path}: {answer}");
        answer["value"].clone()
    }

    /// Opens `url`.
    pub fn open(&self, url: &str) {
        self.command("POST", "/url", Some(json!({ "url": url })));
    }

    /// Runs `script` (a function body; `arguments` holds `args`) and returns its result.
    pub fn run(&self, script: &str, args: Value) -> Value {
        self.command("POST", "/execute/sync", Some(json!({ "script": script, "args": args })))
    }

    fn element(&self, selector: &str) -> String {
        let found = self.command("POST", "/element", Some(json!({ "using": "css selector", "value": selector })));
        found[ELEMENT].as_str().unwrap_or_else(|| panic!("no element {selector}")).to_owned()
    }

    /// Clicks the element `selector` names.
    pub fn click(&self, selector: &str) {
        let element = self.element(selector);
        self.command("POST", &format!("/element/{element}/click"), None);
    }

    /// Clears the field `selector` names and types `text` into it.
    pub fn fill(&self, selector: &str, text: &str) {
        let element = self.element(selector);
        self.command("POST", &format!("/element/{element}/clear"), None);
        self.command("POST", &format!("/element/{element}/value"), Some(json!({ "text": text })));
    }

    /// Chooses `value` in the select element `selector` names.
    pub fn select(&self, selector: &str, value: &str) {
        self.run(
            "const s = document.querySelector(arguments[0]); s.value = arguments[1]; s.dispatchEvent(new Event('change'));",
            json!([selector, value]),
        );
    }

    /// The text of the first element `selector` names ("" when there is none or it is hidden).
    pub fn text(&self, selector: &str) -> String {
        let value = self.run(
            "const e = document.querySelector(arguments[0]); return e && e.offsetParent !== null ? e.innerText : '';",
            json!([selector]),
        );
        value.as_str().unwrap_or_default().to_owned()
    }

    /// Waits until the text of `selector` holds `wanted`; returns the text.
    pub fn wait_text(&self, selector: &str, wanted: &str, deadline: Duration) -> String {
        let end = Instant::now() + deadline;
        loop {
            let text = self.text(selector);
            if text.contains(wanted) {
                return text;
            }
            assert!(Instant::now() < end, "timed out after {deadline:?} waiting for {selector:?} to show {wanted:?}; it shows {text:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until `script` returns true.
    pub fn wait_until(&self, what: &str, script: &str, args: Value, deadline: Duration) {
        let end = Instant::now() + deadline;
        while self.run(script, args.clone()) != Value::Bool(true) {
            assert!(Instant::now() < end, "timed out after {deadline:?} waiting for {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Saves a PNG of the window to `path`.
    pub fn screenshot(&self, path: &Path) {
        let encoded = self.command("GET", "/screenshot", None);
        let png = data_encoding::BASE64.decode(encoded.as_str().unwrap_or_default().as_bytes()).expect("a base64 screenshot");
        std::fs::write(path, png).expect("write the screenshot");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let path = format!("/session/{}", self.session);
        let _ = std::panic::catch_unwind(|| http_text(self.port, "DELETE", &path, None, None));
    }
}
