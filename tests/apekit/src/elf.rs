// SPDX-License-Identifier: GPL-2.0

//! Just enough ELF64 to build test APEs: header and program header builders and accessors.

pub const ET_EXEC: u16 = 2;
pub const ET_DYN: u16 = 3;
pub const PT_LOAD: u32 = 1;
pub const PT_DYNAMIC: u32 = 2;
pub const PT_INTERP: u32 = 3;
pub const PT_NULL: u32 = 0;
pub const PT_GNU_STACK: u32 = 0x6474_e551;
pub const PT_GNU_PROPERTY: u32 = 0x6474_e553;
pub const PF_X: u32 = 1;
pub const PF_W: u32 = 2;
pub const PF_R: u32 = 4;

pub fn get16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().unwrap())
}
pub fn get32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}
pub fn get64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}
pub fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}
pub fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}
pub fn put64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// Offsets of `Elf64_Ehdr` fields.
pub mod eh {
    pub const CLASS: usize = 4;
    pub const DATA: usize = 5;
    pub const VERSION: usize = 6;
    pub const OSABI: usize = 7;
    pub const TYPE: usize = 16;
    pub const MACHINE: usize = 18;
    pub const E_VERSION: usize = 20;
    pub const ENTRY: usize = 24;
    pub const PHOFF: usize = 32;
    pub const SHOFF: usize = 40;
    pub const EHSIZE: usize = 52;
    pub const PHENTSIZE: usize = 54;
    pub const PHNUM: usize = 56;
    pub const SHNUM: usize = 60;
}

/// Offsets of `Elf64_Phdr` fields.
pub mod ph {
    pub const TYPE: usize = 0;
    pub const FLAGS: usize = 4;
    pub const OFFSET: usize = 8;
    pub const VADDR: usize = 16;
    pub const PADDR: usize = 24;
    pub const FILESZ: usize = 32;
    pub const MEMSZ: usize = 40;
    pub const ALIGN: usize = 48;
}

/// A 64-byte ELF64 little-endian header.
pub fn ehdr(machine: u16, e_type: u16, entry: u64, phoff: u64, phnum: u16) -> [u8; 64] {
    let mut h = [0u8; 64];
    h[..4].copy_from_slice(b"\x7fELF");
    h[eh::CLASS] = 2;
    h[eh::DATA] = 1;
    h[eh::VERSION] = 1;
    put16(&mut h, eh::TYPE, e_type);
    put16(&mut h, eh::MACHINE, machine);
    put32(&mut h, eh::E_VERSION, 1);
    put64(&mut h, eh::ENTRY, entry);
    put64(&mut h, eh::PHOFF, phoff);
    put16(&mut h, eh::EHSIZE, 64);
    put16(&mut h, eh::PHENTSIZE, 56);
    put16(&mut h, eh::PHNUM, phnum);
    h
}

/// A 56-byte program header.
pub fn phdr(p_type: u32, flags: u32, offset: u64, vaddr: u64, filesz: u64, memsz: u64) -> [u8; 56] {
    let mut p = [0u8; 56];
    put32(&mut p, ph::TYPE, p_type);
    put32(&mut p, ph::FLAGS, flags);
    put64(&mut p, ph::OFFSET, offset);
    put64(&mut p, ph::VADDR, vaddr);
    put64(&mut p, ph::PADDR, vaddr);
    put64(&mut p, ph::FILESZ, filesz);
    put64(&mut p, ph::MEMSZ, memsz);
    put64(&mut p, ph::ALIGN, 0x10000);
    p
}

/// The name of an `e_machine` this project knows.
pub fn machine_name(m: u16) -> &'static str {
    match m {
        62 => "x86_64",
        183 => "aarch64",
        _ => "other",
    }
}
