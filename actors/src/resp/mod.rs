//! RESP: the bounded request parser for what clients send, the reply scanner for what the
//! backend answers, and the few replies the relayer builds itself.
pub mod reply;
pub mod request;
pub mod write;
