//! Core of pytest-mproc: the node-local shared-memory ring that carries work units between
//! the processes of one node, with leases and crash healing. No Python in here: the
//! bindings crate (`python/`) and the bridge crate (`bridge/`) build on this one.
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod auth;
#[cfg(not(loom))]
pub mod coordinator;
pub mod error;
#[cfg(not(loom))]
pub mod futex;
#[cfg(not(loom))]
pub mod handshake;
#[cfg(not(loom))]
pub mod net;
#[cfg(not(loom))]
pub mod view;
pub mod layout;
pub mod protocol;
pub mod state;
pub mod sync;
pub mod wakeup;
pub mod wire;

#[cfg(not(loom))]
pub mod arena;
#[cfg(not(loom))]
pub mod lease;
#[cfg(not(loom))]
pub mod ring;
#[cfg(not(loom))]
pub mod segment;
#[cfg(not(loom))]
pub mod store;

pub use error::{Error, Result};
#[cfg(not(loom))]
pub use ring::{HealReport, Lease, Ring, RingOptions};
#[cfg(not(loom))]
pub use store::Store;
