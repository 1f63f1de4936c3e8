//! Built-in applications (conformance echo, bench).
