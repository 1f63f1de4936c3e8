//! Helpers shared by the fuzz targets: a reader that turns the fuzzer's bytes into small
//! structured choices (operation codes, lengths, chunks) without ever failing.
//!
//! Every read succeeds: once the input is exhausted, numbers read as zero and byte strings as
//! empty, so a target can interpret any input, and a short input is simply a short scenario.

/// A cursor over the fuzzer's input.
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Input { data }
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The next byte, or 0 at the end.
    pub fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    /// The next two bytes as a little-endian number, 0 at the end.
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    /// Up to `n` bytes (fewer at the end of the input).
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        head
    }

    /// A byte string prefixed by its one-byte length.
    pub fn short_bytes(&mut self) -> &'a [u8] {
        let n = usize::from(self.byte());
        self.take(n)
    }

    /// Everything that is left.
    pub fn rest(&mut self) -> &'a [u8] {
        self.take(self.data.len())
    }
}

pub mod clients;

/// A namespace as it prefixes a Socket.IO packet: nothing for `/`, else the name and a comma.
pub fn ns_prefix(ns: &str) -> String {
    if ns == "/" { String::new() } else { format!("{ns},") }
}
