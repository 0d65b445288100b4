//! The switching core is a stack without cycles and without I/O (README, "Layers"):
//! each core module imports only the modules below it, and none of them reaches the
//! kernel layer, threads, files, sockets or processes. This test reads the sources,
//! so a new import that breaks the stack fails here, naming the file and the line.

use std::path::{Path, PathBuf};

/// The core, bottom up. A module may import only those before it.
const CORE: [&str; 8] = [
    "wire", "port", "table", "view", "mode", "fastpath", "switch", "topology",
];

/// What no core module may name outside its tests.
const FORBIDDEN: [&str; 21] = [
    "crate::sys",
    "crate::xsk",
    "crate::bpf",
    "crate::link",
    "crate::dataplane",
    "crate::app",
    "crate::ctl",
    // Spawning, sleeping or pinning; `thread::panicking` in a debug check is fine.
    "use std::thread",
    "std::thread::spawn",
    "std::thread::sleep",
    "std::thread::Builder",
    "std::thread::scope",
    "std::fs",
    // Sockets; the address types of std::net are plain values.
    "TcpStream",
    "TcpListener",
    "UdpSocket",
    "std::os::unix::net",
    "std::process",
    "libc::",
    "core_affinity",
    "crossbeam",
];

fn sources(module: &str) -> Vec<PathBuf> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let file = src.join(format!("{module}.rs"));
    let dir = src.join(module);
    let mut out = Vec::new();
    if file.exists() {
        out.push(file);
    }
    let mut stack = vec![dir];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs")
                // Unit tests may use anything.
                && p.file_name().is_some_and(|n| n != "tests.rs")
            {
                out.push(p);
            }
        }
    }
    assert!(!out.is_empty(), "no sources for core module {module}");
    out
}

/// The file's lines up to its `#[cfg(test)]` test module.
fn production_lines(text: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut lines = text.lines().enumerate().peekable();
    while let Some((i, l)) = lines.next() {
        if l.trim() == "#[cfg(test)]"
            && lines
                .peek()
                .is_some_and(|(_, n)| n.trim_start().starts_with("mod tests"))
        {
            break;
        }
        // Comments may mention anything.
        let code = l.split("//").next().unwrap_or("");
        out.push((i + 1, code));
    }
    out
}

#[test]
fn the_core_is_a_stack_without_cycles_and_without_io() {
    let mut wrong = Vec::new();
    for (rank, module) in CORE.iter().enumerate() {
        for file in sources(module) {
            let text = std::fs::read_to_string(&file).unwrap();
            let name = file.strip_prefix(env!("CARGO_MANIFEST_DIR")).unwrap();
            for (n, code) in production_lines(&text) {
                for f in FORBIDDEN {
                    if code.contains(f) {
                        wrong.push(format!("{}:{n}: {module} uses {f}", name.display()));
                    }
                }
                for (other_rank, other) in CORE.iter().enumerate() {
                    let uses = code.contains(&format!("crate::{other}::"))
                        || code.contains(&format!("crate::{other}::{{"))
                        || code.contains(&format!("crate::{other};"));
                    if uses && other_rank >= rank && other != module {
                        wrong.push(format!(
                            "{}:{n}: {module} imports {other}, which is not below it",
                            name.display()
                        ));
                    }
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "the layers are broken:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_check_sees_a_violation() {
    // The scanner itself: an upward import and an I/O module in production code are
    // seen, the same in a test module or a comment are not.
    let text = "use crate::mode::Mode; // crate::sys in a comment\nuse std::thread;\n#[cfg(test)]\nmod tests {\n    use crate::sys;\n}\n";
    let lines = production_lines(text);
    assert_eq!(lines.len(), 2);
    assert!(lines[0].1.contains("crate::mode::") && !lines[0].1.contains("crate::sys"));
    assert!(lines[1].1.contains("std::thread"));
    assert!(FORBIDDEN
        .iter()
        .any(|f| "std::thread::spawn(f)".contains(f)));
}
