// SPDX-License-Identifier: GPL-2.0

//! `apeinfo [--arch x86_64|aarch64] [--page-size N] [--json] FILE...`: explains what
//! binfmt_ape will do with each file: its magic, every `printf` header (offset, machine, type,
//! entry, program headers, verdict), which header each CPU selects, and why a file is refused.
//! Exits 0 when every file would run on the requested CPU (default: this host's), else 1.

use apekit::ape::{self, Magic};
use apekit::elf::machine_name;
use std::process::ExitCode;

const MACHINES: [(u16, &str); 2] = [(ape::EM_X86_64, "x86_64"), (ape::EM_AARCH64, "aarch64")];

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn json_str(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// The verdict for one header on its own machine: "ok" or the failing field.
fn header_verdict(file: &[u8], h: &ape::Ehdr, page: u64) -> String {
    if let Err(f) = h.check(h.e_machine()) {
        return f.name().into();
    }
    let off = h.e_phoff() as usize;
    let Some(table) = file.get(off..off.saturating_add(h.phdr_table_len())) else {
        return "phoff".into();
    };
    match ape::check_phdrs(h, table, page) {
        Ok(()) => "ok".into(),
        Err(f) => f.name().into(),
    }
}

fn type_name(t: u16) -> String {
    match t {
        2 => "ET_EXEC".into(),
        3 => "ET_DYN".into(),
        t => format!("type {t}"),
    }
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (mut json, mut page, mut files) = (false, 4096u64, Vec::new());
    let mut arch = if cfg!(target_arch = "aarch64") {
        "aarch64"
    } else {
        "x86_64"
    }
    .to_string();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--json" => json = true,
            "--arch" => arch = args.next().unwrap_or_default(),
            "--page-size" => page = args.next().and_then(|p| p.parse().ok()).unwrap_or(0),
            "-h" | "--help" => {
                println!("usage: apeinfo [--arch x86_64|aarch64] [--page-size N] [--json] FILE...");
                return ExitCode::SUCCESS;
            }
            _ => files.push(a),
        }
    }
    let Some(&(want, _)) = MACHINES.iter().find(|m| m.1 == arch) else {
        eprintln!("apeinfo: unknown --arch '{arch}' (x86_64 or aarch64)");
        return ExitCode::from(2);
    };
    if files.is_empty() || !page.is_power_of_two() {
        eprintln!("apeinfo: need FILE... (and a power-of-two --page-size)");
        return ExitCode::from(2);
    }
    let mut all_run = true;
    for path in &files {
        let file = match std::fs::read(path) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("apeinfo: {path}: {e}");
                all_run = false;
                continue;
            }
        };
        let window = &file[..file.len().min(ape::WINDOW)];
        let magic = Magic::of(window).map(|m| String::from_utf8_lossy(m.bytes()).into_owned());
        let headers: Vec<_> = ape::statements(window).collect();
        let verdicts: Vec<_> = MACHINES
            .iter()
            .map(|&(m, n)| (n, apekit::select(&file, m, page)))
            .collect();
        let runs =
            verdicts.iter().any(|(_, v)| v.is_ok()) && apekit::select(&file, want, page).is_ok();
        all_run &= runs;
        if json {
            let hs: Vec<String> = headers
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let h = &s.ehdr;
                    format!(
                        "{{\"index\":{i},\"offset\":{},\"machine\":{},\"e_machine\":{},\"type\":{},\"entry\":{},\"phoff\":{},\"phnum\":{},\"verdict\":{},\"ehdr_hex\":\"{}\"}}",
                        s.offset,
                        json_str(machine_name(h.e_machine())),
                        h.e_machine(),
                        json_str(&type_name(h.e_type())),
                        h.e_entry(),
                        h.e_phoff(),
                        h.e_phnum(),
                        json_str(&header_verdict(&file, h, page)),
                        hex(&h.0)
                    )
                })
                .collect();
            let sel: Vec<String> = verdicts
                .iter()
                .map(|(n, v)| {
                    format!(
                        "{}:{}",
                        json_str(n),
                        v.map(|s| s.index.to_string()).unwrap_or("null".into())
                    )
                })
                .collect();
            let errs: Vec<String> = verdicts
                .iter()
                .map(|(n, v)| {
                    format!(
                        "{}:{}",
                        json_str(n),
                        v.err().map(|e| json_str(e.name())).unwrap_or("null".into())
                    )
                })
                .collect();
            println!(
                "{{\"file\":{},\"magic\":{},\"headers\":[{}],\"selected\":{{{}}},\"error\":{{{}}},\"arch\":{},\"runs\":{}}}",
                json_str(path),
                magic.as_deref().map(json_str).unwrap_or("null".into()),
                hs.join(","),
                sel.join(","),
                errs.join(","),
                json_str(&arch),
                runs
            );
        } else {
            println!(
                "{path}: magic {}",
                magic.as_deref().unwrap_or("none (not an APE)")
            );
            for (i, s) in headers.iter().enumerate() {
                let h = &s.ehdr;
                println!(
                    "  header {i} at {:#x}: {} {} entry {:#x} phoff {:#x} phnum {}: {}",
                    s.offset,
                    machine_name(h.e_machine()),
                    type_name(h.e_type()),
                    h.e_entry(),
                    h.e_phoff(),
                    h.e_phnum(),
                    header_verdict(&file, h, page)
                );
            }
            for (n, v) in &verdicts {
                match v {
                    Ok(s) => println!("  {n}: runs with header {}", s.index),
                    Err(e) => println!("  {n}: refused: {}", e.name()),
                }
            }
        }
    }
    if all_run {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
