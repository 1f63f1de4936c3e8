//! Server configuration and limits.
