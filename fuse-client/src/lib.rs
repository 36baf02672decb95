//! Tessera's client side: the metadata and chunk client library (`client`), and the FUSE
//! adapter built on it.

pub mod client;

pub use client::meta::{MetaClient, MetaClientError, MetaClientOptions, SessionKeeper};
