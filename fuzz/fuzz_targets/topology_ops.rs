//! Random sequences of control operations on a topology: whatever is refused changes
//! nothing (neither the endpoints nor the published table), `check_endpoint` predicts
//! `add_endpoint`, and after every operation the published table agrees with the
//! endpoints: every endpoint has its port with its mode, VLAN and MTU, exactly the up
//! ones own their (VLAN, MAC) in the FDB, and nothing else is there.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use umacvlan::mode::Mode;
use umacvlan::topology::{EndpointConfig, ParentConfig, Topology};
use umacvlan::wire::MacAddr;

const MODES: [Mode; 5] = [Mode::Bridge, Mode::Vepa, Mode::Private, Mode::Passthru, Mode::Source];
const NAMES: [&str; 6] = ["a", "b", "c", "d", "e", ""];

fn mac(b: u8) -> Option<MacAddr> {
    match b % 6 {
        0 => None,
        1 => Some(MacAddr([2, 0, 0, 0, 0, 0xfe])), // the parent's
        2 => Some(MacAddr([1, 0, 0x5e, 0, 0, 1])), // multicast: refused
        n => Some(MacAddr([2, 0, 0, 0, 0, n])),
    }
}

fn snapshot(t: &Topology) -> Vec<(String, u16, EndpointConfig)> {
    let mut v: Vec<_> = t.endpoints().map(|e| (e.cfg.name.clone(), e.id.0, e.cfg.clone())).collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fn check_table(t: &Topology) {
    let table = t.table();
    let mut up = 0;
    for e in t.endpoints() {
        let info = table.endpoint(e.id).expect("every endpoint has its port in the table");
        assert_eq!((info.mode, info.vlan, info.up, info.mac), (e.cfg.mode, e.cfg.vlan, e.cfg.up, e.mac()));
        assert_eq!(table.port(e.id).unwrap().mtu, e.mtu());
        let owner = table.lookup(e.cfg.vlan, e.mac());
        if e.cfg.up {
            up += 1;
            assert_eq!(owner, Some(e.id), "an up endpoint owns its address");
        } else {
            assert_ne!(owner, Some(e.id), "a down endpoint owns nothing");
        }
    }
    assert_eq!(table.fdb().len(), up, "the FDB holds the up endpoints and nothing else");
    let endpoints_in_table = table.ports().filter(|(_, p)| p.endpoint().is_some()).count();
    assert_eq!(endpoints_in_table, t.endpoints().count(), "no stale port in the table");
}

fuzz_target!(|data: &[u8]| {
    let parent = ParentConfig { name: "fz0".into(), mac: MacAddr([2, 0, 0, 0, 0, 0xfe]), mtu: 1500 };
    let mut t = Topology::new(parent, true).unwrap();
    for op in data.chunks_exact(4) {
        let name = NAMES[op[1] as usize % NAMES.len()];
        let before = (snapshot(&t), t.table());
        let refused = match op[0] % 8 {
            0 | 1 => {
                let mut c = EndpointConfig::new(name, MODES[op[2] as usize % MODES.len()]);
                c.mac = mac(op[3]);
                c.vlan = [0, 0, 10, 4095][op[2] as usize / 8 % 4];
                c.up = op[3] & 0x80 == 0;
                c.mtu = [None, Some(1500), Some(9000), Some(500)][op[3] as usize / 8 % 4];
                if c.mode == Mode::Source {
                    c.sources = vec![MacAddr([2, 0, 0, 0, 0, 9])];
                }
                let predicted = t.check_endpoint(c.clone());
                assert_eq!(snapshot(&t), before.0, "check_endpoint changed something");
                let got = t.add_endpoint(c);
                assert_eq!(predicted.is_ok(), got.is_ok(), "check_endpoint predicts add: {predicted:?} vs {got:?}");
                got.is_err()
            }
            2 => t.remove_endpoint(name).is_err(),
            3 => t.set_up(name, op[2] & 1 == 0).is_err(),
            4 => t.set_mode(name, MODES[op[2] as usize % MODES.len()]).is_err(),
            5 => match mac(op[2]) {
                Some(m) => t.set_mac(name, m).is_err(),
                None => false,
            },
            6 => t.set_mtu(name, [1500, 9000, 68, 0][op[2] as usize % 4]).is_err(),
            _ => t.add_network([0, 10, 20, 4095, 5000][op[2] as usize % 5]).is_err(),
        };
        if refused {
            assert_eq!(snapshot(&t), before.0, "a refused operation changed the endpoints");
            assert!(Arc::ptr_eq(&t.table(), &before.1), "a refused operation published a table");
        }
        check_table(&t);
    }
});
