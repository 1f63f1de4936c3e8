//! (temporary stub until the http-ws branch lands)
#[derive(Debug, Clone)]
pub struct Cors;
impl Cors { pub fn permissive() -> Self { Cors } }
