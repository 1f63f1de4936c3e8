//! Engine.IO v4: packet and payload codecs, session ids, the session state machine.
pub mod packet;
