//! The Windows calls no maintained crate wraps, each behind a safe function:
//! the event log, the CPU's busy and idle time, the users' sessions and
//! their input idle time, starting a program in the console session, the
//! screen's extent. The one module of the project allowed unsafe
//! code; every block says what makes it sound.
#![allow(unsafe_code, reason = "Win32 calls through windows-sys; each block is commented")]

use std::time::Duration;

use windows_sys::Win32::Foundation::{CloseHandle, ERROR_ACCESS_DENIED, ERROR_PRIVILEGE_NOT_HELD, FILETIME, HANDLE, WAIT_OBJECT_0};
use windows_sys::Win32::System::EventLog::{DeregisterEventSource, EVENTLOG_ERROR_TYPE, RegisterEventSourceW, ReportEventW};
use windows_sys::Win32::System::RemoteDesktop::{
    ProcessIdToSessionId, WTS_CURRENT_SERVER_HANDLE, WTS_SESSION_INFOW, WTSActive, WTSEnumerateSessionsW, WTSFreeMemory,
    WTSGetActiveConsoleSessionId, WTSINFOW, WTSQuerySessionInformationW, WTSQueryUserToken, WTSSessionInfo,
};
use windows_sys::Win32::System::SystemInformation::GetTickCount;
use windows_sys::Win32::System::Threading::{
    CreateProcessAsUserW, GetCurrentProcessId, GetExitCodeProcess, GetSystemTimes, INFINITE, PROCESS_INFORMATION, STARTUPINFOW,
    WaitForSingleObject,
};
use windows_sys::Win32::UI::Input::KeyboardAndMouse::{GetLastInputInfo, LASTINPUTINFO};
use windows_sys::Win32::UI::WindowsAndMessaging::{
    GetSystemMetrics, SM_CXVIRTUALSCREEN, SM_CYVIRTUALSCREEN, SM_XVIRTUALSCREEN, SM_YVIRTUALSCREEN,
};

/// `text` as a NUL-terminated UTF-16 string.
fn wide(text: &str) -> Vec<u16> {
    text.encode_utf16().chain(std::iter::once(0)).collect()
}

/// Writes `text` as an error to the Application event log under `source`.
pub fn report_error(source: &str, text: &str) -> std::io::Result<()> {
    let source = wide(source);
    let text = wide(text);
    // SAFETY: `source` is a NUL-terminated UTF-16 string that outlives the
    // call; a null server name means this computer.
    let log = unsafe { RegisterEventSourceW(std::ptr::null(), source.as_ptr()) };
    if log.is_null() {
        return Err(std::io::Error::last_os_error());
    }
    let strings = [text.as_ptr()];
    // SAFETY: `log` is the open handle from above; `strings` holds one
    // pointer to a NUL-terminated string, both alive for the call; no SID
    // and no raw data.
    let written = unsafe { ReportEventW(log, EVENTLOG_ERROR_TYPE, 0, 1, std::ptr::null_mut(), 1, 0, strings.as_ptr(), std::ptr::null()) };
    let outcome = if written == 0 { Err(std::io::Error::last_os_error()) } else { Ok(()) };
    // SAFETY: `log` was opened above and is closed once.
    unsafe { DeregisterEventSource(log) };
    outcome
}

/// The time all processors spent idle and busy since boot, in 100 ns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuTimes {
    pub idle: u64,
    /// Kernel time, which includes idle time, plus user time.
    pub total: u64,
}

impl CpuTimes {
    /// The share of `earlier..self` the processors were busy, in percent.
    pub fn busy_percent_since(&self, earlier: &CpuTimes) -> f64 {
        let total = self.total.saturating_sub(earlier.total);
        let idle = self.idle.saturating_sub(earlier.idle).min(total);
        if total == 0 { 0.0 } else { (total - idle) as f64 * 100.0 / total as f64 }
    }
}

/// The processors' times now.
pub fn cpu_times() -> std::io::Result<CpuTimes> {
    let zero = FILETIME { dwLowDateTime: 0, dwHighDateTime: 0 };
    let (mut idle, mut kernel, mut user) = (zero, zero, zero);
    // SAFETY: three valid FILETIME out-pointers, alive for the call.
    if unsafe { GetSystemTimes(&mut idle, &mut kernel, &mut user) } == 0 {
        return Err(std::io::Error::last_os_error());
    }
    let value = |time: FILETIME| (u64::from(time.dwHighDateTime) << 32) | u64::from(time.dwLowDateTime);
    Ok(CpuTimes { idle: value(idle), total: value(kernel).saturating_add(value(user)) })
}

/// The interactive sessions: the console or remote sessions a user is
/// logged on to and using.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sessions {
    /// Active sessions with a user logged on.
    pub active: u32,
    /// Time since the last keyboard or mouse input in the session at the
    /// console, when Windows tells it.
    pub input_idle: Option<Duration>,
}

/// Reads the sessions (WTSEnumerateSessions) and the console session's
/// input idle time: GetLastInputInfo when this process runs in that session,
/// else the session's last input time as Remote Desktop Services keeps it
/// (not every Windows edition does for the console).
pub fn sessions() -> std::io::Result<Sessions> {
    let mut list: *mut WTS_SESSION_INFOW = std::ptr::null_mut();
    let mut count = 0u32;
    // SAFETY: valid out-pointers; on success the list is ours to free.
    if unsafe { WTSEnumerateSessionsW(WTS_CURRENT_SERVER_HANDLE, 0, 1, &mut list, &mut count) } == 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut active = 0;
    if !list.is_null() {
        // SAFETY: the call returned `count` entries at `list`.
        let entries = unsafe { std::slice::from_raw_parts(list, count as usize) };
        active = entries
            .iter()
            .filter(|entry| entry.State == WTSActive && session_info(entry.SessionId).is_some_and(|info| info.UserName[0] != 0))
            .count();
        // SAFETY: `list` came from WTSEnumerateSessionsW and is freed once;
        // `entries` is not used after this.
        unsafe { WTSFreeMemory(list.cast()) };
    }
    Ok(Sessions { active: u32::try_from(active).unwrap_or(u32::MAX), input_idle: console_idle() })
}

/// A session's WTSINFO.
fn session_info(session: u32) -> Option<WTSINFOW> {
    let mut buffer: windows_sys::core::PWSTR = std::ptr::null_mut();
    let mut bytes = 0u32;
    // SAFETY: valid out-pointers; on success the buffer is ours to free.
    if unsafe { WTSQuerySessionInformationW(WTS_CURRENT_SERVER_HANDLE, session, WTSSessionInfo, &mut buffer, &mut bytes) } == 0
        || buffer.is_null()
    {
        return None;
    }
    // SAFETY: for WTSSessionInfo the buffer holds one WTSINFOW (checked by
    // size); read unaligned since the API promises no alignment, then freed.
    let info = (bytes as usize >= std::mem::size_of::<WTSINFOW>()).then(|| unsafe { buffer.cast::<WTSINFOW>().read_unaligned() });
    // SAFETY: `buffer` came from WTSQuerySessionInformationW and is freed once.
    unsafe { WTSFreeMemory(buffer.cast()) };
    info
}

fn console_idle() -> Option<Duration> {
    // SAFETY: no arguments.
    let console = unsafe { WTSGetActiveConsoleSessionId() };
    let mut own = u32::MAX;
    // SAFETY: a valid out-pointer for this process's own id.
    let known = unsafe { ProcessIdToSessionId(GetCurrentProcessId(), &mut own) } != 0;
    if known && own == console {
        let mut last = LASTINPUTINFO { cbSize: std::mem::size_of::<LASTINPUTINFO>() as u32, dwTime: 0 };
        // SAFETY: `last` is a valid LASTINPUTINFO with its size set.
        if unsafe { GetLastInputInfo(&mut last) } != 0 {
            // SAFETY: no arguments. Both are milliseconds since boot, wrapping together.
            let now = unsafe { GetTickCount() };
            return Some(Duration::from_millis(u64::from(now.wrapping_sub(last.dwTime))));
        }
    }
    let info = session_info(console)?;
    (info.LastInputTime > 0 && info.CurrentTime >= info.LastInputTime)
        .then(|| Duration::from_nanos(u64::try_from(info.CurrentTime - info.LastInputTime).unwrap_or(0).saturating_mul(100)))
}

/// A process started in the console session, by its handle.
#[derive(Debug)]
pub struct ConsoleProcess {
    handle: HANDLE,
    pid: u32,
}

// SAFETY: a process handle may be used and closed from any thread.
unsafe impl Send for ConsoleProcess {}

impl ConsoleProcess {
    /// The process id.
    pub fn id(&self) -> u32 {
        self.pid
    }

    /// Waits for the process to end; its exit code.
    pub fn wait(&self) -> std::io::Result<u32> {
        // SAFETY: `handle` is a process handle this value owns.
        if unsafe { WaitForSingleObject(self.handle, INFINITE) } != WAIT_OBJECT_0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut code = 0u32;
        // SAFETY: as above, with a valid out-pointer.
        if unsafe { GetExitCodeProcess(self.handle, &mut code) } == 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(code)
    }
}

impl Drop for ConsoleProcess {
    fn drop(&mut self) {
        // SAFETY: the handle is owned and closed once.
        unsafe { CloseHandle(self.handle) };
    }
}

/// Starts `command_line` in the active console session, on its desktop, as
/// the user logged on there: what a service (session 0, no desktop) must do
/// to put a window in front of the customer. `Ok(None)` when this process
/// may not (it is not a service running as LocalSystem): the caller starts
/// the program as itself.
pub fn spawn_in_console(command_line: &str) -> std::io::Result<Option<ConsoleProcess>> {
    // SAFETY: no arguments.
    let session = unsafe { WTSGetActiveConsoleSessionId() };
    let mut token: HANDLE = std::ptr::null_mut();
    // SAFETY: a valid out-pointer; on success the token is ours to close.
    if unsafe { WTSQueryUserToken(session, &mut token) } == 0 {
        let error = std::io::Error::last_os_error();
        return match error.raw_os_error().and_then(|code| u32::try_from(code).ok()) {
            Some(ERROR_PRIVILEGE_NOT_HELD | ERROR_ACCESS_DENIED) => Ok(None),
            _ => Err(error),
        };
    }
    let mut command = wide(command_line);
    let mut desktop = wide("winsta0\\default");
    // SAFETY: zeroed STARTUPINFOW and PROCESS_INFORMATION are valid empty values.
    let mut startup: STARTUPINFOW = unsafe { std::mem::zeroed() };
    startup.cb = std::mem::size_of::<STARTUPINFOW>() as u32;
    startup.lpDesktop = desktop.as_mut_ptr();
    // SAFETY: as above.
    let mut process: PROCESS_INFORMATION = unsafe { std::mem::zeroed() };
    // SAFETY: `token` is a primary token from WTSQueryUserToken; `command`
    // is a mutable NUL-terminated buffer as the call requires; `startup`
    // and `process` are valid and outlive the call; null means defaults.
    let created = unsafe {
        CreateProcessAsUserW(
            token,
            std::ptr::null(),
            command.as_mut_ptr(),
            std::ptr::null(),
            std::ptr::null(),
            0,
            0,
            std::ptr::null(),
            std::ptr::null(),
            &startup,
            &mut process,
        )
    };
    let error = std::io::Error::last_os_error();
    // SAFETY: the token is ours and closed once.
    unsafe { CloseHandle(token) };
    if created == 0 {
        return Err(error);
    }
    // SAFETY: the thread handle is ours and not needed.
    unsafe { CloseHandle(process.hThread) };
    Ok(Some(ConsoleProcess { handle: process.hProcess, pid: process.dwProcessId }))
}

/// The rectangle that covers every monitor: left, top, width, height.
pub fn virtual_screen() -> (i32, i32, i32, i32) {
    // SAFETY: GetSystemMetrics takes a constant and reads no memory of ours.
    unsafe {
        (
            GetSystemMetrics(SM_XVIRTUALSCREEN),
            GetSystemMetrics(SM_YVIRTUALSCREEN),
            GetSystemMetrics(SM_CXVIRTUALSCREEN),
            GetSystemMetrics(SM_CYVIRTUALSCREEN),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_times_advance_and_give_a_share() {
        let first = cpu_times().unwrap();
        // Busy for a moment so that the processors' time moves on.
        let started = std::time::Instant::now();
        let mut spin = 0u64;
        while started.elapsed() < Duration::from_millis(50) {
            spin = std::hint::black_box(spin.wrapping_add(1));
        }
        let second = cpu_times().unwrap();
        assert!(second.total > first.total, "{first:?} {second:?}");
        let busy = second.busy_percent_since(&first);
        assert!((0.0..=100.0).contains(&busy), "{busy}");
        assert_eq!(CpuTimes { idle: 10, total: 40 }.busy_percent_since(&CpuTimes { idle: 0, total: 0 }), 75.0);
        assert_eq!(first.busy_percent_since(&first), 0.0);
    }

    #[test]
    fn sessions_are_read() {
        let sessions = sessions().unwrap();
        assert!(sessions.active < 1000, "{sessions:?}");
    }

    #[test]
    fn an_error_reaches_the_event_log() {
        report_error("netbar-host-test", "netbar-host's unit test: a report to the event log").unwrap();
    }
}
