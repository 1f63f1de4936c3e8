//! Built-in applications, selected with `sockeye --app NAME`.
//!
//! - `echo`: the conformance app the interop tests run against (see `echo.rs`).

pub mod echo;
