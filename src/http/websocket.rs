//! (temporary stub until the http-ws branch lands)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpCode { Text, Binary, Close, Ping, Pong }
pub fn encode_frame(op: OpCode, payload: &[u8], out: &mut Vec<u8>) {
    let b0 = 0x80 | match op { OpCode::Text => 1, OpCode::Binary => 2, OpCode::Close => 8, OpCode::Ping => 9, OpCode::Pong => 10 };
    out.push(b0);
    let n = payload.len();
    if n < 126 { out.push(n as u8) } else if n <= 0xffff { out.push(126); out.extend_from_slice(&(n as u16).to_be_bytes()) } else { out.push(127); out.extend_from_slice(&(n as u64).to_be_bytes()) }
    out.extend_from_slice(payload);
}
