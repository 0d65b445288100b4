//! `umacvlan explain`: asks the daemon what its switch decides for a frame, and prints
//! the answer: where it goes (or why it is dropped), the spec's rule for it, and what
//! a reflecting external switch would bring back.

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::Value;
use umacvlan::ctl::{Explain, Request};

/// Runs `explain` against the daemon on `socket`: one frame from `to`/`src`, or every
/// frame of the pcap file `pcap`.
pub fn main(socket: &Path, x: Explain, pcap: Option<&Path>, json: bool) -> Result<()> {
    let Some(file) = pcap else {
        let v = crate::request(socket, Request::Explain(x))?;
        if json {
            println!("{}", serde_json::to_string_pretty(&v)?);
        } else {
            print!("{}", render(&v));
        }
        return Ok(());
    };
    let f = std::fs::File::open(file).with_context(|| format!("{}", file.display()))?;
    let records = crate::pcap::read(f).with_context(|| format!("{}", file.display()))?;
    let mut all = Vec::new();
    for (i, r) in records.iter().enumerate() {
        let hex: String = r.data.iter().map(|b| format!("{b:02x}")).collect();
        let req = Explain {
            frame: Some(hex),
            ..x.clone()
        };
        let v = crate::request(socket, Request::Explain(req))
            .with_context(|| format!("frame {} of {}", i + 1, file.display()))?;
        if json {
            all.push(v);
        } else {
            print!("frame {}: {}", i + 1, render(&v));
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&all)?);
    }
    Ok(())
}

/// "delivered to db", "flooded to e2, e3, the wire (par)", "dropped
/// (private_isolation)". The uplink port is named after `parent`.
fn outcome(d: &Value, parent: &str) -> String {
    let egress: Vec<String> = d["egress"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|p| {
            if p == parent {
                format!("the wire ({})", crate::s(&Value::from(p)))
            } else {
                crate::s(&Value::from(p))
            }
        })
        .collect();
    let mut s = match d["verdict"].as_str() {
        Some("drop") => format!("dropped ({})", d["drop"].as_str().unwrap_or("?")),
        Some("flood") => format!("flooded to {}", egress.join(", ")),
        _ => format!("delivered to {}", egress.join(", ")),
    };
    if let Some(p) = d["fast_path"].as_str() {
        s += &format!(" — by the kernel fast path, straight to {p}");
    }
    s
}

fn rules(d: &Value, indent: &str) -> String {
    d["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            format!(
                "{indent}{}: {}\n",
                r["id"].as_str().unwrap_or("?"),
                r["text"].as_str().unwrap_or("")
            )
        })
        .collect()
}

/// The answer, for a terminal: one line, then the rules, then the reflection.
pub fn render(v: &Value) -> String {
    let party = |who: &Value, mode: &Value| match (who.is_string(), mode.as_str()) {
        (true, Some(m)) => format!("{} ({m})", crate::s(who)),
        (true, None) => crate::s(who),
        (false, _) => "?".into(),
    };
    let f = &v["frame"];
    let to = match v["to"].as_str() {
        Some(t) => party(&Value::from(t), &v["modes"]["to"]),
        None => f["dst"].as_str().unwrap_or("?").to_string(),
    };
    let from = party(&v["from"], &v["modes"]["from"]);
    let vlan = match v["vlan"].as_u64() {
        Some(0) | None => String::new(),
        Some(n) => format!(", VLAN {n}"),
    };
    let d = &v["decision"];
    let parent = v["parent"].as_str().unwrap_or("");
    let mut out = format!(
        "{from} → {to} on {}{vlan}: {}\n",
        crate::s(&v["network"]),
        outcome(d, parent)
    );
    out += &rules(d, "  ");
    if let Some(r) = v.get("if_reflected").filter(|r| !r.is_null()) {
        out += &format!(
            "  if the wire reflects it (hairpin, a VEPA switch): {}\n",
            outcome(r, parent)
        );
        out += &rules(r, "    ");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_answer_reads_as_a_sentence_with_its_rules() {
        let v = json!({
            "network": "lan", "parent": "par", "vlan": 0, "from": "web", "to": "db",
            "frame": {"src": "02:00:00:00:00:01", "dst": "02:00:00:00:00:02"},
            "modes": {"from": "private", "to": "private"},
            "decision": {"verdict": "forward", "egress": ["par"], "drop": null,
                "rules": [{"id": "T4", "text": "to the wire"}], "fast_path": "par"},
            "if_reflected": {"verdict": "drop", "egress": [], "drop": "private_isolation",
                "rules": [{"id": "strict", "text": "blocked"}], "fast_path": null},
        });
        assert_eq!(
            render(&v),
            "web (private) → db (private) on lan: delivered to the wire (par) — by the kernel fast path, straight to par\n  \
             T4: to the wire\n  \
             if the wire reflects it (hairpin, a VEPA switch): dropped (private_isolation)\n    \
             strict: blocked\n"
        );
    }
}
