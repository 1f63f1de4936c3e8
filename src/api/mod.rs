//! The application API.
