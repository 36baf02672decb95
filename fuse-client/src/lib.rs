//! Tessera's client side: the metadata and chunk client library (`client`), and the FUSE
//! adapter built on it (`fs`).

pub mod client;
pub mod fs;
pub mod mount;

pub use client::data::{DataConfig, DataPath};
pub use client::meta::{MetaClient, MetaClientError, MetaClientOptions, SessionKeeper};
pub use client::ops::{Caller, Namespace};
