//! What the lock screen asks of the desktop beyond its window: the extent
//! of every monitor (one window covers them all), and on X11 staying above
//! every other window and holding the keyboard while it covers the station.
//!
//! On Windows the window is topmost (`WS_EX_TOPMOST`, winit's always-on-top
//! level) and covers the virtual screen (GetSystemMetrics). On X11 the
//! window is override-redirect (no window manager places or stacks it), so
//! it raises itself on every ping and takes the keyboard's focus whenever
//! it covers the screen, and lets it go when it is the session's strip.

/// A rectangle of the desktop, in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Area {
    pub(crate) x: i32,
    pub(crate) y: i32,
    pub(crate) width: u32,
    pub(crate) height: u32,
}

/// The desktop the lock screen runs on.
pub(crate) struct Desktop {
    #[cfg(not(windows))]
    x11: Option<(x11rb::rust_connection::RustConnection, usize)>,
}

impl std::fmt::Debug for Desktop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Desktop").finish_non_exhaustive()
    }
}

/// Where no display server says otherwise.
const FALLBACK: Area = Area { x: 0, y: 0, width: 1920, height: 1080 };

#[cfg(not(windows))]
mod imp {
    use x11rb::connection::Connection;
    use x11rb::protocol::xproto::{ConfigureWindowAux, ConnectionExt, InputFocus, StackMode};
    use x11rb::{CURRENT_TIME, NONE};

    use super::{Area, Desktop, FALLBACK};

    impl Desktop {
        /// Connects to the X server of `$DISPLAY`, if there is one.
        pub(crate) fn open() -> Desktop {
            Desktop { x11: x11rb::connect(None).ok() }
        }

        /// The root window: every monitor.
        pub(crate) fn cover(&self) -> Area {
            let Some((connection, screen)) = &self.x11 else { return FALLBACK };
            let root = &connection.setup().roots[*screen];
            Area { x: 0, y: 0, width: u32::from(root.width_in_pixels), height: u32::from(root.height_in_pixels) }
        }

        /// Puts `window` above every other.
        pub(crate) fn raise(&self, window: u64) {
            let Some((connection, _)) = &self.x11 else { return };
            let Ok(window) = u32::try_from(window) else { return };
            let _ = connection.configure_window(window, &ConfigureWindowAux::new().stack_mode(StackMode::ABOVE));
            let _ = connection.flush();
        }

        /// When `hold`, gives `window` the keyboard; else lets it go to
        /// the window under the pointer. Not a grab: a grab made on this
        /// connection would take the keys from winit's own, and the window
        /// would get none. Keys the desktop itself takes (a window
        /// manager's shortcuts) are the desktop's to filter.
        pub(crate) fn hold_keyboard(&self, window: u64, hold: bool) {
            let Some((connection, _)) = &self.x11 else { return };
            let Ok(window) = u32::try_from(window) else { return };
            let _ = if hold {
                connection.set_input_focus(InputFocus::PARENT, window, CURRENT_TIME)
            } else {
                connection.set_input_focus(InputFocus::POINTER_ROOT, NONE, CURRENT_TIME)
            };
            let _ = connection.flush();
        }
    }
}

#[cfg(windows)]
mod imp {
    use super::{Area, Desktop, FALLBACK};

    impl Desktop {
        pub(crate) fn open() -> Desktop {
            Desktop {}
        }

        /// The virtual screen: every monitor.
        pub(crate) fn cover(&self) -> Area {
            let (x, y, width, height) = netbar_host::win32::virtual_screen();
            match (u32::try_from(width), u32::try_from(height)) {
                (Ok(width), Ok(height)) if width > 0 && height > 0 => Area { x, y, width, height },
                _ => FALLBACK,
            }
        }

        /// Topmost already (the window's level); nothing more to do.
        pub(crate) fn raise(&self, _window: u64) {}

        /// Windows gives the topmost window the keyboard when it is clicked
        /// or focused (`gain_focus`); nothing more to do.
        pub(crate) fn hold_keyboard(&self, _window: u64, _hold: bool) {}
    }
}
