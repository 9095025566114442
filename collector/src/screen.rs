//! The customer's lock screen, as the collector sees it: what it must show,
//! whether one is attached and answering, and what happens when it is not.
//!
//! A lock screen attaches over the local interface ([`watch`]) and is sent
//! the [`Look`] and every [`Screen`]; it answers a ping every
//! [`PING_EVERY`] from its event loop. When its connection ends or a ping
//! goes unanswered for `lock_screen.hung_after`, the [`Screens`] lock the
//! station with the operating system's own lock at once (`actions.lock`),
//! report the tamper to the station, end a hung lock screen this collector
//! started, and start it again (`lock_screen.program`). When a lock screen
//! is back and shows what it must, the operating system's lock is lifted
//! (`actions.unlock`) so the customer can type a ticket, or play on.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use netbar_protocol::local::{FromScreen, Look, Screen, Shown, ToScreen};
use netbar_protocol::messages::TamperKind;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::actions;
use crate::config::Actions;

/// How often an attached lock screen is pinged.
pub(crate) const PING_EVERY: Duration = Duration::from_millis(250);
/// Longest line a lock screen may send.
const MAX_LINE: u64 = 4096;

/// Something the station must report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Gone {
    pub(crate) what: TamperKind,
    pub(crate) detail: String,
}

#[derive(Debug, Default)]
struct State {
    /// An attachment is open (a second one is refused).
    attached: bool,
    /// The operating system's lock was put on because the lock screen went.
    os_locked: bool,
    /// The process this collector started, if any.
    child: Option<u32>,
}

/// The lock screens of this station: the one attached, the one to start.
#[derive(Debug)]
pub(crate) struct Screens {
    look: Look,
    screen: watch::Sender<Screen>,
    shown: watch::Sender<Option<Shown>>,
    state: Mutex<State>,
    actions: Actions,
    hung_after: Duration,
    gone: mpsc::Sender<Gone>,
}

impl Screens {
    /// The lock screens of a station with `look`; what goes wrong is sent to `gone`.
    pub(crate) fn new(look: Look, actions: Actions, hung_after: Duration, locked: bool, gone: mpsc::Sender<Gone>) -> Arc<Screens> {
        let screen = Screen { locked, ..Screen::default() };
        Arc::new(Screens {
            look,
            screen: watch::Sender::new(screen),
            shown: watch::Sender::new(None),
            state: Mutex::new(State::default()),
            actions,
            hung_after,
            gone,
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Changes what the lock screen must show.
    pub(crate) fn update(&self, change: impl FnOnce(&mut Screen)) {
        self.screen.send_if_modified(|screen| {
            let before = screen.clone();
            change(screen);
            *screen != before
        });
    }

    /// What the attached lock screen shows; `None` when none is attached.
    pub(crate) fn shown(&self) -> Option<Shown> {
        *self.shown.borrow()
    }

    /// Shows `locked` (the whole screen) or the session's strip, and waits
    /// until the attached lock screen says it does. `false` when none is
    /// attached or it did not within `wait`.
    pub(crate) async fn show(&self, locked: bool, wait: Duration) -> bool {
        if self.shown().is_none() {
            return false;
        }
        let mut shown = self.shown.subscribe();
        self.update(|screen| screen.locked = locked);
        let want = if locked { Shown::Locked } else { Shown::Session };
        tokio::time::timeout(wait, shown.wait_for(|shown| *shown == Some(want))).await.is_ok_and(|seen| seen.is_ok())
    }

    /// Takes the lock screen this collector started, to end it if it hangs.
    pub(crate) fn started(&self, pid: Option<u32>) {
        self.state().child = pid;
    }

    /// The lock screen went: the operating system locks the station now,
    /// the station reports it, a hung process of ours is ended.
    async fn lost(&self, gone: Gone) {
        tracing::warn!(what = ?gone.what, detail = %gone.detail, "the lock screen went; locking the station with the operating system's lock");
        let child = {
            let mut state = self.state();
            state.os_locked = true;
            state.child.filter(|_| gone.what == TamperKind::LockScreenHung)
        };
        let locking = actions::run(&self.actions.lock, "", "");
        if let Some(pid) = child {
            end_process(pid).await;
        }
        if let Err(error) = locking.await {
            tracing::error!(%error, "cannot lock the station with the operating system's lock");
        }
        let _ = self.gone.send(gone).await;
    }

    /// A lock screen shows what it must again: the operating system's lock
    /// comes off, so the customer can use it.
    async fn back(&self) {
        if !std::mem::take(&mut self.state().os_locked) {
            return;
        }
        tracing::info!("the lock screen is back; lifting the operating system's lock");
        if !self.actions.unlock.is_empty()
            && let Err(error) = actions::run(&self.actions.unlock, "", "").await
        {
            tracing::warn!(%error, "cannot lift the operating system's lock");
        }
    }
}

/// Ends a process this collector started.
async fn end_process(pid: u32) {
    let argv: Vec<String> = if cfg!(windows) {
        vec!["taskkill".into(), "/F".into(), "/PID".into(), pid.to_string()]
    } else {
        vec!["kill".into(), "-KILL".into(), pid.to_string()]
    };
    if let Err(error) = actions::run(&argv, "", "").await {
        tracing::warn!(pid, %error, "cannot end the hung lock screen");
    }
}

/// Serves an attached lock screen on `stream` (its first line read) until it goes.
pub(crate) async fn watch(stream: BufReader<TcpStream>, screens: Arc<Screens>) {
    let (read, mut write) = tokio::io::split(stream);
    if std::mem::replace(&mut screens.state().attached, true) {
        let refusal = ToScreen::Refused("another lock screen is attached".into());
        let _ = write.write_all(line(&refusal).as_bytes()).await;
        return;
    }
    tracing::info!("lock screen attached");
    let (lines, heard) = mpsc::channel(16);
    let reader = tokio::spawn(read_lines(read, lines));
    let gone = attached(heard, &mut write, &screens).await;
    reader.abort();
    screens.shown.send_replace(None);
    screens.state().attached = false;
    screens.lost(gone).await;
}

fn line(message: &ToScreen) -> String {
    let mut text = serde_json::to_string(message).unwrap_or_default();
    text.push('\n');
    text
}

/// Reads what the lock screen says, a line at a time, until it ends: then
/// the reason it ended.
async fn read_lines(read: ReadHalf<BufReader<TcpStream>>, lines: mpsc::Sender<Result<FromScreen, String>>) {
    let mut read = BufReader::new(read);
    let mut text = String::new();
    loop {
        text.clear();
        let ended = match (&mut read).take(MAX_LINE).read_line(&mut text).await {
            Ok(0) => Some("its connection closed (the program ended or was killed)".to_owned()),
            Err(error) => Some(format!("its connection failed: {error}")),
            Ok(_) if !text.ends_with('\n') => Some("it sent a line too long".to_owned()),
            Ok(_) => None,
        };
        let heard = match ended {
            Some(reason) => Err(reason),
            None => match serde_json::from_str::<FromScreen>(text.trim()) {
                Ok(said) => Ok(said),
                Err(error) => {
                    tracing::warn!(%error, "the lock screen sent a line that is not understood");
                    continue;
                }
            },
        };
        let last = heard.is_err();
        if lines.send(heard).await.is_err() || last {
            return;
        }
    }
}

/// The conversation with an attached lock screen; returns how it ended.
async fn attached(
    mut heard: mpsc::Receiver<Result<FromScreen, String>>,
    write: &mut WriteHalf<BufReader<TcpStream>>,
    screens: &Screens,
) -> Gone {
    let stopped = |detail: String| Gone { what: TamperKind::LockScreenStopped, detail };
    let mut wanted = screens.screen.subscribe();
    let first = format!("{}{}", line(&ToScreen::Look(screens.look.clone())), line(&ToScreen::Screen(wanted.borrow_and_update().clone())));
    if let Err(error) = write.write_all(first.as_bytes()).await {
        return stopped(format!("its connection failed: {error}"));
    }
    let mut ping = tokio::time::interval(PING_EVERY);
    let (mut sent, mut answered, mut answered_at) = (0u64, 0u64, Instant::now());
    loop {
        tokio::select! {
            said = heard.recv() => match said {
                None => return stopped("its connection closed".into()),
                Some(Err(reason)) => return stopped(reason),
                Some(Ok(FromScreen::Pong(number))) => {
                    if number <= sent && number > answered {
                        answered = number;
                        answered_at = Instant::now();
                    }
                }
                Some(Ok(FromScreen::Shown(shown))) => {
                    if screens.shown.send_replace(Some(shown)).is_none() {
                        screens.back().await;
                    }
                }
            },
            changed = wanted.changed() => {
                if changed.is_err() {
                    return stopped("the collector is stopping".into());
                }
                let screen = wanted.borrow_and_update().clone();
                if let Err(error) = write.write_all(line(&ToScreen::Screen(screen)).as_bytes()).await {
                    return stopped(format!("its connection failed: {error}"));
                }
            }
            _ = ping.tick() => {
                if answered < sent && answered_at.elapsed() > screens.hung_after {
                    let silent = answered_at.elapsed().as_millis();
                    return Gone { what: TamperKind::LockScreenHung, detail: format!("no answer to its pings for {silent} ms") };
                }
                if answered == sent {
                    answered_at = Instant::now();
                }
                sent += 1;
                if let Err(error) = write.write_all(line(&ToScreen::Ping(sent)).as_bytes()).await {
                    return stopped(format!("its connection failed: {error}"));
                }
            }
        }
    }
}

/// Starts `program` in the customer's session and starts it again whenever
/// it ends, while no other lock screen is attached.
pub(crate) async fn keep_running(program: Vec<String>, screens: Arc<Screens>) {
    let mut backoff = netbar_host::transport::Backoff::new(Duration::from_secs(10));
    loop {
        // One attached from elsewhere (the desktop's autostart) is left be.
        while screens.state().attached {
            tokio::time::sleep(PING_EVERY).await;
        }
        let started = Instant::now();
        match netbar_host::session::spawn(&program) {
            Err(error) => tracing::error!(program = ?program, %error, "cannot start the lock screen"),
            Ok(child) => {
                tracing::info!(pid = child.id(), "lock screen started");
                screens.started(Some(child.id()));
                let status = tokio::task::spawn_blocking(move || child.wait()).await;
                screens.started(None);
                match status {
                    Ok(Ok(status)) => tracing::warn!(%status, "the lock screen ended"),
                    Ok(Err(error)) => tracing::warn!(%error, "cannot wait for the lock screen"),
                    Err(error) => tracing::warn!(%error, "cannot wait for the lock screen"),
                }
            }
        }
        if started.elapsed() > Duration::from_secs(30) {
            backoff.reset();
        }
        tokio::time::sleep(backoff.next_wait()).await;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use netbar_protocol::local::{Language, Request};
    use tokio::net::TcpListener;

    use super::*;

    /// The lock and unlock programs append a word to `marks`.
    fn screens(marks: &std::path::Path, hung_after: Duration) -> (Arc<Screens>, mpsc::Receiver<Gone>) {
        // cmd.exe does not read the C runtime's quoting: the path goes bare
        // there (a temporary folder has no spaces).
        let append = |word: &str| {
            if cfg!(windows) {
                vec!["cmd".into(), "/C".into(), format!("echo {word}>> {}", marks.display())]
            } else {
                vec!["sh".into(), "-c".into(), format!("echo {word} >> \"{}\"", marks.display())]
            }
        };
        let actions = Actions { lock: append("locked"), unlock: append("unlocked"), ..Actions::default() };
        let look = Look {
            venue_name: "v".into(),
            station: "st-1".parse().unwrap(),
            languages: vec![Language::Zh],
            exits: BTreeMap::new(),
            fonts: vec![],
        };
        let (gone, lost) = mpsc::channel(4);
        (Screens::new(look, actions, hung_after, true, gone), lost)
    }

    /// A collector's listener that hands every watcher to `screens`.
    async fn serve(screens: Arc<Screens>) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let mut reader = BufReader::new(stream);
                let mut line = String::new();
                reader.read_line(&mut line).await.unwrap();
                assert_eq!(serde_json::from_str::<Request>(&line).unwrap(), Request { watch: true, ..Request::default() });
                tokio::spawn(watch(reader, screens.clone()));
            }
        });
        address
    }

    /// A lock screen: attaches, and answers pings while `answering`.
    struct Fake {
        lines: tokio::io::Lines<BufReader<tokio::net::tcp::OwnedReadHalf>>,
        write: tokio::net::tcp::OwnedWriteHalf,
    }

    impl Fake {
        async fn attach(address: std::net::SocketAddr) -> Fake {
            let stream = TcpStream::connect(address).await.unwrap();
            let (read, mut write) = stream.into_split();
            write.write_all(b"{\"watch\":true}\n").await.unwrap();
            Fake { lines: BufReader::new(read).lines(), write }
        }

        async fn next(&mut self) -> Option<ToScreen> {
            let line = self.lines.next_line().await.ok()??;
            Some(serde_json::from_str(&line).unwrap())
        }

        async fn say(&mut self, said: FromScreen) {
            self.write.write_all(format!("{}\n", serde_json::to_string(&said).unwrap()).as_bytes()).await.unwrap();
        }

        /// Answers pings and shows what it is told until `until` holds of a screen.
        async fn serve_until(&mut self, until: impl Fn(&Screen) -> bool) {
            loop {
                match self.next().await.expect("the collector keeps the line") {
                    ToScreen::Ping(number) => self.say(FromScreen::Pong(number)).await,
                    ToScreen::Screen(screen) => {
                        let shown = if screen.locked { Shown::Locked } else { Shown::Session };
                        self.say(FromScreen::Shown(shown)).await;
                        if until(&screen) {
                            return;
                        }
                    }
                    ToScreen::Look(_) | ToScreen::Refused(_) => {}
                }
            }
        }
    }

    fn marks(path: &std::path::Path) -> String {
        std::fs::read_to_string(path).unwrap_or_default().split_whitespace().collect::<Vec<_>>().join(" ")
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_lock_screen_shows_what_it_is_told_and_a_second_is_refused() {
        let dir = std::env::temp_dir().join(format!("netbar-screen-shows-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (screens, _lost) = screens(&dir.join("marks"), Duration::from_secs(5));
        let address = serve(screens.clone()).await;
        let mut fake = Fake::attach(address).await;
        assert!(matches!(fake.next().await, Some(ToScreen::Look(look)) if look.station.as_str() == "st-1"));
        fake.serve_until(|screen| screen.locked).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while screens.shown() != Some(Shown::Locked) {
            assert!(Instant::now() < deadline, "the lock screen's word never reached the collector");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // An unlock is done once the lock screen shows the session.
        let showing = screens.clone();
        let shown = tokio::spawn(async move { showing.show(false, Duration::from_secs(5)).await });
        fake.serve_until(|screen| !screen.locked).await;
        assert!(shown.await.unwrap());
        assert_eq!(screens.shown(), Some(Shown::Session));
        // Another one is refused while this one is attached.
        let mut second = Fake::attach(address).await;
        assert!(matches!(second.next().await, Some(ToScreen::Refused(_))));
        assert_eq!(second.next().await, None);
        assert_eq!(marks(&dir.join("marks")), "", "nothing went to the operating system");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_lock_screen_killed_or_hung_locks_the_station_and_is_reported() {
        let dir = std::env::temp_dir().join(format!("netbar-screen-gone-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let marks_file = dir.join("marks");
        let (screens, mut lost) = screens(&marks_file, Duration::from_millis(600));
        let address = serve(screens.clone()).await;

        // Killed: its connection ends.
        let mut fake = Fake::attach(address).await;
        fake.serve_until(|screen| screen.locked).await;
        drop(fake);
        let gone = tokio::time::timeout(Duration::from_secs(10), lost.recv()).await.unwrap().unwrap();
        assert_eq!(gone.what, TamperKind::LockScreenStopped, "{gone:?}");
        assert_eq!(marks(&marks_file), "locked");
        assert_eq!(screens.shown(), None);
        // Back: once it shows what it must, the operating system's lock comes off.
        let mut fake = Fake::attach(address).await;
        fake.serve_until(|screen| screen.locked).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while marks(&marks_file) != "locked unlocked" {
            assert!(Instant::now() < deadline, "{}", marks(&marks_file));
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }

        // Hung: attached, but the pings go unanswered.
        let started = Instant::now();
        let gone = tokio::time::timeout(Duration::from_secs(10), lost.recv()).await.unwrap().unwrap();
        assert_eq!(gone.what, TamperKind::LockScreenHung, "{gone:?}");
        assert!(gone.detail.contains("no answer to its pings"), "{gone:?}");
        assert!(started.elapsed() >= Duration::from_millis(600));
        assert_eq!(marks(&marks_file), "locked unlocked locked");
        drop(fake);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
