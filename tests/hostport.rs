//! Root test, through the real daemon: `host_port` lets the host reach its own
//! endpoints — the best-known limitation of kernel macvlan, fixed as an opt-in — and
//! the daemon's Prometheus endpoint counts it.

mod common;

use common::daemon::DaemonProc;
use common::require_root;
use common::topo::{ep_ip, ep_mac, Topo};

#[test]
fn the_host_reaches_its_endpoints_through_the_host_port() {
    if !require_root("the_host_reaches_its_endpoints_through_the_host_port") {
        return;
    }
    let t = Topo::new("umvh", false, 1);
    let config = format!(
        "[daemon]\nmetrics = '127.0.0.1:9482'\n\n[[network]]\nname = 'lan'\nparent = 'par'\nhost_port = 'umvhp0'\n\n[[network.endpoint]]\nname = 'e1'\nnetns = '{}'\nmac = '{}'\nip = '{}/24'\n",
        t.eps[0],
        ep_mac(1),
        ep_ip(1)
    );
    let d = DaemonProc::start(&t.host, "umvh", &config);
    let e1 = ep_ip(1);
    // Without the host port the host cannot reach its child (no hairpin on the wire).
    assert!(!t.lab.try_exec(
        &t.host,
        &["ping", "-q", "-n", "-c", "2", "-i", "0.2", "-W", "1", "-I", "par", &e1]
    ));
    // The host port is an interface of the daemon's namespace; give it an address.
    let reach_e1 = |when: &str| {
        t.lab
            .ip(&t.host, &["addr", "add", "10.9.0.2/32", "dev", "umvhp0"]);
        t.lab.ip(
            &t.host,
            &[
                "route",
                "add",
                &format!("{e1}/32"),
                "dev",
                "umvhp0",
                "src",
                "10.9.0.2",
            ],
        );
        assert!(
            t.lab.try_exec(
                &t.host,
                &["ping", "-q", "-n", "-c", "3", "-i", "0.2", "-W", "1", &e1]
            ),
            "the host cannot reach e1 through its host port {when}"
        );
    };
    reach_e1("");
    // After kill -9 the endpoint's veth is taken over and the host port made again
    // (the earlier one, kept with the endpoint veths at the start, is released).
    let d = d.restart();
    reach_e1("after kill -9 and a restart");
    let inspect =
        String::from_utf8_lossy(&d.cli(&["network", "inspect", "lan"]).stdout).to_string();
    assert!(inspect.contains("\"host_port\": \"umvhp0\""), "{inspect}");
    d.stop();
    let links = String::from_utf8_lossy(&t.lab.exec(&t.host, &["ip", "-o", "link", "show"]).stdout)
        .to_string();
    assert!(
        !links.contains("umvhp0"),
        "the host port was left behind:\n{links}"
    );
}
