//! The netlink side of the loader: [`with_links`] runs questions through the crate's
//! one netlink client ([`crate::link::Links`]) on a fresh scoped thread, which starts
//! in the caller's network namespace but outside any tokio runtime the caller may be
//! in (a nested `block_on` would panic, e.g. when a [`Steering`](super::Steering) is
//! dropped inside async code). A netlink socket belongs to the namespace of the thread
//! that creates it, like the sockets libbpf opens for XDP and tc calls, so the
//! connection is opened per operation and never cached.

use std::io;

use crate::link::Links;

/// Runs `f` with a fresh connection on a scoped thread (same network namespace as
/// the caller, no tokio context). A panic there becomes an error.
pub(super) fn with_links<R: Send>(
    f: impl FnOnce(&Links) -> crate::link::Result<R> + Send,
) -> io::Result<R> {
    std::thread::scope(|s| {
        s.spawn(|| {
            let links = Links::open().map_err(io::Error::other)?;
            f(&links).map_err(io::Error::other)
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("rtnetlink helper thread panicked")))
    })
}

/// The name of `ifindex` in the calling thread's namespace, for messages, or
/// `ifindex N`.
pub(super) fn ifname(ifindex: u32) -> String {
    crate::sys::if_indextoname(ifindex).unwrap_or_else(|_| format!("ifindex {ifindex}"))
}
