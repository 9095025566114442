//! The lock screen itself: one window that covers every monitor while the
//! station is locked or evacuated, and shrinks to a strip in a corner while
//! a session runs.
//!
//! Nothing redraws on its own: the window changes when the collector says
//! something (a new screen, or a ping every 250 ms, which the clock and the
//! time left follow) or the customer types.

use std::net::SocketAddr;

use iced::widget::{Space, Text, button, column, container, row, text};
use iced::{Alignment, Background, Color, Element, Length, Point, Size, Subscription, Task, Theme, window};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use netbar_protocol::local::{FromScreen, Language, LoginAnswer, Look, Request, Screen, Shown, ToScreen};
use netbar_protocol::messages::NoticeLevel;
use tokio::sync::mpsc::UnboundedSender;

use crate::desktop::{Area, Desktop};
use crate::link::{self, Heard};
use crate::words::{self, Phrase};

/// The strip's size while a session runs, and with a notice open.
const STRIP: Size = Size::new(460.0, 64.0);
const STRIP_NOTICE: Size = Size::new(560.0, 230.0);
/// The strip's distance from the screen's top right corner.
const MARGIN: f32 = 12.0;

/// How the window is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// Covering every monitor.
    Cover,
    /// The session's strip.
    Strip,
    /// The strip, grown to show a notice.
    StripNotice,
}

/// What the customer's last request came to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Status {
    Idle,
    Checking,
    Answered(LoginAnswer),
}

/// A message to the lock screen.
#[derive(Debug, Clone)]
pub(crate) enum Message {
    Window(Option<window::Id>),
    RawId(u64),
    Link(Heard),
    /// Characters typed while locked.
    Typed(String),
    /// Backspace.
    Erase,
    Submit,
    Answer(LoginAnswer),
    Logout,
    Language(Language),
    /// F2: the next language offered.
    NextLanguage,
    Dismiss,
    FontLoaded,
}

/// The lock screen's state.
#[derive(Debug)]
pub(crate) struct App {
    address: SocketAddr,
    desktop: Desktop,
    cover: Area,
    window: Option<window::Id>,
    raw: Option<u64>,
    shape: Shape,
    link: Option<UnboundedSender<FromScreen>>,
    look: Option<Look>,
    screen: Screen,
    language: Option<Language>,
    ticket: String,
    status: Status,
    /// The notice the customer closed (by when it came).
    dismissed: Option<Timestamp>,
    zone: TimeZone,
    /// What was last written to standard error of what is shown.
    reported: String,
}

impl App {
    /// A locked screen that connects to the collector at `address`.
    pub(crate) fn new(desktop: Desktop, address: SocketAddr, language: Option<Language>) -> (App, Task<Message>) {
        let cover = desktop.cover();
        let app = App {
            address,
            desktop,
            cover,
            window: None,
            raw: None,
            shape: Shape::Cover,
            link: None,
            look: None,
            screen: Screen { locked: true, ..Screen::default() },
            language,
            ticket: String::new(),
            status: Status::Idle,
            dismissed: None,
            zone: TimeZone::try_system().unwrap_or(TimeZone::UTC),
            reported: String::new(),
        };
        (app, window::get_oldest().map(Message::Window))
    }

    /// The window settings to open with: covering every monitor, on top.
    pub(crate) fn window_settings(cover: Area) -> window::Settings {
        window::Settings {
            size: Size::new(cover.width as f32, cover.height as f32),
            position: window::Position::Specific(Point::new(cover.x as f32, cover.y as f32)),
            decorations: false,
            resizable: false,
            level: window::Level::AlwaysOnTop,
            exit_on_close_request: false,
            platform_specific: platform(),
            ..window::Settings::default()
        }
    }

    fn language(&self) -> Language {
        self.language.or_else(|| self.look.as_ref().and_then(|look| look.languages.first().copied())).unwrap_or(Language::En)
    }

    fn notice_open(&self) -> bool {
        self.screen.notice.as_ref().is_some_and(|notice| Some(notice.at) != self.dismissed)
    }

    fn wanted_shape(&self) -> Shape {
        if self.screen.evacuation.is_some() || self.screen.locked {
            Shape::Cover
        } else if self.notice_open() {
            Shape::StripNotice
        } else {
            Shape::Strip
        }
    }

    fn tell(&self, said: FromScreen) {
        if let Some(link) = &self.link {
            let _ = link.send(said);
        }
    }

    fn shown(&self) -> Shown {
        if self.screen.locked { Shown::Locked } else { Shown::Session }
    }

    /// Moves and sizes the window to the shape wanted; raises it while it covers.
    fn reshape(&mut self) -> Task<Message> {
        let shape = self.wanted_shape();
        let Some(id) = self.window else { return Task::none() };
        if let Some(raw) = self.raw {
            self.desktop.raise(raw);
        }
        if shape == self.shape {
            return Task::none();
        }
        if let Some(raw) = self.raw {
            self.desktop.hold_keyboard(raw, shape == Shape::Cover);
        }
        self.shape = shape;
        let (position, size) = match shape {
            Shape::Cover => {
                (Point::new(self.cover.x as f32, self.cover.y as f32), Size::new(self.cover.width as f32, self.cover.height as f32))
            }
            Shape::Strip | Shape::StripNotice => {
                let size = if shape == Shape::Strip { STRIP } else { STRIP_NOTICE };
                (Point::new(self.cover.x as f32 + self.cover.width as f32 - size.width - MARGIN, self.cover.y as f32 + MARGIN), size)
            }
        };
        let mut tasks = vec![window::resize(id, size), window::move_to(id, position), window::change_level(id, window::Level::AlwaysOnTop)];
        if shape == Shape::Cover {
            tasks.push(window::gain_focus(id));
        }
        Task::batch(tasks)
    }

    pub(crate) fn update(&mut self, message: Message) -> Task<Message> {
        // A ping changes nothing shown but the clock: no line to work out.
        let ping = matches!(message, Message::Link(Heard::Said(ToScreen::Ping(_))));
        let task = self.handle(message);
        if ping {
            return task;
        }
        // Each change of what the customer sees goes to standard error, in
        // words: for support, and for the tests, which cannot read pixels.
        let showing = self.showing();
        if showing != self.reported {
            eprintln!("netbar-lockscreen: showing {showing}");
            self.reported = showing;
        }
        task
    }

    /// What the customer sees, in a line.
    fn showing(&self) -> String {
        let language = self.language();
        let code = serde_json::to_value(language).ok().and_then(|code| code.as_str().map(str::to_owned)).unwrap_or_default();
        let now = Timestamp::now();
        if self.screen.evacuation.is_some() {
            return format!("evacuation [{code}]");
        }
        if self.screen.locked {
            let answer = match &self.status {
                _ if self.link.is_none() => words::phrase(language, Phrase::Connecting).to_owned(),
                Status::Answered(refused @ LoginAnswer::Refused { .. }) => words::refusal(language, refused, now, &self.zone),
                Status::Answered(LoginAnswer::Queued { .. }) => words::phrase(language, Phrase::Queued).to_owned(),
                Status::Answered(LoginAnswer::Error { error }) => error.clone(),
                Status::Checking => words::phrase(language, Phrase::Checking).to_owned(),
                Status::Idle | Status::Answered(_) => String::new(),
            };
            return format!("locked [{code}] {answer}").trim_end().to_owned();
        }
        match self.screen.notice.as_ref().filter(|_| self.notice_open()) {
            Some(notice) => {
                let body = notice.ends.map(|ends| words::ending(language, ends, now, &self.zone)).unwrap_or_else(|| notice.text.clone());
                format!("session [{code}] notice: {body}")
            }
            None => format!("session [{code}]"),
        }
    }

    fn handle(&mut self, message: Message) -> Task<Message> {
        match message {
            Message::Window(id) => {
                self.window = id;
                return match id {
                    Some(id) => window::get_raw_id::<Message>(id).map(Message::RawId),
                    None => Task::none(),
                };
            }
            Message::RawId(raw) => {
                self.raw = Some(raw);
                self.desktop.hold_keyboard(raw, self.shape == Shape::Cover);
            }
            Message::Link(Heard::Attached(link)) => self.link = Some(link),
            Message::Link(Heard::Lost(reason)) => {
                if self.link.take().is_some() {
                    eprintln!("netbar-lockscreen: lost the collector ({reason}); connecting again");
                }
            }
            Message::Link(Heard::Said(ToScreen::Ping(number))) => self.tell(FromScreen::Pong(number)),
            Message::Link(Heard::Said(ToScreen::Refused(reason))) => {
                eprintln!("netbar-lockscreen: {reason}");
                return iced::exit();
            }
            Message::Link(Heard::Said(ToScreen::Look(look))) => {
                let fonts: Vec<Task<Message>> = look
                    .fonts
                    .iter()
                    .filter_map(|path| match std::fs::read(path) {
                        Ok(bytes) => Some(iced::font::load(bytes).map(|_| Message::FontLoaded)),
                        Err(error) => {
                            eprintln!("netbar-lockscreen: cannot read the font {path}: {error}");
                            None
                        }
                    })
                    .collect();
                if self.language.is_some_and(|language| !look.languages.contains(&language)) {
                    self.language = None;
                }
                self.look = Some(look);
                return Task::batch(fonts);
            }
            Message::Link(Heard::Said(ToScreen::Screen(screen))) => {
                if screen.locked && !self.screen.locked {
                    // A new customer: the last one's language, ticket and answer go.
                    self.language = None;
                    self.ticket.clear();
                    self.status = Status::Idle;
                }
                if !screen.locked {
                    self.status = Status::Idle;
                }
                self.screen = screen;
                let reshaped = self.reshape();
                self.tell(FromScreen::Shown(self.shown()));
                return reshaped;
            }
            Message::Typed(typed) if self.screen.locked => {
                self.ticket.extend(typed.chars().filter(|c| !c.is_control()));
                self.ticket = self.ticket.chars().take(64).collect();
                if matches!(self.status, Status::Answered(_)) {
                    self.status = Status::Idle;
                }
            }
            Message::Erase if self.screen.locked => {
                self.ticket.pop();
            }
            Message::Typed(_) | Message::Erase => {}
            Message::Submit => {
                let ticket = self.ticket.trim().to_owned();
                if !self.screen.locked {
                    return Task::none();
                }
                if ticket.is_empty() || self.status == Status::Checking {
                    return Task::none();
                }
                self.status = Status::Checking;
                let request = Request { ticket: Some(ticket), ..Request::default() };
                return Task::perform(link::request(self.address, request), Message::Answer);
            }
            Message::Answer(answer) => {
                // Refused or in: the next try starts from an empty field.
                if matches!(answer, LoginAnswer::Unlocked { .. } | LoginAnswer::Refused { .. }) {
                    self.ticket.clear();
                }
                self.status = Status::Answered(answer);
            }
            Message::Logout => {
                self.status = Status::Checking;
                let request = Request { logout: true, ..Request::default() };
                return Task::perform(link::request(self.address, request), Message::Answer);
            }
            Message::Language(language) => self.language = Some(language),
            Message::NextLanguage => {
                let offered = self.look.as_ref().map(|look| look.languages.clone()).unwrap_or_default();
                let at = offered.iter().position(|language| *language == self.language()).map_or(0, |at| at + 1);
                self.language = offered.get(at % offered.len().max(1)).copied();
            }
            Message::Dismiss => {
                self.dismissed = self.screen.notice.as_ref().map(|notice| notice.at);
                return self.reshape();
            }
            Message::FontLoaded => {}
        }
        // Every ping comes here: stay above whatever was raised since (a
        // game's window).
        if let Some(raw) = self.raw {
            self.desktop.raise(raw);
        }
        Task::none()
    }

    pub(crate) fn subscription(&self) -> Subscription<Message> {
        // The keys: the ticket, Enter, Backspace; F2 switches the language.
        let keys = iced::event::listen_with(|event, _, _| {
            use iced::keyboard::{Event::KeyPressed, Key, key::Named};
            let iced::Event::Keyboard(KeyPressed { key, text, modifiers, .. }) = event else { return None };
            match key {
                Key::Named(Named::F2) => Some(Message::NextLanguage),
                Key::Named(Named::Enter) => Some(Message::Submit),
                Key::Named(Named::Backspace) => Some(Message::Erase),
                _ if modifiers.control() || modifiers.alt() || modifiers.logo() => None,
                _ => text.map(|text| Message::Typed(text.to_string())),
            }
        });
        Subscription::batch([link::subscription(self.address).map(Message::Link), keys])
    }

    pub(crate) fn view(&self) -> Element<'_, Message> {
        let now = Timestamp::now();
        if let Some(evacuation) = &self.screen.evacuation {
            return self.evacuation(&evacuation.text);
        }
        match self.shape {
            Shape::Cover if self.screen.locked => self.locked(now),
            // Told to show the session, not yet reshaped.
            Shape::Cover | Shape::Strip | Shape::StripNotice => self.strip(now),
        }
    }

    fn locked(&self, now: Timestamp) -> Element<'_, Message> {
        let language = self.language();
        let (venue, station) = match &self.look {
            Some(look) => (look.venue_name.clone(), words::station(language, look.station.as_str())),
            None => (String::new(), String::new()),
        };
        let clock = now.to_zoned(self.zone.clone()).strftime("%H:%M").to_string();
        let header = row![
            column![say(venue).size(40), say(station).size(26).color(MUTED)].spacing(6),
            Space::with_width(Length::Fill),
            say(clock).size(64),
        ]
        .align_y(Alignment::Center);
        // The field is drawn, not a text input: the keys come to the window
        // (see `subscription`), and there is no blinking cursor to redraw
        // the screen twice a second while nobody types.
        let caret = say("▏").size(30).color(MUTED);
        let typed = if self.ticket.is_empty() {
            row![caret, say("ABC-123").size(30).color(PLACEHOLDER)]
        } else {
            row![say(self.ticket.clone()).size(30), caret]
        };
        let field = container(typed.align_y(Alignment::Center)).padding([10, 14]).width(420).style(|_| container::Style {
            border: iced::Border { color: FIELD_BORDER, width: 1.5, radius: 4.0.into() },
            ..filled(FIELD, Color::WHITE)
        });
        let start = button(say(words::phrase(language, Phrase::Start)).size(26)).padding([12, 28]).on_press(Message::Submit);
        let answer = match &self.status {
            _ if self.link.is_none() => say(words::phrase(language, Phrase::Connecting)).size(22).color(MUTED),
            Status::Idle => say("").size(22),
            Status::Checking => say(words::phrase(language, Phrase::Checking)).size(22).color(MUTED),
            Status::Answered(refused @ LoginAnswer::Refused { .. }) => {
                say(words::refusal(language, refused, now, &self.zone)).size(26).color(WARNING)
            }
            Status::Answered(LoginAnswer::Queued { .. }) => say(words::phrase(language, Phrase::Queued)).size(22).color(WARNING),
            Status::Answered(LoginAnswer::Error { error }) => say(error.clone()).size(20).color(WARNING),
            Status::Answered(_) => say("").size(22),
        };
        let middle = column![
            say(words::phrase(language, Phrase::Prompt)).size(34),
            row![field, start].spacing(16).align_y(Alignment::Center),
            container(answer).width(760).center_x(760),
        ]
        .spacing(28)
        .align_x(Alignment::Center);
        let page = column![
            header,
            container(middle).center(Length::Fill),
            row![Space::with_width(Length::Fill), self.languages()].align_y(Alignment::Center),
        ]
        .padding(48);
        container(page).width(Length::Fill).height(Length::Fill).style(|_| filled(LOCKED, Color::WHITE)).into()
    }

    fn languages(&self) -> Element<'_, Message> {
        let offered = self.look.as_ref().map(|look| look.languages.clone()).unwrap_or_default();
        let chosen = self.language();
        let buttons = offered.into_iter().map(|language| {
            let label = say(language.own_name()).size(20);
            let choice = button(label).padding([8, 16]).on_press(Message::Language(language));
            if language == chosen { choice.style(button::primary) } else { choice.style(button::secondary) }.into()
        });
        row(buttons).spacing(10).into()
    }

    fn strip(&self, now: Timestamp) -> Element<'_, Message> {
        let language = self.language();
        let left = match self.screen.session.as_ref().and_then(|session| session.until) {
            Some(until) => words::time_left(language, until, now),
            None => words::phrase(language, Phrase::InSession).to_owned(),
        };
        let station = self.look.as_ref().map(|look| words::station(language, look.station.as_str())).unwrap_or_default();
        let clock = now.to_zoned(self.zone.clone()).strftime("%H:%M").to_string();
        let logout = if self.status == Status::Checking {
            words::phrase(language, Phrase::LoggingOut)
        } else {
            words::phrase(language, Phrase::Logout)
        };
        let bar = row![
            say(station).size(16).color(MUTED),
            say(left).size(24),
            Space::with_width(Length::Fill),
            say(clock).size(16).color(MUTED),
            button(say(logout).size(18)).padding([6, 14]).style(button::danger).on_press(Message::Logout),
        ]
        .spacing(14)
        .align_y(Alignment::Center);
        let mut content = column![bar].spacing(12);
        if let Some(notice) = self.screen.notice.as_ref().filter(|_| self.notice_open()) {
            let heading = match notice.level {
                NoticeLevel::Warning => words::phrase(language, Phrase::Reminder),
                NoticeLevel::Info | NoticeLevel::Evacuation => words::phrase(language, Phrase::FromDesk),
            };
            let body = match notice.ends {
                Some(ends) => words::ending(language, ends, now, &self.zone),
                None => notice.text.clone(),
            };
            let tone = if notice.level == NoticeLevel::Warning { WARNING } else { Color::WHITE };
            content = content.push(say(heading).size(20).color(tone)).push(say(body).size(20)).push(row![
                Space::with_width(Length::Fill),
                button(say(words::phrase(language, Phrase::Ok)).size(18)).padding([6, 18]).on_press(Message::Dismiss)
            ]);
        }
        container(content).padding([10, 16]).width(Length::Fill).height(Length::Fill).style(|_| filled(STRIP_COLOR, Color::WHITE)).into()
    }

    /// Red, in every language the venue offers, with the way out.
    fn evacuation(&self, agent_text: &str) -> Element<'_, Message> {
        let languages =
            self.look.as_ref().map(|look| look.languages.clone()).filter(|languages| !languages.is_empty()).unwrap_or(vec![Language::En]);
        let mut blocks = column![].spacing(30).align_x(Alignment::Center);
        for language in languages {
            let exit = self
                .look
                .as_ref()
                .and_then(|look| look.exits.get(&language).cloned())
                .unwrap_or_else(|| words::phrase(language, Phrase::NearestExit).to_owned());
            blocks = blocks.push(
                column![
                    say(words::phrase(language, Phrase::Evacuate)).size(72),
                    say(words::phrase(language, Phrase::EvacuateBody)).size(30),
                    say(exit).size(36),
                ]
                .spacing(10)
                .align_x(Alignment::Center),
            );
        }
        blocks = blocks.push(say(agent_text.to_owned()).size(20));
        container(blocks).center(Length::Fill).padding(40).style(|_| filled(EVACUATION, Color::WHITE)).into()
    }

    pub(crate) fn theme(&self) -> Theme {
        Theme::Dark
    }
}

const LOCKED: Color = Color::from_rgb(0.07, 0.09, 0.13);
const STRIP_COLOR: Color = Color::from_rgb(0.12, 0.14, 0.19);
const EVACUATION: Color = Color::from_rgb(0.78, 0.0, 0.0);
const MUTED: Color = Color::from_rgb(0.65, 0.68, 0.74);
const WARNING: Color = Color::from_rgb(1.0, 0.76, 0.2);
const FIELD: Color = Color::from_rgb(0.13, 0.14, 0.17);
const FIELD_BORDER: Color = Color::from_rgb(0.23, 0.35, 0.85);
const PLACEHOLDER: Color = Color::from_rgb(0.42, 0.45, 0.5);

/// Text shaped with every font the system has: a phrase in Chinese or
/// Korean falls back to a CJK font where the default font has no glyphs.
fn say<'a>(content: impl text::IntoFragment<'a>) -> Text<'a> {
    text(content).shaping(text::Shaping::Advanced)
}

fn filled(background: Color, text_color: Color) -> container::Style {
    container::Style { background: Some(Background::Color(background)), text_color: Some(text_color), ..container::Style::default() }
}

#[cfg(not(windows))]
fn platform() -> window::settings::PlatformSpecific {
    // No window manager places, decorates or stacks it: the lock screen
    // raises itself and holds the keyboard (see `desktop`).
    window::settings::PlatformSpecific { application_id: "netbar-lockscreen".into(), override_redirect: true }
}

#[cfg(windows)]
fn platform() -> window::settings::PlatformSpecific {
    window::settings::PlatformSpecific { skip_taskbar: true, ..window::settings::PlatformSpecific::default() }
}
