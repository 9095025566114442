//! A headless Chromium driven over the W3C WebDriver protocol by Debian's
//! chromedriver: enough of the protocol for the console's tests, spoken with
//! the crate's small HTTP client, and axe-core run in its pages.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::{Process, Stdin, TempDir, free_port, http_text, installed, wait_for};

/// WebDriver's key for an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// The browser's own time zone: far from every venue's zone the tests
/// configure, so a time shown in the browser's zone instead of the venue's
/// is seen.
pub const ZONE: &str = "America/Los_Angeles";

/// Where tests/setup installs axe-core, the accessibility engine the
/// console is checked with (it has no Debian package).
pub const AXE: &str = "/usr/local/share/netbar-tests/axe-core/axe.min.js";

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
    /// its language English, its time zone [`ZONE`].
    pub fn start() -> Browser {
        let driver_binary = installed(&["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"], "chromium-driver");
        let chromium = installed(&["/usr/bin/chromium", "/usr/bin/chromium-browser"], "chromium");
        let profile = TempDir::new("chromium");
        let port = free_port();
        let driver = Process::start_with(
            &driver_binary,
            &[&format!("--port={port}")],
            profile.path().join("chromedriver.log"),
            Stdin::Null,
            &[("TZ", ZONE)],
        );
        wait_for("chromedriver", Duration::from_secs(20), || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
        // A minute for a script that waits (axe-core on a busy machine).
        let capabilities = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome", "timeouts": {"script": 60_000}, "goog:chromeOptions": {
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

    /// Runs `script` (a function body; `arguments` holds `args`, then the
    /// function to call with the result) and returns what it is called with.
    pub fn run_async(&self, script: &str, args: Value) -> Value {
        self.command("POST", "/execute/async", Some(json!({ "script": script, "args": args })))
    }

    /// What axe-core finds on the page as it is now, every rule it runs by
    /// default: one line per violation and per result it leaves for a
    /// person to review (incomplete), with its id, impact and help, then
    /// each element's selector and what fails. Panics when axe-core is not
    /// installed: tests/setup installs it.
    pub fn accessibility_findings(&self) -> Vec<String> {
        let loaded = self.run("return typeof window.axe === 'object';", json!([]));
        if loaded != Value::Bool(true) {
            let source = std::fs::read_to_string(AXE)
                .unwrap_or_else(|error| panic!("axe-core is not installed at {AXE} ({error}): run tests/setup, which installs it"));
            // The script itself, not eval: the console's content security
            // policy forbids eval, and WebDriver's scripts are not bound by it.
            self.run(&source, json!([]));
        }
        let found = self.run_async(
            "const done = arguments[arguments.length - 1];
             const finding = (kind) => (result) => ({
               kind, id: result.id, impact: result.impact, help: result.help,
               nodes: result.nodes.map((node) => `${node.target.join(' ')}: ${(node.failureSummary || '').replace(/\\s+/g, ' ')}`),
             });
             axe.run(document)
               .then((results) => done([...results.violations.map(finding('violation')), ...results.incomplete.map(finding('to review'))]))
               .catch((error) => done(`axe-core failed: ${error}`));",
            json!([]),
        );
        let findings = found.as_array().unwrap_or_else(|| panic!("{found}"));
        findings
            .iter()
            .map(|finding| {
                let nodes: Vec<&str> = finding["nodes"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
                format!(
                    "{} {} ({}): {}\n    {}",
                    finding["kind"].as_str().unwrap_or("?"),
                    finding["id"].as_str().unwrap_or("?"),
                    finding["impact"].as_str().unwrap_or("no impact given"),
                    finding["help"].as_str().unwrap_or("?"),
                    nodes.join("\n    ")
                )
            })
            .collect()
    }

    /// Asserts that axe-core finds nothing on the page, neither a violation
    /// nor a result to review (`view` names it in the failure, with every
    /// finding).
    pub fn assert_accessible(&self, view: &str) {
        let findings = self.accessibility_findings();
        assert!(findings.is_empty(), "axe-core finds {} thing(s) on {view}:\n{}", findings.len(), findings.join("\n"));
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
