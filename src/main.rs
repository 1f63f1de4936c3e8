//! Placeholder binary target so that `tests/interop.rs` can name `CARGO_BIN_EXE_sockeye`.
//! The real command line (`--app echo --host --port`) lands with the runtime.
fn main() {}
