//! The frame parser never panics, and agrees with etherparse on every field both read.
#![no_main]

use libfuzzer_sys::fuzz_target;
use umacvlan::wire::{Error, EthernetFrame};

fuzz_target!(|data: &[u8]| {
    let ours = EthernetFrame::new_checked(data);
    let theirs = etherparse::Ethernet2Slice::from_slice_without_fcs(data);
    match (&ours, &theirs) {
        (Err(Error::Runt), Err(_)) => return,
        (Err(Error::Runt), Ok(_)) => panic!("runt claimed for {} bytes", data.len()),
        (_, Err(_)) => panic!("etherparse refused a frame we accepted or found tags in"),
        _ => {}
    }
    let e = theirs.unwrap();
    let Ok(f) = ours else { return };
    assert_eq!(f.dst().octets(), e.destination());
    assert_eq!(f.src().octets(), e.source());
    if f.tag_count() == 0 {
        assert_eq!(f.ethertype().0, e.ether_type().0);
        assert_eq!(f.payload(), &data[14..]);
        return;
    }
    let v = etherparse::SingleVlanSlice::from_slice(&data[14..]).expect("tag checked");
    assert_eq!(f.tag(0).unwrap().vid(), v.vlan_identifier().value());
    if f.tag_count() == 1 {
        assert_eq!(f.ethertype().0, v.ether_type().0);
    } else {
        let inner = etherparse::SingleVlanSlice::from_slice(&data[18..]).expect("tag checked");
        assert_eq!(f.tag(1).unwrap().vid(), inner.vlan_identifier().value());
        assert_eq!(f.ethertype().0, inner.ether_type().0);
    }
    assert_eq!(f.payload().len() + f.payload_offset(), data.len());
});
