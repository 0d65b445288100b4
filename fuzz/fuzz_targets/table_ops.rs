//! The FDB behaves like a plain HashMap model under any sequence of operations.
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use umacvlan::port::PortId;
use umacvlan::table::{EntryKind, Fdb, FdbKey};
use umacvlan::wire::MacAddr;

fuzz_target!(|data: &[u8]| {
    let mut fdb = Fdb::new();
    // key -> (port, None for static / Some(seen) for learned)
    let mut model: HashMap<FdbKey, (PortId, Option<u32>)> = HashMap::new();
    for op in data.chunks_exact(4) {
        let key = FdbKey::new(u16::from(op[1] & 3), MacAddr([2, 0, 0, 0, 0, op[1] >> 2]));
        let port = PortId(u16::from(op[2] & 7));
        let now = u32::from(op[3]);
        match op[0] % 5 {
            0 => {
                let res = fdb.insert_static(key, port);
                match model.get(&key) {
                    Some((p, None)) if *p != port => assert!(res.is_err()),
                    _ => {
                        assert!(res.is_ok());
                        model.insert(key, (port, None));
                    }
                }
            }
            1 => {
                fdb.learn(key, port, now);
                if !matches!(model.get(&key), Some((_, None))) {
                    model.insert(key, (port, Some(now)));
                }
            }
            2 => assert_eq!(fdb.remove(key).map(|e| e.port), model.remove(&key).map(|v| v.0)),
            3 => {
                let max = u32::from(op[2]);
                let before = model.len();
                model.retain(|_, (_, seen)| seen.is_none_or(|s| now.wrapping_sub(s) <= max));
                assert_eq!(fdb.expire(now, max), before - model.len());
            }
            _ => {
                fdb.remove_port(port);
                model.retain(|_, v| v.0 != port);
            }
        }
        assert_eq!(fdb.len(), model.len());
        for (k, (p, seen)) in &model {
            let e = fdb.get(*k).expect("model key missing");
            assert_eq!(e.port, *p);
            assert_eq!(e.kind == EntryKind::Static, seen.is_none());
        }
    }
});
