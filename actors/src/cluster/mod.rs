//! Redis Cluster: hash slots, where a command's keys are, and the slot map.
pub mod admin;
pub mod backend;
pub mod gather;
pub mod hold;
pub mod holds;
pub mod keys;
pub mod placement;
pub mod redirects;
pub mod slot;
pub mod topology;
