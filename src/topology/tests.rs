//! Control rules of spec §5: each refusal is typed, readable, and changes nothing.

use super::*;

fn parent() -> ParentConfig {
    ParentConfig {
        name: "eth1".into(),
        mac: "02:00:00:00:00:fe".parse().unwrap(),
        mtu: 1500,
    }
}

fn m(i: u8) -> MacAddr {
    MacAddr([2, 0, 0, 0, 0, i])
}

/// Applies `f`, expects it to fail, and checks that nothing changed.
fn refused<R: std::fmt::Debug>(
    t: &mut Topology,
    f: impl FnOnce(&mut Topology) -> Result<R, ControlError>,
) -> ControlError {
    let before_table = t.table();
    let before: Vec<Endpoint> = t.endpoints().cloned().collect();
    let before_parent = t.parent().clone();
    let err = f(t).expect_err("the change should have been refused");
    assert!(
        Arc::ptr_eq(&before_table, &t.table()),
        "a refused change published a table"
    );
    assert_eq!(
        before,
        t.endpoints().cloned().collect::<Vec<_>>(),
        "a refused change altered the endpoints"
    );
    assert_eq!(&before_parent, t.parent());
    err
}

#[test]
fn passthru_is_exclusive_both_ways() {
    let mut t = Topology::new(parent(), true).unwrap();
    let id = t
        .add_endpoint(EndpointConfig::new("pt", Mode::Passthru).with_mac(m(9)))
        .unwrap();
    assert_eq!(
        t.endpoint("pt").unwrap().mac(),
        parent().mac,
        "passthru takes the parent's MAC"
    );
    assert_eq!(t.table().passthru(), Some(id));
    let e = refused(&mut t, |t| {
        t.add_endpoint(EndpointConfig::new("b", Mode::Bridge).with_mac(m(1)))
    });
    assert_eq!(
        e.to_string(),
        "cannot add endpoint 'b': parent eth1 is in passthru mode, owned by endpoint 'pt'"
    );
    refused(&mut t, |t| {
        t.add_endpoint(EndpointConfig::new("pt2", Mode::Passthru))
    });

    let mut t = Topology::new(parent(), true).unwrap();
    t.add_endpoint(EndpointConfig::new("b", Mode::Bridge).with_mac(m(1)))
        .unwrap();
    let e = refused(&mut t, |t| {
        t.add_endpoint(EndpointConfig::new("pt", Mode::Passthru))
    });
    assert!(
        matches!(e, ControlError::PassthruBusy { count: 1, .. }),
        "{e}"
    );
    assert!(e
        .to_string()
        .contains("passthru needs the parent to itself"));
}

#[test]
fn passthru_cannot_be_toggled_but_other_modes_can() {
    let mut t = Topology::new(parent(), true).unwrap();
    t.add_endpoint(EndpointConfig::new("a", Mode::Bridge).with_mac(m(1)))
        .unwrap();
    for mode in [Mode::Vepa, Mode::Private, Mode::Source, Mode::Bridge] {
        t.set_mode("a", mode).unwrap();
        assert_eq!(t.endpoint("a").unwrap().cfg.mode, mode);
    }
    let e = refused(&mut t, |t| t.set_mode("a", Mode::Passthru));
    assert!(
        e.to_string()
            .contains("passthru cannot be switched on or off"),
        "{e}"
    );
    let mut t = Topology::new(parent(), true).unwrap();
    t.add_endpoint(EndpointConfig::new("pt", Mode::Passthru))
        .unwrap();
    refused(&mut t, |t| t.set_mode("pt", Mode::Bridge));
}

#[test]
fn mac_clashes_checked_at_up() {
    let mut t = Topology::new(parent(), true).unwrap();
    t.add_endpoint(EndpointConfig::new("a", Mode::Bridge).with_mac(m(1)))
        .unwrap();
    let e = refused(&mut t, |t| {
        t.add_endpoint(EndpointConfig::new("b", Mode::Vepa).with_mac(m(1)))
    });
    assert_eq!(
        e.to_string(),
        "MAC address 02:00:00:00:00:01 of endpoint 'b' is already in use by endpoint 'a'"
    );
    let e = refused(&mut t, |t| {
        t.add_endpoint(EndpointConfig::new("c", Mode::Bridge).with_mac(parent().mac))
    });
    assert!(e.to_string().ends_with("in use by the parent eth1"), "{e}");
    // Like the kernel: a down endpoint may share the address; bringing it up clashes.
    let mut down = EndpointConfig::new("b", Mode::Vepa).with_mac(m(1));
    down.up = false;
    t.add_endpoint(down).unwrap();
    refused(&mut t, |t| t.set_up("b", true));
    t.set_up("a", false).unwrap();
    t.set_up("b", true).unwrap();
    assert_eq!(t.table().lookup(0, m(1)), t.endpoint("b").map(|e| e.id));
    // The same MAC on another VLAN (another network) is fine.
    let mut other = EndpointConfig::new("c", Mode::Bridge).with_mac(m(1));
    other.vlan = 10;
    t.add_endpoint(other).unwrap();
    refused(&mut t, |t| t.set_mac("c", MacAddr::BROADCAST));
    refused(&mut t, |t| t.set_mac("c", parent().mac));
}

#[test]
fn mtu_rules() {
    let mut t = Topology::new(parent(), true).unwrap();
    let mut c = EndpointConfig::new("a", Mode::Bridge);
    c.mtu = Some(9000);
    let e = refused(&mut t, |t| t.add_endpoint(c));
    assert_eq!(
        e.to_string(),
        "MTU 9000 of endpoint 'a' exceeds the MTU 1500 of parent eth1"
    );
    t.add_endpoint(EndpointConfig::new("a", Mode::Bridge))
        .unwrap();
    assert_eq!(
        t.endpoint("a").unwrap().mtu(),
        1500,
        "default MTU is the parent's"
    );
    refused(&mut t, |t| t.set_mtu("a", 1600));
    refused(&mut t, |t| t.set_mtu("a", 60));
    t.set_parent_mtu(1300).unwrap();
    assert_eq!(
        t.endpoint("a").unwrap().mtu(),
        1300,
        "follows the parent down"
    );
    t.set_parent_mtu(1500).unwrap();
    assert_eq!(t.endpoint("a").unwrap().mtu(), 1300, "never grown back");
    t.set_mtu("a", 1500).unwrap();
}

#[test]
fn names_vlans_source_lists_and_addresses() {
    let mut t = Topology::new(parent(), false).unwrap();
    t.add_endpoint(EndpointConfig::new("a", Mode::Bridge))
        .unwrap();
    let mac = t.endpoint("a").unwrap().mac();
    assert!(
        mac.is_local_admin() && mac.is_unicast(),
        "random MAC is locally administered unicast"
    );
    assert_eq!(
        refused(&mut t, |t| t
            .add_endpoint(EndpointConfig::new("a", Mode::Vepa))),
        ControlError::DuplicateName("a".into())
    );
    refused(&mut t, |t| {
        t.add_endpoint(EndpointConfig::new("", Mode::Vepa))
    });
    let mut c = EndpointConfig::new("v", Mode::Bridge);
    c.vlan = 4095;
    assert!(refused(&mut t, |t| t.add_endpoint(c))
        .to_string()
        .contains("VLAN 4095"));
    let mut c = EndpointConfig::new("s", Mode::Vepa);
    c.sources = vec![m(7)];
    assert!(matches!(
        refused(&mut t, |t| t.add_endpoint(c)),
        ControlError::SourceOnly { .. }
    ));
    let mut c = EndpointConfig::new("s", Mode::Source);
    c.sources = vec![m(7)];
    c.nodst = true;
    let s = t.add_endpoint(c).unwrap();
    assert_eq!(t.table().sources(0, m(7))[0].port, s);
    t.set_mode("s", Mode::Vepa).unwrap();
    assert!(
        t.table().sources(0, m(7)).is_empty(),
        "leaving source mode flushes the list"
    );
    refused(&mut t, |t| {
        t.add_endpoint(EndpointConfig::new("bad", Mode::Vepa).with_mac(MacAddr::ZERO))
    });
    refused(&mut t, |t| t.remove_endpoint("nope"));
    refused(&mut t, |t| t.set_up("nope", true));
    refused(&mut t, |t| t.add_network(5000));
    let a = t.remove_endpoint("a").unwrap();
    assert!(t.table().endpoint(a).is_none());
    assert!(t.table().lookup(0, mac).is_none());
    assert!(Topology::new(
        ParentConfig {
            mac: MacAddr::BROADCAST,
            ..parent()
        },
        true
    )
    .is_err());
}

#[test]
fn ids_are_reused_after_removal() {
    let mut t = Topology::new(parent(), true).unwrap();
    let a = t
        .add_endpoint(EndpointConfig::new("a", Mode::Bridge))
        .unwrap();
    let b = t
        .add_endpoint(EndpointConfig::new("b", Mode::Bridge))
        .unwrap();
    assert_eq!((a, b), (PortId(2), PortId(3)));
    t.remove_endpoint("a").unwrap();
    assert_eq!(
        t.add_endpoint(EndpointConfig::new("c", Mode::Bridge))
            .unwrap(),
        PortId(2)
    );
}

#[test]
fn check_endpoint_predicts_add_without_changing_anything() {
    let mut t = Topology::new(parent(), true).unwrap();
    t.add_endpoint(EndpointConfig::new("a", Mode::Bridge).with_mac(m(1)))
        .unwrap();
    let before = t.table();
    let e = t
        .check_endpoint(EndpointConfig::new("b", Mode::Vepa).with_mac(m(1)))
        .unwrap_err();
    assert!(matches!(e, ControlError::MacInUse { .. }), "{e}");
    t.check_endpoint(EndpointConfig::new("b", Mode::Vepa).with_mac(m(2)))
        .unwrap();
    assert!(Arc::ptr_eq(&before, &t.table()));
    assert!(t.endpoint("b").is_none());
}
