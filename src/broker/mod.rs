//! Per-core broker state: room index, broadcast planning, cross-core messages.
