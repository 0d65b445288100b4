//! Root test, through the real daemon and CLI: a continuous ping between two
//! endpoints loses no packet while a third endpoint is added and removed 20 times.

mod common;

use common::daemon::{lan_config, DaemonProc};
use common::require_root;
use common::topo::{ep_ip, ping_in_background, Topo};

#[test]
fn a_ping_loses_nothing_while_an_endpoint_comes_and_goes_20_times() {
    if !require_root("a_ping_loses_nothing_while_an_endpoint_comes_and_goes_20_times") {
        return;
    }
    let t = Topo::new("umvg", false, 3);
    let config = lan_config(&t, 2, &[]);
    let d = DaemonProc::start(&t.host, "umvg", &config);
    assert!(
        t.lab.try_exec(
            &t.eps[0],
            &["ping", "-q", "-n", "-c", "1", "-W", "1", &ep_ip(2)]
        ),
        "warm-up ping"
    );
    // 150 pings, 20 ms apart: about 3 s, longer than the 20 add/remove cycles.
    let pinger = ping_in_background(&t.eps[0], &ep_ip(2), 150);
    let ip3 = format!("{}/24", ep_ip(3));
    for i in 0..20 {
        let add = d.cli(&[
            "endpoint",
            "add",
            "e3",
            "--network",
            "lan",
            "--netns",
            &t.eps[2],
            "--ip",
            &ip3,
        ]);
        assert!(
            add.status.success(),
            "add #{i}: {}",
            String::from_utf8_lossy(&add.stderr)
        );
        let rm = d.cli(&["endpoint", "rm", "e3"]);
        assert!(
            rm.status.success(),
            "rm #{i}: {}",
            String::from_utf8_lossy(&rm.stderr)
        );
    }
    let out = pinger.join().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("150 received"),
        "pings lost while e3 came and went:\n{text}"
    );
    d.stop();
}
