//! The forwarding decision: what the kernel's macvlan would do with a frame.
//!
//! [`decide`] is a pure function of (ingress port, [`Facts`] of the frame, the
//! published [`PortTable`]) returning a [`Verdict`]. It performs no I/O, allocates
//! nothing and never fails: a frame it will not forward is `Verdict::Drop` with a
//! [`DropReason`]. Rule ids (T1–T4, W1–W9, §3.1) refer to
//! `shared/spec/macvlan-semantics.md`; each appears in a test of the same name.
//!
//! Invariants, whatever the input:
//! * the ingress port is never in the delivery set;
//! * a frame whose source MAC is an endpoint's is delivered back to that endpoint only
//!   under W9 (a reflected broadcast from a private, passthru or source sender);
//! * PAUSE frames (EtherType 0x8808) are never flooded to endpoints.
//!
//! Deliberate differences from the kernel, each tested:
//! * an endpoint in bridge mode sending to its *own* MAC is dropped (`Loop`) rather than
//!   looped back to itself;
//! * a tagged frame from the uplink for a VLAN no network uses is dropped
//!   (`UnknownVlan`); the kernel, with no VLAN awareness, switches it by MAC alone;
//! * [`EndpointInfo::strict`] on a private endpoint also blocks reflected *unicast*
//!   between siblings (the kernel isolates only broadcasts: spec §6.1). Off by default.

pub use crate::port::{DropReason, Mode, UnknownMode};
use crate::port::{PortId, PortSet};
use crate::view::{EndpointInfo, PortTable, Role};
use crate::wire::{EtherType, MacAddr};

/// What [`decide`] needs to know about a frame: its header, nothing else.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Facts {
    /// Destination MAC.
    pub dst: MacAddr,
    /// Source MAC.
    pub src: MacAddr,
    /// Outer VLAN id (0 if untagged or priority-tagged).
    pub vlan: u16,
    /// EtherType after the tags.
    pub ethertype: EtherType,
}

/// Where a frame goes.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Verdict {
    /// To exactly one port (endpoint, uplink or host).
    Forward(PortId),
    /// To several ports (floods, source-mode copies).
    Multi(PortSet),
    /// Nowhere.
    Drop(DropReason),
}

impl Verdict {
    /// The delivery set (empty for a drop).
    pub fn targets(&self) -> PortSet {
        match self {
            Verdict::Forward(p) => [*p].into_iter().collect(),
            Verdict::Multi(s) => s.clone(),
            Verdict::Drop(_) => PortSet::new(),
        }
    }
}

/// A rule a decision applied: the spec's (`shared/spec/macvlan-semantics.md`: T1–T4,
/// W1–W9, §2.2, §3.1), or one of umacvlan's documented differences. [`explain`]
/// returns them in the order [`decide`] applied them.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[non_exhaustive]
pub enum Rule {
    /// The ingress port is not (or no longer) in the port table.
    UnknownPort,
    /// §2.2: what the host sends goes to the wire only.
    HostToWire,
    /// The sender is down.
    SenderDown,
    /// T1: broadcast/multicast from a bridge endpoint.
    T1,
    /// T2: unicast from a bridge endpoint to a bridge sibling.
    T2,
    /// T3: other unicast from a bridge endpoint.
    T3,
    /// T4: a VEPA, private, passthru or source endpoint sends everything to the wire.
    T4,
    /// A bridge endpoint's frame to its own MAC (a difference from the kernel).
    Loop,
    /// A tagged frame for a VLAN no network uses (a difference from the kernel).
    UnknownVlan,
    /// §3.1: copies to source-mode endpoints listing the source MAC.
    SourceCopies,
    /// §3.1: a `nodst` source-mode endpoint consumes the frame.
    SourceNodst,
    /// W1: unicast from the wire to an endpoint.
    W1,
    /// W2: unicast from the wire to the parent's own MAC.
    W2,
    /// W3: unicast from the wire to an unknown MAC.
    W3,
    /// W4: unicast from the wire to a source-mode endpoint's MAC.
    W4,
    /// W5: a passthru parent.
    W5,
    /// W6: broadcast/multicast from the wire, not from an endpoint.
    W6,
    /// W7: a VEPA endpoint's broadcast/multicast, reflected.
    W7,
    /// W8: a bridge endpoint's broadcast/multicast, reflected.
    W8,
    /// W9: a private, passthru or source endpoint's broadcast/multicast, reflected.
    W9,
    /// Strict private isolation (an option; the kernel isolates only broadcasts).
    StrictPrivate,
}

impl Rule {
    /// The id the spec gives it (`T1`, `W9`, `§3.1`, ...), or umacvlan's name for a
    /// difference (`loop`, `unknown-vlan`, `strict`).
    pub const fn id(self) -> &'static str {
        match self {
            Rule::UnknownPort => "unknown-port",
            Rule::HostToWire => "§2.2",
            Rule::SenderDown => "down",
            Rule::T1 => "T1",
            Rule::T2 => "T2",
            Rule::T3 => "T3",
            Rule::T4 => "T4",
            Rule::Loop => "loop",
            Rule::UnknownVlan => "unknown-vlan",
            Rule::SourceCopies | Rule::SourceNodst => "§3.1",
            Rule::W1 => "W1",
            Rule::W2 => "W2",
            Rule::W3 => "W3",
            Rule::W4 => "W4",
            Rule::W5 => "W5",
            Rule::W6 => "W6",
            Rule::W7 => "W7",
            Rule::W8 => "W8",
            Rule::W9 => "W9",
            Rule::StrictPrivate => "strict",
        }
    }

    /// What the rule says, in a sentence.
    pub const fn text(self) -> &'static str {
        match self {
            Rule::UnknownPort => "the ingress port is not in the port table",
            Rule::HostToWire => "what the host sends goes to the wire only, never to endpoints",
            Rule::SenderDown => "the sending endpoint is down",
            Rule::T1 => "broadcast/multicast from a bridge endpoint goes to every other bridge endpoint (that accepts the group) and to the wire",
            Rule::T2 => "unicast from a bridge endpoint to a bridge sibling is delivered directly, never to the wire",
            Rule::T3 => "unicast from a bridge endpoint to anything but a bridge sibling (the parent's MAC, a VEPA, private or source endpoint, an unknown MAC) goes to the wire",
            Rule::T4 => "a VEPA, private, passthru or source endpoint sends everything to the wire; only an external switch that reflects it (hairpin) brings it back",
            Rule::Loop => "a bridge endpoint's frame to its own MAC is dropped, not looped back (umacvlan differs from the kernel here)",
            Rule::UnknownVlan => "a tagged frame for a VLAN no network on the parent uses is dropped (umacvlan differs from the kernel here)",
            Rule::SourceCopies => "source-mode endpoints listing the source MAC get a copy",
            Rule::SourceNodst => "a nodst source-mode endpoint lists the source MAC: the frame goes to the source endpoints only",
            Rule::W1 => "unicast from the wire to an endpoint's MAC goes to that endpoint",
            Rule::W2 => "unicast from the wire to the parent's own MAC goes to the host",
            Rule::W3 => "unicast from the wire to an unknown MAC (or a down endpoint's) goes to the host, which normally drops it",
            Rule::W4 => "a source-mode endpoint cannot be reached by destination MAC: to the host",
            Rule::W5 => "on a passthru parent the endpoint gets all unicast from the wire, whatever its destination; dropped while it is down",
            Rule::W6 => "broadcast/multicast from the wire (not from an endpoint) goes to every private, VEPA, bridge and passthru endpoint that accepts the group, and to the host",
            Rule::W7 => "a VEPA endpoint's broadcast/multicast, reflected by the wire, goes to the VEPA and bridge endpoints but the sender, and to the host",
            Rule::W8 => "a bridge endpoint's broadcast/multicast, reflected by the wire, goes to the VEPA endpoints only (the bridge siblings got it when it was sent), and to the host",
            Rule::W9 => "a private, passthru or source endpoint's broadcast/multicast, reflected by the wire, returns to its sender only: no sibling and not the host gets it",
            Rule::StrictPrivate => "strict private isolation blocks unicast reflected between two endpoints of a network when either is strict private (an option; the kernel isolates only broadcasts)",
        }
    }
}

/// Receives the rules a decision applies. [`decide`] passes `()`, which records
/// nothing and compiles away; [`explain`] a `Vec`.
trait Trace {
    fn rule(&mut self, r: Rule);
}

impl Trace for () {
    #[inline(always)]
    fn rule(&mut self, _: Rule) {}
}

impl Trace for Vec<Rule> {
    fn rule(&mut self, r: Rule) {
        self.push(r);
    }
}

/// Which endpoint modes a flood reaches.
#[derive(Clone, Copy)]
struct Modes(u8);

impl Modes {
    const fn of(m: Mode) -> u8 {
        1 << m as u8
    }
    const W6: Modes = Modes(
        Self::of(Mode::Private)
            | Self::of(Mode::Vepa)
            | Self::of(Mode::Bridge)
            | Self::of(Mode::Passthru),
    );
    const W7: Modes = Modes(Self::of(Mode::Vepa) | Self::of(Mode::Bridge));
    const W8: Modes = Modes(Self::of(Mode::Vepa));
    const T1: Modes = Modes(Self::of(Mode::Bridge));
    #[inline(always)]
    fn has(self, m: Mode) -> bool {
        self.0 & Self::of(m) != 0
    }
}

/// Adds to `set` every UP endpoint of network `vlan` whose mode is in `modes`, except
/// `except`, that accepts `group` (`macvlan_broadcast`). PAUSE frames reach nobody.
///
/// The endpoints that accept every group come as one set per mode, computed when the
/// table was built; only those with an exact filter are looked at one by one.
fn flood(
    set: &mut PortSet,
    t: &PortTable,
    vlan: u16,
    modes: Modes,
    except: Option<PortId>,
    f: &Facts,
) {
    if f.ethertype == EtherType::PAUSE {
        return;
    }
    let Some(net) = t.network(vlan) else {
        return;
    };
    let mut s = PortSet::new();
    for m in Mode::ALL {
        if modes.has(m) {
            s.union_with(net.open(m));
        }
    }
    for &p in net.filtered() {
        if let Some(e) = t.endpoint(p) {
            if modes.has(e.mode) && e.mc.accepts(f.dst) {
                s.insert(p);
            }
        }
    }
    if let Some(x) = except {
        s.remove(x);
    }
    set.union_with(&s);
}

/// §3.1: copies to UP source-mode endpoints listing the frame's source MAC, and
/// whether a `nodst` entry consumes the frame (even if its endpoint is down).
#[inline]
fn source_copies(
    t: &PortTable,
    vlan: u16,
    src: MacAddr,
    tr: &mut impl Trace,
) -> Option<(PortSet, bool)> {
    let entries = t.sources(vlan, src);
    if entries.is_empty() {
        return None;
    }
    let mut set = PortSet::new();
    let mut consume = false;
    for s in entries {
        if let Some(e) = t.endpoint(s.port) {
            consume |= e.nodst;
            if e.up {
                set.insert(s.port);
            }
        }
    }
    tr.rule(if consume {
        Rule::SourceNodst
    } else {
        Rule::SourceCopies
    });
    Some((set, consume))
}

/// Combines a base delivery with §3.1 source copies.
#[inline]
fn with_copies(base: Option<PortId>, copies: Option<PortSet>, empty: DropReason) -> Verdict {
    match (base, copies) {
        (Some(p), None) => Verdict::Forward(p),
        (None, None) => Verdict::Drop(empty),
        (b, Some(mut s)) => {
            if let Some(p) = b {
                s.insert(p);
            }
            finish(s, empty)
        }
    }
}

#[inline]
fn finish(s: PortSet, empty: DropReason) -> Verdict {
    if s.is_empty() {
        Verdict::Drop(empty)
    } else {
        Verdict::Multi(s)
    }
}

/// Decides where a frame received on `ingress` goes, as the kernel's macvlan would.
#[inline]
pub fn decide(ingress: PortId, f: &Facts, t: &PortTable) -> Verdict {
    decide_with(ingress, f, t, &mut ())
}

/// [`decide`], and the rules it applied, in order: the same function, with a tracer
/// that records them.
pub fn explain(ingress: PortId, f: &Facts, t: &PortTable) -> (Verdict, Vec<Rule>) {
    let mut rules = Vec::new();
    let v = decide_with(ingress, f, t, &mut rules);
    (v, rules)
}

#[inline(always)]
fn decide_with(ingress: PortId, f: &Facts, t: &PortTable, tr: &mut impl Trace) -> Verdict {
    let Some(info) = t.port(ingress) else {
        tr.rule(Rule::UnknownPort);
        return Verdict::Drop(DropReason::UnknownPort);
    };
    match &info.role {
        Role::Uplink => from_wire(f, t, tr),
        // §2.2: what the host sends goes to the wire only, never to endpoints.
        Role::Host => {
            tr.rule(Rule::HostToWire);
            Verdict::Forward(t.uplink())
        }
        Role::Endpoint(ep) => from_endpoint(ingress, ep, f, t, tr),
    }
}

/// §2.1, T1–T4.
#[inline]
fn from_endpoint(
    x: PortId,
    ep: &EndpointInfo,
    f: &Facts,
    t: &PortTable,
    tr: &mut impl Trace,
) -> Verdict {
    if !ep.up {
        tr.rule(Rule::SenderDown);
        return Verdict::Drop(DropReason::PortDown);
    }
    if ep.mode != Mode::Bridge {
        tr.rule(Rule::T4);
        return Verdict::Forward(t.uplink()); // T4
    }
    if f.dst.is_multicast() {
        // T1: the other bridge siblings directly, and the wire.
        tr.rule(Rule::T1);
        let mut s = PortSet::new();
        flood(&mut s, t, ep.vlan, Modes::T1, Some(x), f);
        s.insert(t.uplink());
        return Verdict::Multi(s);
    }
    match t.lookup(ep.vlan, f.dst) {
        Some(y) if y == x => {
            tr.rule(Rule::Loop);
            Verdict::Drop(DropReason::Loop)
        }
        Some(y) if t.endpoint(y).is_some_and(|e| e.mode == Mode::Bridge) => {
            // T2: into the lower's receive path, so §3.1 source matching runs too.
            tr.rule(Rule::T2);
            match source_copies(t, ep.vlan, f.src, tr) {
                None => Verdict::Forward(y),
                Some((s, true)) => finish(s, DropReason::NodstConsumed),
                Some((s, false)) => with_copies(Some(y), Some(s), DropReason::NoDestination),
            }
        }
        _ => {
            tr.rule(Rule::T3);
            Verdict::Forward(t.uplink()) // T3
        }
    }
}

/// §3: frames arriving from the wire, reflected ones included.
#[inline]
fn from_wire(f: &Facts, t: &PortTable, tr: &mut impl Trace) -> Verdict {
    let vlan = f.vlan;
    if vlan != 0 && !t.has_network(vlan) {
        tr.rule(Rule::UnknownVlan);
        return Verdict::Drop(DropReason::UnknownVlan);
    }
    // §3.1 runs first, for unicast and multicast alike.
    let copies = match source_copies(t, vlan, f.src, tr) {
        Some((s, true)) => return finish(s, DropReason::NodstConsumed),
        Some((s, false)) => Some(s),
        None => None,
    };
    if !f.dst.is_multicast() {
        return wire_unicast(f, t, vlan, copies, tr);
    }
    let mut s = copies.unwrap_or_default();
    let sender = t
        .lookup(vlan, f.src)
        .and_then(|p| t.endpoint(p).map(|e| (p, e.mode)));
    let modes = match sender {
        None => {
            tr.rule(Rule::W6);
            Modes::W6
        }
        Some((_, Mode::Vepa)) => {
            tr.rule(Rule::W7);
            Modes::W7
        }
        Some((_, Mode::Bridge)) => {
            tr.rule(Rule::W8);
            Modes::W8
        }
        Some((x, _)) => {
            // W9: back to the private / passthru / source sender only, no mc filter,
            // and the host stack does not get it.
            tr.rule(Rule::W9);
            s.insert(x);
            return Verdict::Multi(s);
        }
    };
    flood(&mut s, t, vlan, modes, sender.map(|(p, _)| p), f);
    if let Some(h) = t.host() {
        s.insert(h);
    }
    finish(s, DropReason::NoDestination)
}

/// §3.2, W1–W5.
#[inline]
fn wire_unicast(
    f: &Facts,
    t: &PortTable,
    vlan: u16,
    copies: Option<PortSet>,
    tr: &mut impl Trace,
) -> Verdict {
    if let Some(pt) = t.passthru() {
        // W5: the passthru endpoint gets all unicast, whatever the destination; never the host.
        tr.rule(Rule::W5);
        let up = t.endpoint(pt).is_some_and(|e| e.up);
        return with_copies(up.then_some(pt), copies, DropReason::PassthruDown);
    }
    let dest = t
        .lookup(vlan, f.dst)
        .and_then(|p| t.endpoint(p).map(|e| (p, e)));
    match dest {
        Some((p, e)) if e.mode != Mode::Source => {
            // W1, unless strict private isolation forbids this sibling-to-sibling frame.
            if strict_blocks(t, vlan, e, f.src, p) {
                tr.rule(Rule::StrictPrivate);
                return with_copies(None, copies, DropReason::PrivateIsolation);
            }
            tr.rule(Rule::W1);
            with_copies(Some(p), copies, DropReason::NoDestination)
        }
        // W2 (the lower's own MAC), W3 (unknown or down), W4 (a source endpoint's MAC).
        _ => {
            tr.rule(if dest.is_some() {
                Rule::W4
            } else if f.dst == t.parent_mac() {
                Rule::W2
            } else {
                Rule::W3
            });
            with_copies(t.host(), copies, DropReason::NoDestination)
        }
    }
}

/// Strict private: unicast reflected between two endpoints of a network, either of
/// them private with `strict`, is blocked.
#[inline]
fn strict_blocks(
    t: &PortTable,
    vlan: u16,
    dest: &EndpointInfo,
    src: MacAddr,
    dest_port: PortId,
) -> bool {
    if !t.network(vlan).is_some_and(|n| n.any_strict()) {
        return false;
    }
    let strict = |e: &EndpointInfo| e.mode == Mode::Private && e.strict;
    let sender = match t.lookup(vlan, src) {
        Some(p) if p != dest_port => t.endpoint(p),
        _ => return false,
    };
    sender.is_some_and(|s| strict(s) || strict(dest))
}

#[cfg(test)]
mod tests;
