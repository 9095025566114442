//! The end-to-end tests: one test binary, one module per capability.

// Helpers of test modules are test code too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod e2e {
    mod agent;
    mod bus;
    mod check_id;
    mod collector;
    mod console;
    mod deploy;
    mod law;
    mod lockscreen;
    #[cfg(unix)]
    mod regulator;
    mod restart;
    mod schemas;
    mod uplink;
    mod windows;
    mod workspace;
}
