//! Built-in applications, selected with `sockeye --app NAME`.
//!
//! - `echo`: the conformance app the interop tests run against (see `echo.rs`);
//! - `bench`: the bench contract of the load generator (see `bench.rs`).

pub mod bench;
pub mod echo;
