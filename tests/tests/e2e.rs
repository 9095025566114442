//! The end-to-end tests: one test binary, one module per capability.

mod e2e {
    mod check_id;
    mod schemas;
    mod workspace;
}
