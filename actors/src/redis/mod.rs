//! The Redis relay: sessions (one per client), the target (shared upstream connections to one
//! Redis) and the command table that says how each command is treated.
pub mod auth;
pub mod backend;
pub mod connect;
pub mod dedicated;
pub mod delivery;
pub mod messages;
pub mod session;
pub mod smart;
