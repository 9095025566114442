//! Helpers for the end-to-end tests: finding the binaries cargo built.
