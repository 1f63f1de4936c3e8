//! Client side of RFC 6455: the upgrade request, the check of the server's answer, masked
//! frame encoding and incremental decoding of server frames. No IO: callers hand in bytes and
//! get back frames or "need more".

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// Largest server frame payload we accept; a bench message is a few hundred bytes, so anything
/// near this is a broken peer, not load.
pub const MAX_FRAME_PAYLOAD: u64 = 16 << 20;

const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

pub const OP_CONTINUATION: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// A decoded frame header; the payload is `buf[payload_start..payload_end]` of the input the
/// header was decoded from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHead {
    pub fin: bool,
    pub opcode: u8,
    /// Masking key when the server (wrongly, RFC 6455 section 5.1) masked the frame.
    pub mask: Option<[u8; 4]>,
    pub payload_start: usize,
    pub payload_end: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    TooLarge(u64),
    ReservedBits,
}

/// Decodes one frame header at the start of `buf`. `Ok(None)` means the frame (header and
/// payload) is not complete yet.
pub fn decode_frame(buf: &[u8]) -> Result<Option<FrameHead>, FrameError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let b0 = buf[0];
    let b1 = buf[1];
    if b0 & 0x70 != 0 {
        return Err(FrameError::ReservedBits);
    }
    let masked = b1 & 0x80 != 0;
    let mut pos = 2;
    let len = match b1 & 0x7f {
        126 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            pos = 4;
            u64::from(u16::from_be_bytes([buf[2], buf[3]]))
        }
        127 => {
            if buf.len() < 10 {
                return Ok(None);
            }
            pos = 10;
            u64::from_be_bytes(buf[2..10].try_into().expect("8 bytes"))
        }
        n => u64::from(n),
    };
    if len > MAX_FRAME_PAYLOAD {
        return Err(FrameError::TooLarge(len));
    }
    let mask = if masked {
        if buf.len() < pos + 4 {
            return Ok(None);
        }
        let m = [buf[pos], buf[pos + 1], buf[pos + 2], buf[pos + 3]];
        pos += 4;
        Some(m)
    } else {
        None
    };
    let end = pos + len as usize;
    if buf.len() < end {
        return Ok(None);
    }
    Ok(Some(FrameHead { fin: b0 & 0x80 != 0, opcode: b0 & 0x0f, mask, payload_start: pos, payload_end: end }))
}

/// Appends one masked client frame (FIN set) to `out`. RFC 6455 section 5.3: every client frame
/// is masked with a fresh key.
pub fn encode_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8], mask: [u8; 4]) {
    out.push(0x80 | opcode);
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= usize::from(u16::MAX) {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], mask);
}

pub fn apply_mask(data: &mut [u8], mask: [u8; 4]) {
    for (i, b) in data.iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
}

/// The `Sec-WebSocket-Key` for a 16-byte nonce.
pub fn key_for(nonce: [u8; 16]) -> String {
    STANDARD.encode(nonce)
}

/// The `Sec-WebSocket-Accept` a correct server answers to `key` (RFC 6455 section 4.2.2).
pub fn accept_for(key: &str) -> String {
    let mut s = String::with_capacity(key.len() + WS_GUID.len());
    s.push_str(key);
    s.push_str(WS_GUID);
    STANDARD.encode(sha1(s.as_bytes()))
}

/// The HTTP/1.1 upgrade request for `path_and_query`.
pub fn upgrade_request(host: &str, path_and_query: &str, key: &str) -> String {
    format!(
        "GET {path_and_query} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// SHA-1 (FIPS 180-4), only for the handshake check; not used for anything secret.
pub fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [0x6745_2301, 0xEFCD_AB89, 0x98BA_DCFE, 0x1032_5476, 0xC3D2_E1F0];
    let mut msg = data.to_vec();
    let bit_len = (data.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_be_bytes());
    for block in msg.chunks_exact(64) {
        let mut w = [0u32; 80];
        for (i, word) in block.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes(word.try_into().expect("4 bytes"));
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A82_7999),
                20..=39 => (b ^ c ^ d, 0x6ED9_EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC),
                _ => (b ^ c ^ d, 0xCA62_C1D6),
            };
            let t = a.rotate_left(5).wrapping_add(f).wrapping_add(e).wrapping_add(k).wrapping_add(*wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        for (hv, v) in h.iter_mut().zip([a, b, c, d, e]) {
            *hv = hv.wrapping_add(v);
        }
    }
    let mut out = [0u8; 20];
    for (i, v) in h.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&v.to_be_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_matches_rfc_example() {
        // RFC 6455 section 1.3.
        assert_eq!(accept_for("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn sha1_of_abc() {
        let d = sha1(b"abc");
        let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "a9993e364706816aba3e25717850c26c9cd0d89d");
    }

    #[test]
    fn masked_frame_roundtrips_through_decoder() {
        for len in [0usize, 5, 125, 126, 300, 70_000] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut out = Vec::new();
            encode_frame(&mut out, OP_TEXT, &payload, [1, 2, 3, 4]);
            // Every prefix is "need more", the whole is one frame.
            for cut in [0, 1, out.len() / 2, out.len() - 1] {
                if cut < out.len() {
                    assert_eq!(decode_frame(&out[..cut]), Ok(None), "len {len} cut {cut}");
                }
            }
            let head = decode_frame(&out).unwrap().unwrap();
            assert_eq!(head.payload_end, out.len());
            let mut body = out[head.payload_start..head.payload_end].to_vec();
            apply_mask(&mut body, head.mask.unwrap());
            assert_eq!(body, payload);
        }
    }

    #[test]
    fn unmasked_server_frame() {
        let buf = [0x81, 0x02, b'4', b'0', 0x81];
        let head = decode_frame(&buf).unwrap().unwrap();
        assert!(head.fin);
        assert_eq!(head.opcode, OP_TEXT);
        assert_eq!(&buf[head.payload_start..head.payload_end], b"40");
    }
}
