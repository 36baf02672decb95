//! The client library: everything a mount or an admin tool needs to talk to a Tessera
//! cluster, usable without FUSE.

pub mod meta;
