//! Root test: an endpoint veth is created through netlink, moved into its namespace,
//! renamed, addressed and brought up; a clash is refused and leaves nothing behind.

mod common;

use common::{require_root, Lab};
use umacvlan::link::{Links, Netns, VethEndpoint};
use umacvlan::wire::MacAddr;

#[test]
fn veth_endpoint_lands_configured_in_its_namespace() {
    if !require_root("veth_endpoint_lands_configured_in_its_namespace") {
        return;
    }
    let mut lab = Lab::new("umvl");
    let sw = lab.ns("sw");
    let c1 = lab.ns("c1");
    let mac: MacAddr = "02:42:ac:11:00:02".parse().unwrap();
    let ep = VethEndpoint {
        host_ifname: "umvh1".into(),
        netns: c1.clone(),
        ifname: "eth0".into(),
        mac,
        mtu: 1400,
        addrs: vec!["10.77.0.2/24".parse().unwrap()],
        queues: 2,
    };
    let swns = Netns::open(&sw).unwrap();
    let ep2 = ep.clone();
    let host_index = swns
        .run(move || ep2.create(&Links::open().unwrap()))
        .unwrap()
        .unwrap();
    assert!(host_index > 0);

    let inner = Links::open_in(&Netns::open(&c1).unwrap()).unwrap();
    let e = inner.require("eth0").unwrap();
    assert_eq!((e.mac, e.mtu, e.up), (mac, 1400, true));
    let addrs = lab.exec(&c1, &["ip", "-4", "-o", "addr", "show", "dev", "eth0"]);
    assert!(String::from_utf8_lossy(&addrs.stdout).contains("10.77.0.2/24"));
    let outer = Links::open_in(&swns).unwrap();
    assert!(outer.require("umvh1").unwrap().up);

    // A second endpoint whose name is taken inside the namespace is refused, and the
    // half-made pair is removed again.
    let clash = VethEndpoint {
        host_ifname: "umvh2".into(),
        ..ep
    };
    let err = swns
        .run(move || clash.create(&Links::open().unwrap()))
        .unwrap()
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("already exists in network namespace"),
        "{err}"
    );
    assert!(
        outer.get("umvh2").unwrap().is_none(),
        "the failed endpoint left its veth behind"
    );
    assert_eq!(
        inner
            .list()
            .unwrap()
            .iter()
            .filter(|l| l.name.starts_with("umvh"))
            .count(),
        0
    );
}
