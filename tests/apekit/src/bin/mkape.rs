// SPDX-License-Identifier: GPL-2.0

//! `mkape [--magic mz|jartsr|debug] -o OUT ELF...`: writes one APE holding the given static
//! ELF64 executables (x86_64 and/or aarch64), with the `printf` headers in argument order.

use apekit::{ape::Magic, mkape};
use std::process::ExitCode;

fn usage() -> ExitCode {
    eprintln!("usage: mkape [--magic mz|jartsr|debug] -o OUT ELF...");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (mut magic, mut out, mut inputs) = (Magic::Mz, None, Vec::new());
    while let Some(a) = args.next() {
        match a.as_str() {
            "--magic" => {
                magic = match args.next().as_deref() {
                    Some("mz") => Magic::Mz,
                    Some("jartsr") => Magic::Jartsr,
                    Some("debug") => Magic::Debug,
                    _ => return usage(),
                }
            }
            "-o" => out = args.next(),
            "-h" | "--help" => return usage(),
            _ => inputs.push(a),
        }
    }
    let (Some(out), false) = (out, inputs.is_empty()) else {
        return usage();
    };
    let elfs = match inputs
        .iter()
        .map(std::fs::read)
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(e) => e,
        Err(e) => {
            eprintln!("mkape: {e}");
            return ExitCode::FAILURE;
        }
    };
    match mkape::build(magic, &elfs) {
        Ok(bytes) => {
            if let Err(e) = std::fs::write(&out, bytes) {
                eprintln!("mkape: {out}: {e}");
                return ExitCode::FAILURE;
            }
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o755));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mkape: {e}");
            ExitCode::FAILURE
        }
    }
}
