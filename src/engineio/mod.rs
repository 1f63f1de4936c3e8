//! Engine.IO v4: packet and payload codecs, session ids, the session state machine.
//!
//! No IO and no clock here: see `session` for the calling contract.
pub mod packet;
pub mod session;
pub mod sid;
