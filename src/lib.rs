//! Switchboard: a reverse proxy that translates real-time WebSocket sub-protocols at the
//! frame level.
//!
//! # Layout
//! - [`config`]: figment layering, validation, `check`. Opens no sockets.
//! - [`frame`]: the dialect-neutral operations and events. No parsing, no I/O.
//! - [`dialect`]: per-dialect codecs (bytes ⇄ dialect frames) and role state machines
//!   (dialect frames ⇄ neutral frames). Pure and synchronous.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod config;
pub mod dialect;
pub mod frame;
