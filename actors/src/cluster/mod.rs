//! Redis Cluster: hash slots, where a command's keys are, and the slot map.
pub mod admin;
pub mod gather;
pub mod keys;
pub mod slot;
pub mod topology;
