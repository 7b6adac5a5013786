//! The Redis relay: sessions (one per client), the backend (shared upstream connections to one
//! Redis or a cluster), and a client's own connections.
pub mod auth;
pub mod backend;
pub mod client_kill;
pub mod clients;
pub mod connect;
pub mod dedicated;
pub mod delivery;
pub mod messages;
pub mod session;
pub mod smart;
pub mod smart_args;
pub mod upstream;
