//! Builds the eBPF programs with clang and generates their libbpf-rs skeletons into
//! `OUT_DIR`: the steering program (`bpf/steer.bpf.c` → `steer.bpf.o`,
//! `steer.skel.rs`) with the `kernel` feature, and the benchmark sink
//! (`bpf/sink.bpf.c` → `sink.bpf.o`, `sink.skel.rs`) for the binary (`cli`). Without
//! `kernel` nothing is built, so the sans-I/O core needs no clang.
//!
//! The build is vmlinux-free: it uses the distribution's UAPI headers
//! (`/usr/include/linux`, plus the multiarch directory for `<asm/types.h>`) and the
//! libbpf headers (`<bpf/bpf_helpers.h>`) that libbpf-cargo extracts from libbpf-sys.

#[cfg(feature = "kernel")]
mod bpf {
    use std::env;
    use std::path::PathBuf;
    use std::process::Command;

    use libbpf_cargo::SkeletonBuilder;

    const HEADER: &str = "bpf/steer.h";

    /// The Debian multiarch triple (`x86_64-linux-gnu`) whose include directory holds
    /// `<asm/types.h>`; clang's BPF target does not search it by itself.
    fn multiarch() -> String {
        Command::new("gcc")
            .arg("-print-multiarch")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "x86_64-linux-gnu".to_owned())
    }

    /// Builds (source, object and skeleton stem) of each program.
    pub fn build(programs: &[(&str, &str)]) {
        for (src, _) in programs {
            println!("cargo:rerun-if-changed={src}");
        }
        println!("cargo:rerun-if-changed={HEADER}");
        println!("cargo:rerun-if-env-changed=CLANG");

        let out =
            PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR for build scripts"));
        let clang = env::var_os("CLANG").unwrap_or_else(|| "clang".into());
        let include = format!("-I/usr/include/{}", multiarch());

        for &(src, stem) in programs {
            // libbpf-cargo adds `-g -O2 -target bpf -c`, `-D__TARGET_ARCH_<arch>`,
            // `-fno-stack-protector` and `-I<extracted libbpf headers>` itself.
            let result = SkeletonBuilder::new()
                .source(src)
                .obj(out.join(format!("{stem}.bpf.o")))
                .clang(&clang)
                .clang_args([include.as_str(), "-Wall", "-Werror"])
                .build_and_generate(out.join(format!("{stem}.skel.rs")));
            if let Err(e) = result {
                panic!(
                    "building {src} failed (needs clang with the bpf target, libelf, and the \
                 kernel UAPI headers; set CLANG to pick a compiler): {e:#}"
                );
            }
        }
    }
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    #[cfg(feature = "kernel")]
    {
        let mut programs = vec![("bpf/steer.bpf.c", "steer")];
        if cfg!(feature = "cli") {
            programs.push(("bpf/sink.bpf.c", "sink"));
        }
        bpf::build(&programs);
    }
}
