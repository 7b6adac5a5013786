//! RESP: the bounded request parser for what clients send, the reply scanner for what the
//! backend answers, the few replies the relayer builds itself, and the typed decoding of the
//! replies to its own queries.
pub mod reply;
pub mod request;
pub mod typed;
pub mod write;
