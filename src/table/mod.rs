//! The MAC forwarding table (FDB) and the snapshot cell that publishes it.
//!
//! # Concurrency
//! An RCU cell ([`rcu`]) holds an immutable value behind an `arc-swap` pointer. Any number of
//! [`Reader`]s take a [`Snapshot`] once per burst: one atomic load, no lock, no write
//! to shared memory that a writer waits on. Exactly one [`Writer`] exists per cell (it
//! is not `Clone`); it copies the current value, changes the copy and publishes it with
//! one atomic store. A reader therefore sees either the old or the new value as a
//! whole, never a half-applied change, and a change costs O(table size) on the
//! control path only.
//!
//! # Entries
//! [`Fdb`] maps ([`FdbKey`]: VLAN, MAC) to a [`PortId`]. Every entry is an endpoint's
//! configured address, as in the kernel's macvlan, which learns nothing: a key has
//! one owner, and a second port claiming it is refused.

use std::sync::Arc;

use arc_swap::{ArcSwap, Guard};
use hashbrown::HashMap;

use crate::port::PortId;
use crate::wire::MacAddr;

/// An FDB key: a MAC address within a VLAN (0 = untagged). Packed into one `u64`
/// (VLAN in bits 48..60) so hashing and comparing it is a single word operation.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct FdbKey(u64);

impl FdbKey {
    /// The key for `mac` in VLAN `vlan` (0 for untagged; only the low 12 bits count).
    #[inline(always)]
    pub const fn new(vlan: u16, mac: MacAddr) -> Self {
        FdbKey(((vlan as u64 & 0x0fff) << 48) | mac.to_u64())
    }

    /// The VLAN part.
    pub const fn vlan(self) -> u16 {
        (self.0 >> 48) as u16
    }

    /// The MAC part.
    pub const fn mac(self) -> MacAddr {
        MacAddr::from_u64(self.0)
    }
}

/// A multiplicative hasher for the already well-mixed-enough `FdbKey` word.
/// MAC addresses differ mostly in their low bytes; the multiply spreads them
/// into the high bits hashbrown uses for its control bytes.
#[derive(Default, Clone, Copy)]
pub struct KeyHasher(u64);

impl core::hash::Hasher for KeyHasher {
    #[inline(always)]
    fn finish(&self) -> u64 {
        let x = self.0.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        x ^ (x >> 29)
    }
    #[inline(always)]
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8)) ^ b as u64;
        }
    }
    #[inline(always)]
    fn write_u64(&mut self, v: u64) {
        self.0 ^= v;
    }
}

type BuildKeyHasher = core::hash::BuildHasherDefault<KeyHasher>;

/// The forwarding database: (VLAN, MAC) → port.
#[derive(Clone, Default, Debug)]
pub struct Fdb {
    map: HashMap<FdbKey, PortId, BuildKeyHasher>,
}

/// Why an FDB change was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The key already belongs to another port.
    #[error("{mac} (vlan {vlan}) is already owned by port {owner}")]
    Occupied {
        /// The contested address.
        mac: MacAddr,
        /// Its VLAN.
        vlan: u16,
        /// The port that holds it.
        owner: PortId,
    },
}

impl Fdb {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// The port for `key`, if any.
    #[inline(always)]
    pub fn lookup(&self, key: FdbKey) -> Option<PortId> {
        self.map.get(&key).copied()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// No entries.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Adds an entry: `key` belongs to `port`. Adding it again for the same port
    /// does nothing.
    ///
    /// # Errors
    /// [`Error::Occupied`] if another port already owns the key; nothing changes.
    pub fn insert_static(&mut self, key: FdbKey, port: PortId) -> Result<(), Error> {
        match self.map.get(&key) {
            Some(&owner) if owner != port => Err(Error::Occupied {
                mac: key.mac(),
                vlan: key.vlan(),
                owner,
            }),
            _ => {
                self.map.insert(key, port);
                Ok(())
            }
        }
    }

    /// Removes the entry for `key`; returns its port.
    pub fn remove(&mut self, key: FdbKey) -> Option<PortId> {
        self.map.remove(&key)
    }

    /// Removes every entry pointing at `port` (when a port goes away).
    pub fn remove_port(&mut self, port: PortId) {
        self.map.retain(|_, p| *p != port);
    }
}

/// A published, immutable value of type `T`.
pub type Snapshot<T> = Guard<Arc<T>>;

/// Creates a cell holding `init` and returns its only writer and a first reader.
pub fn rcu<T>(init: T) -> (Writer<T>, Reader<T>) {
    let cell = Arc::new(ArcSwap::from_pointee(init));
    (Writer { cell: cell.clone() }, Reader { cell })
}

/// The single writer of an RCU cell. Not `Clone`: one writer per cell is an invariant.
pub struct Writer<T> {
    cell: Arc<ArcSwap<T>>,
}

/// A wait-free reader of an RCU cell. Cheap to clone; one per worker thread.
pub struct Reader<T> {
    cell: Arc<ArcSwap<T>>,
}

impl<T> Clone for Reader<T> {
    fn clone(&self) -> Self {
        Reader {
            cell: self.cell.clone(),
        }
    }
}

impl<T> Reader<T> {
    /// The current value. Take it once per burst and drop it at the end of the burst.
    #[inline(always)]
    pub fn snapshot(&self) -> Snapshot<T> {
        self.cell.load()
    }
}

impl<T: Clone> Writer<T> {
    /// The current value (for reading on the control path).
    pub fn current(&self) -> Arc<T> {
        self.cell.load_full()
    }

    /// Applies `f` to a copy of the current value and publishes the copy if `f`
    /// returns `Ok`. On `Err` nothing is published: readers never see a half-made
    /// change, and the cell is exactly as before.
    ///
    /// # Errors
    /// Whatever `f` returns.
    pub fn update<R, E>(&mut self, f: impl FnOnce(&mut T) -> Result<R, E>) -> Result<R, E> {
        let mut next = T::clone(&self.cell.load());
        let r = f(&mut next)?;
        // Only this writer stores, so no compare-and-swap is needed.
        self.cell.store(Arc::new(next));
        Ok(r)
    }

    /// Publishes `value` as a whole.
    pub fn replace(&mut self, value: T) {
        self.cell.store(Arc::new(value));
    }

    /// Another reader of this cell.
    pub fn reader(&self) -> Reader<T> {
        Reader {
            cell: self.cell.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    fn mac(i: u32) -> MacAddr {
        MacAddr::local_from_bytes([
            0,
            0,
            (i >> 24) as u8,
            (i >> 16) as u8,
            (i >> 8) as u8,
            i as u8,
        ])
    }

    #[test]
    fn key_packs_vlan_and_mac() {
        let m = mac(0xdead_beef);
        let k = FdbKey::new(4094, m);
        assert_eq!((k.vlan(), k.mac()), (4094, m));
        assert_ne!(FdbKey::new(1, m), FdbKey::new(2, m));
    }

    #[test]
    fn a_key_has_one_owner() {
        let mut t = Fdb::new();
        let k = FdbKey::new(0, mac(1));
        t.insert_static(k, PortId(1)).unwrap();
        t.insert_static(k, PortId(1)).unwrap();
        assert_eq!(
            t.insert_static(k, PortId(2)),
            Err(Error::Occupied {
                mac: mac(1),
                vlan: 0,
                owner: PortId(1)
            })
        );
        assert_eq!(t.lookup(k), Some(PortId(1)));
        t.insert_static(FdbKey::new(5, mac(1)), PortId(2)).unwrap();
        assert_eq!(t.len(), 2, "another VLAN is another key");
        assert_eq!(t.remove(k), Some(PortId(1)));
        t.remove_port(PortId(2));
        assert!(t.is_empty());
    }

    /// As many entries as the kernel's `fdb` map holds (65 536), over every VLAN id:
    /// each found, removed by port, and the table empty again.
    #[test]
    fn holds_65536_entries_over_every_vlan() {
        const N: u32 = 65_536;
        let key = |i: u32| FdbKey::new((i % 4094 + 1) as u16, mac(i));
        let mut t = Fdb::new();
        for i in 0..N {
            t.insert_static(key(i), PortId((i % 16) as u16 + 2))
                .unwrap();
        }
        assert_eq!(t.len(), N as usize);
        for i in (0..N).step_by(97) {
            assert_eq!(t.lookup(key(i)), Some(PortId((i % 16) as u16 + 2)));
        }
        for p in 2..18 {
            t.remove_port(PortId(p));
        }
        assert!(t.is_empty());
    }

    #[test]
    fn failed_update_publishes_nothing() {
        let (mut w, r) = rcu(Fdb::new());
        w.update(|t| t.insert_static(FdbKey::new(0, mac(1)), PortId(1)))
            .unwrap();
        let before = r.snapshot();
        let res = w.update(|t| {
            t.insert_static(FdbKey::new(0, mac(2)), PortId(2))?;
            t.insert_static(FdbKey::new(0, mac(1)), PortId(9))
        });
        assert!(res.is_err());
        let after = r.snapshot();
        assert!(
            Arc::ptr_eq(&before, &after),
            "a refused change must not be published"
        );
        assert_eq!(after.len(), 1);
    }

    /// Readers look up stable keys while the single writer churns other keys; no
    /// reader may ever miss a stable key or see it pointing elsewhere.
    #[test]
    fn readers_never_miss_stable_keys_under_churn() {
        const STABLE: u32 = 512;
        let (mut w, r) = rcu(Fdb::new());
        w.update(|t| {
            for i in 0..STABLE {
                t.insert_static(FdbKey::new((i % 3) as u16, mac(i)), PortId((i % 50) as u16))?;
            }
            Ok::<_, Error>(())
        })
        .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let lookups = Arc::new(AtomicU64::new(0));
        let readers: Vec<_> = (0..3)
            .map(|t| {
                let r = r.clone();
                let stop = stop.clone();
                let lookups = lookups.clone();
                std::thread::spawn(move || {
                    let mut n = 0u64;
                    let mut i = t;
                    while !stop.load(Ordering::Relaxed) || n < 10_000 {
                        let snap = r.snapshot();
                        for _ in 0..32 {
                            i = (i + 7) % STABLE;
                            let got = snap.lookup(FdbKey::new((i % 3) as u16, mac(i)));
                            assert_eq!(got, Some(PortId((i % 50) as u16)), "stable key {i} missed");
                            n += 1;
                        }
                    }
                    lookups.fetch_add(n, Ordering::Relaxed);
                })
            })
            .collect();
        for round in 0..2_000u32 {
            let k = FdbKey::new(7, mac(100_000 + round % 97));
            if round % 2 == 0 {
                w.update(|t| t.insert_static(k, PortId(1))).unwrap();
            } else {
                w.update(|t| {
                    t.remove(k);
                    Ok::<_, Error>(())
                })
                .unwrap();
            }
        }
        stop.store(true, Ordering::Relaxed);
        for h in readers {
            h.join()
                .expect("a reader saw a wrong or missing stable key");
        }
        assert!(lookups.load(Ordering::Relaxed) >= 30_000);
    }
}
