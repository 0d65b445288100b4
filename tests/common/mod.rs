//! Shared helpers for the root-only tests: a network-namespace lab with a unique
//! per-run prefix, removed on drop and on the next run's start (in `lab.rs`, which
//! the crate's own `src/bpf/tests.rs` includes too), and the reference topology.
#![allow(dead_code)]

#[allow(dead_code)]
pub mod daemon;
mod lab;
pub mod topo;

// For `lab.rs`, which the crate's own tests include too (as `crate::link::Netns`).
use umacvlan::link::Netns;

pub use lab::*;
