//! The compiled steering object, parsed without loading it (no root): its programs,
//! its maps and the BTF layout of the structs shared with `src/bpf/types.rs`.
//!
//! Renaming or resizing a program, a map or a shared struct on one side only fails
//! here.

use std::collections::BTreeMap;
use std::mem::{offset_of, size_of};

use libbpf_rs::btf::types::Struct;
use libbpf_rs::btf::Btf;
use libbpf_rs::{MapType, ObjectBuilder, OpenObject, ProgramType};
use umacvlan::bpf::{
    DevVal, FastIn, FastKey, FastVal, FdbKey, FdbVal, PortCnt, COUNTERS, MAX_DEVS, MAX_FAST,
    MAX_FDB, MAX_GROUPS, MAX_PORT_STATS, MAX_SRCS, MAX_XSKS, OBJECT,
};

fn open() -> OpenObject {
    ObjectBuilder::default()
        .name("steer_bpf")
        .expect("object name")
        .open_memory(OBJECT)
        .expect("libbpf opens the embedded object")
}

#[test]
fn object_is_an_elf_for_bpf() {
    assert_eq!(&OBJECT[..4], b"\x7fELF", "ELF magic");
    assert_eq!(OBJECT[4], 2, "ELFCLASS64");
    // e_machine at offset 18: EM_BPF = 247.
    let machine = u16::from_le_bytes([OBJECT[18], OBJECT[19]]);
    let machine_be = u16::from_be_bytes([OBJECT[18], OBJECT[19]]);
    assert!(machine == 247 || machine_be == 247, "e_machine {machine}");
}

#[test]
fn programs_have_expected_names_types_and_sections() {
    let obj = open();
    let progs: BTreeMap<String, (ProgramType, String)> = obj
        .progs()
        .map(|p| {
            (
                p.name().to_string_lossy().into_owned(),
                (p.prog_type(), p.section().to_string_lossy().into_owned()),
            )
        })
        .collect();
    assert_eq!(progs.len(), 4, "exactly four programs: {progs:?}");
    for xdp in [umacvlan::bpf::XDP_PROG, umacvlan::bpf::XDP_TWIN_PROG] {
        assert_eq!(progs.get(xdp), Some(&(ProgramType::Xdp, "xdp".to_string())));
    }
    for tc in [umacvlan::bpf::TC_PROG, umacvlan::bpf::TC_PORT_PROG] {
        assert_eq!(
            progs.get(tc),
            Some(&(ProgramType::SchedCls, "tc".to_string()))
        );
    }
}

#[test]
fn maps_have_expected_types_and_sizes() {
    let obj = open();
    let maps: BTreeMap<String, (MapType, u32, u32, u32)> = obj
        .maps()
        .map(|m| {
            (
                m.name().to_string_lossy().into_owned(),
                (m.map_type(), m.key_size(), m.value_size(), m.max_entries()),
            )
        })
        // libbpf adds internal maps (.rodata, .bss, license is not one) only if used.
        .filter(|(name, _)| !name.contains('.'))
        .collect();
    let u32s = size_of::<u32>() as u32;
    let expected: BTreeMap<String, (MapType, u32, u32, u32)> = [
        ("xsks", (MapType::Xskmap, u32s, u32s, MAX_XSKS)),
        (
            "devs",
            (MapType::Hash, u32s, size_of::<DevVal>() as u32, MAX_DEVS),
        ),
        (
            "fdb",
            (
                MapType::Hash,
                size_of::<FdbKey>() as u32,
                size_of::<FdbVal>() as u32,
                MAX_FDB,
            ),
        ),
        (
            "srcs",
            (MapType::Hash, size_of::<FdbKey>() as u32, u32s, MAX_SRCS),
        ),
        (
            "groups",
            (MapType::Hash, size_of::<FdbKey>() as u32, u32s, MAX_GROUPS),
        ),
        (
            "fast",
            (
                MapType::Hash,
                size_of::<FastKey>() as u32,
                size_of::<FastVal>() as u32,
                MAX_FAST,
            ),
        ),
        (
            "fast_in",
            (
                MapType::Hash,
                u32s,
                size_of::<FastIn>() as u32,
                MAX_PORT_STATS,
            ),
        ),
        (
            "fast_wire",
            (
                MapType::Hash,
                size_of::<FdbKey>() as u32,
                size_of::<FastVal>() as u32,
                MAX_PORT_STATS,
            ),
        ),
        (
            "port_stats",
            (
                MapType::PercpuArray,
                u32s,
                size_of::<PortCnt>() as u32,
                MAX_PORT_STATS,
            ),
        ),
        (
            "counters",
            (
                MapType::PercpuArray,
                u32s,
                size_of::<u64>() as u32,
                COUNTERS as u32,
            ),
        ),
        // capture[port]: {dirs, snaplen}; capture_rb: the fast path's copies.
        ("capture", (MapType::Array, u32s, 2 * u32s, MAX_PORT_STATS)),
        ("capture_rb", (MapType::RingBuf, 0, 0, 1 << 22)),
    ]
    .into_iter()
    .map(|(n, v)| (n.to_string(), v))
    .collect();
    assert_eq!(maps, expected);
}

#[test]
fn object_has_one_global_only() {
    // The program's one global is `capture_on` in `.bss` (zero at load, set while a
    // capture runs); an accidental `.data`/`.rodata` map would change what the loader
    // must initialise.
    let obj = open();
    let internal: Vec<String> = obj
        .maps()
        .map(|m| m.name().to_string_lossy().into_owned())
        .filter(|n| n.contains('.'))
        .collect();
    assert_eq!(internal, ["steer_bp.bss"], "internal maps");
}

/// (member name, byte offset, size in bytes of the member's type)
fn btf_layout(btf: &Btf<'_>, name: &str) -> (usize, Vec<(String, u32)>) {
    let s: Struct<'_> = btf
        .type_by_name(name)
        .unwrap_or_else(|| panic!("struct {name} in the object's BTF"));
    let size = libbpf_rs::btf::HasSize::size(&s);
    let members = s
        .iter()
        .map(|m| {
            let off = match m.attr {
                libbpf_rs::btf::types::MemberAttr::Normal { offset } => offset,
                libbpf_rs::btf::types::MemberAttr::BitField { .. } => {
                    panic!("{name}: unexpected bitfield")
                }
            };
            assert_eq!(off % 8, 0, "{name}: member at bit offset {off}");
            (
                m.name
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                off / 8,
            )
        })
        .collect();
    (size, members)
}

#[test]
fn shared_structs_match_the_rust_mirror() {
    let btf = Btf::from_raw("steer_bpf", OBJECT)
        .expect("BTF parses")
        .expect("the object carries BTF (built with -g)");
    let owned = |v: &[(&str, usize)]| -> Vec<(String, u32)> {
        v.iter().map(|(n, o)| (n.to_string(), *o as u32)).collect()
    };

    assert_eq!(
        btf_layout(&btf, "fdb_key"),
        (
            size_of::<FdbKey>(),
            owned(&[
                ("vlan", offset_of!(FdbKey, vlan)),
                ("mac", offset_of!(FdbKey, mac))
            ])
        )
    );
    assert_eq!(
        btf_layout(&btf, "fdb_val"),
        (
            size_of::<FdbVal>(),
            owned(&[
                ("port", offset_of!(FdbVal, port)),
                ("flags", offset_of!(FdbVal, flags))
            ])
        )
    );
    assert_eq!(
        btf_layout(&btf, "dev_val"),
        (
            size_of::<DevVal>(),
            owned(&[
                ("role", offset_of!(DevVal, role)),
                ("xsk_base", offset_of!(DevVal, xsk_base)),
                ("mirror_ifindex", offset_of!(DevVal, mirror_ifindex)),
                ("flags", offset_of!(DevVal, flags)),
                ("queues", offset_of!(DevVal, queues)),
                ("max_len", offset_of!(DevVal, max_len)),
                ("port", offset_of!(DevVal, port)),
                ("mac", offset_of!(DevVal, mac)),
            ])
        )
    );
    assert_eq!(
        btf_layout(&btf, "fast_key"),
        (
            size_of::<FastKey>(),
            owned(&[
                ("class", offset_of!(FastKey, class)),
                ("mac", offset_of!(FastKey, mac)),
                ("pad", offset_of!(FastKey, pad))
            ])
        )
    );
    assert_eq!(
        btf_layout(&btf, "fast_val"),
        (
            size_of::<FastVal>(),
            owned(&[
                ("ifindex", offset_of!(FastVal, ifindex)),
                ("port", offset_of!(FastVal, port)),
                ("vlan", offset_of!(FastVal, vlan)),
                ("mtu", offset_of!(FastVal, mtu)),
                ("flags", offset_of!(FastVal, flags)),
            ])
        )
    );
    assert_eq!(
        btf_layout(&btf, "fast_in"),
        (
            size_of::<FastIn>(),
            owned(&[
                ("class", offset_of!(FastIn, class)),
                ("in_port", offset_of!(FastIn, in_port)),
                ("src", offset_of!(FastIn, src)),
                ("dflt", offset_of!(FastIn, dflt)),
            ])
        )
    );
    assert_eq!(
        btf_layout(&btf, "port_cnt"),
        (
            size_of::<PortCnt>(),
            owned(&[
                ("rx_packets", offset_of!(PortCnt, rx_packets)),
                ("rx_bytes", offset_of!(PortCnt, rx_bytes)),
                ("tx_packets", offset_of!(PortCnt, tx_packets)),
                ("tx_bytes", offset_of!(PortCnt, tx_bytes)),
                ("failed", offset_of!(PortCnt, failed)),
            ])
        )
    );
}

#[test]
fn licence_is_gpl_compatible() {
    // bpf_clone_redirect and bpf_redirect_map are GPL-only helpers.
    let needle = b"Dual MIT/GPL\0";
    assert!(
        OBJECT.windows(needle.len()).any(|w| w == needle),
        "license section"
    );
}
