// SPDX-License-Identifier: GPL-2.0
//! Helpers shared by the host tests.
#![allow(dead_code)]

use apekit::elf::{self, ehdr, phdr};
use apekit::mkape::printf_statement;
use std::path::PathBuf;

pub const X86: u16 = apekit::ape::EM_X86_64;
pub const ARM: u16 = apekit::ape::EM_AARCH64;
pub const PAGE: u64 = 4096;

/// Offsets of the two synthetic program header tables.
pub const X86_PHOFF: u64 = 0x3000;
pub const ARM_PHOFF: u64 = 0x3100;

/// A valid header for `machine` pointing at its synthetic table.
pub fn hdr(machine: u16) -> [u8; 64] {
    let phoff = if machine == X86 { X86_PHOFF } else { ARM_PHOFF };
    ehdr(machine, elf::ET_EXEC, 0x401000, phoff, 2)
}

/// A synthetic APE: the magic line, `stmts` verbatim, padding, then one valid two-entry
/// program header table per CPU (text PT_LOAD containing the entry, and a PT_NOTE).
pub fn ape_with(magic: &[u8], stmts: &[Vec<u8>]) -> Vec<u8> {
    let mut f = magic.to_vec();
    f.extend_from_slice(b"\n'\n");
    for s in stmts {
        f.extend_from_slice(s);
    }
    assert!(
        f.len() <= X86_PHOFF as usize,
        "statements too long for the synthetic layout"
    );
    f.resize(X86_PHOFF as usize, b'\n');
    for _ in 0..2 {
        let start = f.len();
        f.extend_from_slice(&phdr(
            elf::PT_LOAD,
            elf::PF_R | elf::PF_X,
            0,
            0x400000,
            0x2000,
            0x2000,
        ));
        f.extend_from_slice(&phdr(4, elf::PF_R, 0, 0, 0, 0));
        f.resize(start + 0x100, 0);
    }
    f
}

pub fn stmt(h: &[u8]) -> Vec<u8> {
    printf_statement(h)
}

/// A valid fat APE, x86_64 header first.
pub fn fat() -> Vec<u8> {
    ape_with(b"MZqFpD='", &[stmt(&hdr(X86)), stmt(&hdr(ARM))])
}

/// Where scripts/fetch-apes.sh put cosmo-ent 1.4.4.
pub fn real_dir() -> PathBuf {
    let d = std::env::var_os("BINFMT_APE_REAL")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default())
                .join(".cache/binfmt-ape/apes/cosmo-ent-1.4.4")
        });
    assert!(
        d.join(".done").exists(),
        "real APEs missing in {}: run scripts/fetch-apes.sh",
        d.display()
    );
    d
}

/// Where scripts/fixtures.sh put the fixtures and corpus.
pub fn fixtures_dir() -> PathBuf {
    let d = std::env::var_os("BINFMT_APE_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../build/fixtures"));
    assert!(
        d.join("SHA256SUMS").exists(),
        "fixtures missing in {}: run scripts/fixtures.sh",
        d.display()
    );
    d
}

/// The decoder's verdict as the reference model spells it.
pub fn verdict(file: &[u8], machine: u16, page: u64) -> Result<(usize, [u8; 64]), &'static str> {
    apekit::select(file, machine, page)
        .map(|s| (s.index, s.statement.ehdr.0))
        .map_err(|e| e.name())
}
