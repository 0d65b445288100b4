//! The FDB behaves like a plain HashMap model under any sequence of operations: one
//! owner per key, a refused insert changes nothing.
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use umacvlan::port::PortId;
use umacvlan::table::{Fdb, FdbKey};
use umacvlan::wire::MacAddr;

fuzz_target!(|data: &[u8]| {
    let mut fdb = Fdb::new();
    let mut model: HashMap<FdbKey, PortId> = HashMap::new();
    for op in data.chunks_exact(3) {
        let key = FdbKey::new(u16::from(op[1] & 3), MacAddr([2, 0, 0, 0, 0, op[1] >> 2]));
        let port = PortId(u16::from(op[2] & 7));
        match op[0] % 3 {
            0 => {
                let res = fdb.insert_static(key, port);
                match model.get(&key) {
                    Some(p) if *p != port => assert!(res.is_err()),
                    _ => {
                        assert!(res.is_ok());
                        model.insert(key, port);
                    }
                }
            }
            1 => assert_eq!(fdb.remove(key), model.remove(&key)),
            _ => {
                fdb.remove_port(port);
                model.retain(|_, p| *p != port);
            }
        }
        assert_eq!(fdb.len(), model.len());
        for (k, p) in &model {
            assert_eq!(fdb.lookup(*k), Some(*p), "model key missing or moved");
        }
    }
});
