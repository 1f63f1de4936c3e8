//! Socket.IO v5: packet codec with binary attachments.
pub mod packet;
