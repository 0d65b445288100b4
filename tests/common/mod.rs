//! Shared helpers for the root-only tests: a network-namespace lab with a unique
//! per-run prefix, removed on drop and on the next run's start (in `lab.rs`, which
//! the binary's bench root tests include too), the reference topology, the
//! real daemon run in a namespace (`daemon.rs`) and an in-process dataplane run in a
//! namespace while a test body runs (`switch.rs`).
#![allow(dead_code)]

#[allow(dead_code)]
pub mod daemon;
mod lab;
#[allow(dead_code)]
pub mod runtime;
#[allow(dead_code)]
pub mod switch;
pub mod topo;

// For `lab.rs`, which the crate's own tests include too (as `crate::link::Netns`).
use umacvlan::link::Netns;

pub use lab::*;
