//! Root test: an endpoint veth is created through netlink, moved into its namespace,
//! renamed, addressed and brought up; a clash is refused and leaves nothing behind.

mod common;

use common::{require_root, run, Lab};
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

/// A namespace made by `Netns::create` before `/run/netns` is a mount point can still
/// be deleted after `ip netns add` ran: `create` makes the directory a shared mount
/// point first, as iproute2 does, so `ip netns add` does not bind a new `/run/netns`
/// over the namespaces already mounted (which hid them from `ip netns del` and
/// `umount` for good: a crashed run's leftovers survived every later clean-up). All
/// of it in a mount namespace of this test's thread only, whose `/run` is an empty
/// tmpfs: nothing shows outside, and it all goes with the thread.
#[test]
fn a_namespace_made_before_ip_netns_add_can_still_be_deleted() {
    if !require_root("a_namespace_made_before_ip_netns_add_can_still_be_deleted") {
        return;
    }
    std::thread::spawn(|| {
        // SAFETY: CLONE_NEWNS (with the CLONE_FS it implies) gives only this thread a
        // copy of the mount namespace and of its root and cwd.
        let rc = unsafe { libc::unshare(libc::CLONE_NEWNS) };
        assert_eq!(rc, 0, "unshare: {}", std::io::Error::last_os_error());
        // Children of this thread share its mount namespace.
        run("mount", &["--make-rprivate", "/"]);
        run("mount", &["-t", "tmpfs", "tmpfs", "/run"]);
        std::fs::create_dir("/run/netns").unwrap();
        let first = format!("umvl{}-first", std::process::id());
        let second = format!("umvl{}-second", std::process::id());
        Netns::create(&first).expect("create");
        run("ip", &["netns", "add", &second]);
        Netns::delete(&first).expect("a namespace made first is still deleted");
        run("ip", &["netns", "del", &second]);
        let left: Vec<_> = std::fs::read_dir("/run/netns")
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(left.is_empty(), "left in /run/netns: {left:?}");
    })
    .join()
    .unwrap();
}
