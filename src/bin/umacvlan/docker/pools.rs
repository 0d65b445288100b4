//! The remote IPAM driver (`docker network create --ipam-driver umacvlan`): pools
//! and addresses handed out by the daemon's own IPAM ([`crate::ipam::Pool`]), kept
//! in its state, so they survive restarts of the daemon and of Docker.
//!
//! Docker's own IPAM stays the default (`-d umacvlan` alone): it is what Docker
//! users know, and the network driver honours whatever address it hands out. This
//! driver is for those who want umacvlan's addresses: the lowest free address of
//! `--ip-range` first, auxiliary addresses and the gateway never handed out twice,
//! and one plan whatever the runtime.
//!
//! A pool's id is its subnet; pools of one address space never overlap.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde_json::{json, Value};

use crate::ipam::{network_of, Pool};
use crate::state::PoolRecord;
use umacvlan::link::IpCidr;

/// The pools, by id.
pub type Pools = BTreeMap<String, PoolRecord>;

/// `Docker: RequestAddressType` of the gateway's request.
const GATEWAY: &str = "com.docker.network.gateway";

fn cidr(what: &str, s: &str) -> Result<IpCidr, String> {
    s.parse::<IpCidr>()
        .map(network_of)
        .map_err(|e| format!("{what} '{}': {e}", s.escape_debug()))
}

fn span_overlaps(a: IpCidr, b: IpCidr) -> bool {
    // Two prefixes overlap when the shorter one contains the other's address.
    let (short, long) = if a.prefix <= b.prefix { (a, b) } else { (b, a) };
    a.addr.is_ipv4() == b.addr.is_ipv4()
        && network_of(IpCidr {
            addr: long.addr,
            prefix: short.prefix,
        }) == short
}

/// `IpamDriver.RequestPool`.
pub fn request_pool(pools: &mut Pools, b: &Value) -> Result<Value, String> {
    let s = |k: &str| b.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
    let Some(given) = s("Pool") else {
        let family = if b.get("V6").and_then(Value::as_bool) == Some(true) {
            "--ipv6 needs an IPv6 --subnet"
        } else {
            "give --subnet"
        };
        return Err(format!(
            "the umacvlan IPAM driver picks no subnet of its own: {family}"
        ));
    };
    let pool = cidr("subnet", given)?;
    let sub = s("SubPool").map(|r| cidr("ip-range", r)).transpose()?;
    // The plan must make sense (a range inside the subnet, one family).
    Pool::new(pool, sub, vec![]).map_err(|e| format!("ip-range: {e}"))?;
    if let Some(other) = pools
        .values()
        .find(|p| cidr("pool", &p.pool).is_ok_and(|o| span_overlaps(o, pool)))
    {
        return Err(format!(
            "subnet {pool} overlaps {} of another umacvlan network",
            other.pool
        ));
    }
    let id = pool.to_string();
    pools.insert(
        id.clone(),
        PoolRecord {
            id: id.clone(),
            pool: pool.to_string(),
            sub_pool: sub.map(|r| r.to_string()),
            allocated: vec![],
        },
    );
    Ok(json!({ "PoolID": id, "Pool": pool.to_string(), "Data": {} }))
}

/// `IpamDriver.ReleasePool`: idempotent.
pub fn release_pool(pools: &mut Pools, b: &Value) -> Result<Value, String> {
    if let Some(id) = b.get("PoolID").and_then(Value::as_str) {
        pools.remove(id);
    }
    Ok(json!({}))
}

fn pool_of<'a>(pools: &'a mut Pools, b: &Value) -> Result<&'a mut PoolRecord, String> {
    let id = b
        .get("PoolID")
        .and_then(Value::as_str)
        .ok_or("the request has no PoolID")?;
    pools
        .get_mut(id)
        .ok_or_else(|| format!("the umacvlan IPAM driver has no pool {}", id.escape_debug()))
}

/// `IpamDriver.RequestAddress`: the address asked for if it is free, else the
/// lowest free one of the range (of the whole subnet for the gateway).
pub fn request_address(pools: &mut Pools, b: &Value) -> Result<Value, String> {
    let p = pool_of(pools, b)?;
    let subnet = cidr("pool", &p.pool)?;
    let gateway = b
        .pointer("/Options/RequestAddressType")
        .and_then(Value::as_str)
        == Some(GATEWAY);
    let range = match (&p.sub_pool, gateway) {
        (Some(r), false) => Some(cidr("ip-range", r)?),
        _ => None,
    };
    let plan = Pool::new(subnet, range, vec![]).map_err(|e| e.to_string())?;
    let used: Vec<(IpAddr, String)> = p
        .allocated
        .iter()
        .filter_map(|a| a.parse().ok())
        .map(|a| (a, "an earlier request".to_string()))
        .collect();
    let want = b
        .get("Address")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty());
    let got = match want {
        Some(a) => {
            let addr: IpAddr = a
                .split_once('/')
                .map_or(a, |(a, _)| a)
                .parse()
                .map_err(|_| format!("'{}' is not an IP address", a.escape_debug()))?;
            plan.check(
                IpCidr {
                    addr,
                    prefix: subnet.prefix,
                },
                &used,
            )
        }
        None => plan.allocate(&used),
    }
    .map_err(|e| e.to_string())?;
    p.allocated.push(got.addr.to_string());
    Ok(json!({ "Address": got.to_string(), "Data": {} }))
}

/// `IpamDriver.ReleaseAddress`: idempotent.
pub fn release_address(pools: &mut Pools, b: &Value) -> Result<Value, String> {
    let p = pool_of(pools, b)?;
    if let Some(a) = b.get("Address").and_then(Value::as_str) {
        let a = a.split_once('/').map_or(a, |(a, _)| a);
        p.allocated.retain(|x| x != a);
    }
    Ok(json!({}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(
        pools: &mut Pools,
        id: &str,
        want: Option<&str>,
        gateway: bool,
    ) -> Result<String, String> {
        let mut b = json!({ "PoolID": id });
        if let Some(w) = want {
            b["Address"] = json!(w);
        }
        if gateway {
            b["Options"] = json!({ "RequestAddressType": GATEWAY });
        }
        request_address(pools, &b).map(|v| v["Address"].as_str().unwrap().to_string())
    }

    #[test]
    fn pools_hand_out_the_lowest_free_address_and_take_released_ones_back() {
        let mut p = Pools::new();
        let r = request_pool(
            &mut p,
            &json!({ "Pool": "10.5.0.0/24", "SubPool": "10.5.0.32/28" }),
        )
        .unwrap();
        let id = r["PoolID"].as_str().unwrap().to_string();
        assert_eq!(addr(&mut p, &id, None, true).unwrap(), "10.5.0.1/24");
        assert_eq!(addr(&mut p, &id, None, false).unwrap(), "10.5.0.32/24");
        assert_eq!(
            addr(&mut p, &id, Some("10.5.0.7"), false).unwrap(),
            "10.5.0.7/24"
        );
        assert!(addr(&mut p, &id, Some("10.5.0.7"), false)
            .unwrap_err()
            .contains("in use"));
        assert!(addr(&mut p, &id, Some("10.6.0.7"), false)
            .unwrap_err()
            .contains("not in"));
        assert_eq!(addr(&mut p, &id, None, false).unwrap(), "10.5.0.33/24");
        release_address(&mut p, &json!({ "PoolID": id, "Address": "10.5.0.32/24" })).unwrap();
        assert_eq!(addr(&mut p, &id, None, false).unwrap(), "10.5.0.32/24");
        // Overlaps and missing subnets are refused; release is idempotent.
        let e = request_pool(&mut p, &json!({ "Pool": "10.5.0.128/25" })).unwrap_err();
        assert!(e.contains("overlaps 10.5.0.0/24"), "{e}");
        assert!(request_pool(&mut p, &json!({}))
            .unwrap_err()
            .contains("give --subnet"));
        assert!(request_pool(
            &mut p,
            &json!({ "Pool": "10.7.0.0/24", "SubPool": "10.8.0.0/28" })
        )
        .is_err());
        release_pool(&mut p, &json!({ "PoolID": id })).unwrap();
        release_pool(&mut p, &json!({ "PoolID": id })).unwrap();
        assert!(p.is_empty());
        assert!(addr(&mut p, &id, None, false)
            .unwrap_err()
            .contains("no pool"));
    }
}
