//! The only IO in sockeye: per-core mio event loops.
