// SPDX-License-Identifier: GPL-2.0

//! Writes APEs from static ELF64 executables.
//!
//! Layout: the shell prologue (magic, a shell script that explains itself and exits 126, one
//! `printf` statement per CPU made only of octal escapes), then each input ELF whole at the
//! next 64 KiB boundary. Each image's `e_phoff`, `e_shoff` and `p_offset`s are moved by its
//! base, which keeps every `p_offset` congruent to its `p_vaddr` modulo 64 KiB (any page size
//! up to 64 KiB), and keeps the program headers inside the first PT_LOAD, so `AT_PHDR` points
//! at them as it does for the plain ELF.

use crate::ape::Magic;
use crate::elf::{self, eh, get16, get32, get64, ph, put32, put64};

/// Alignment of each image in the file.
pub const IMAGE_ALIGN: usize = 0x10000;

/// One CPU's image inside an APE.
#[derive(Clone, Debug)]
pub struct Image {
    /// `e_machine`.
    pub machine: u16,
    /// The header the `printf` statement spells (already relocated to `base`).
    pub ehdr: [u8; 64],
    /// The relocated ELF file, written at `base`.
    pub bytes: Vec<u8>,
    /// File offset of the image.
    pub base: usize,
}

/// An APE before it is written out; tests mutate it to build malformed files.
#[derive(Clone, Debug)]
pub struct Ape {
    pub magic: Magic,
    /// Shell text between the magic line and the `printf` statements.
    pub script: String,
    /// The `printf` statement texts, in file order (by default one per image).
    pub statements: Vec<Vec<u8>>,
    pub images: Vec<Image>,
}

/// The script a shell runs when the kernel does not run the APE itself.
pub const SCRIPT: &str = "\
# Actually Portable Executable written by binfmt_ape's mkape (a test fixture).
# With binfmt_ape loaded the kernel runs the ELF image for this CPU directly;
# a shell only gets here when it did not.
echo \"mkape: run by the shell, not natively (is binfmt_ape loaded?)\" >&2
exit 126
# One ELF header per CPU, in cosmopolitan's APE format:
";

/// `printf '...'` with every byte as a three-digit octal escape.
pub fn printf_statement(bytes: &[u8]) -> Vec<u8> {
    let mut s = b"printf '".to_vec();
    for b in bytes {
        s.extend_from_slice(format!("\\{b:03o}").as_bytes());
    }
    s.extend_from_slice(b"'\n");
    s
}

/// Checks that `file` is a static ELF64 we can embed; returns it with PT_DYNAMIC turned into
/// PT_NULL when the dynamic section asks for nothing (a relocation-free static PIE).
pub fn prepare(file: &[u8]) -> Result<Vec<u8>, String> {
    if file.len() < 64 || &file[..4] != b"\x7fELF" {
        return Err("not an ELF file".into());
    }
    if file[eh::CLASS] != 2 || file[eh::DATA] != 1 {
        return Err("not a little-endian ELF64 file".into());
    }
    let machine = get16(file, eh::MACHINE);
    if machine != crate::ape::EM_X86_64 && machine != crate::ape::EM_AARCH64 {
        return Err(format!("e_machine {machine} is neither x86_64 nor aarch64"));
    }
    if !matches!(get16(file, eh::TYPE), elf::ET_EXEC | elf::ET_DYN) {
        return Err("not ET_EXEC or ET_DYN".into());
    }
    let mut out = file.to_vec();
    let (phoff, phnum) = (
        get64(file, eh::PHOFF) as usize,
        get16(file, eh::PHNUM) as usize,
    );
    if get16(file, eh::PHENTSIZE) != 56 || phoff + phnum * 56 > file.len() {
        return Err("bad program header table".into());
    }
    for i in 0..phnum {
        let p = phoff + i * 56;
        match get32(file, p + ph::TYPE) {
            elf::PT_INTERP => return Err("has PT_INTERP: APEs must be static".into()),
            elf::PT_DYNAMIC => {
                let (off, size) = (
                    get64(file, p + ph::OFFSET) as usize,
                    get64(file, p + ph::FILESZ) as usize,
                );
                let dynamic = file
                    .get(off..off + size)
                    .ok_or("PT_DYNAMIC outside the file")?;
                for d in dynamic.chunks_exact(16) {
                    let (tag, val) = (get64(d, 0), get64(d, 8));
                    // DT_NEEDED, DT_RELASZ, DT_RELSZ, DT_RELRSZ, DT_PLTRELSZ
                    if matches!(tag, 1 | 2 | 8 | 18 | 35) && (tag == 1 || val != 0) {
                        return Err(
                            "has PT_DYNAMIC with relocations or libraries: link it static".into(),
                        );
                    }
                }
                put32(&mut out, p + ph::TYPE, elf::PT_NULL);
            }
            _ => {}
        }
    }
    Ok(out)
}

/// The ELF `e` relocated to file offset `base`: `e_phoff`, `e_shoff` and every `p_offset`.
fn place(e: &[u8], base: usize) -> Image {
    let mut b = e.to_vec();
    let delta = base as u64;
    let phoff = get64(&b, eh::PHOFF);
    put64(&mut b, eh::PHOFF, phoff + delta);
    let shoff = get64(&b, eh::SHOFF);
    if shoff != 0 {
        put64(&mut b, eh::SHOFF, shoff + delta);
    }
    for i in 0..get16(&b, eh::PHNUM) as usize {
        let p = phoff as usize + i * 56 + ph::OFFSET;
        let o = get64(&b, p);
        put64(&mut b, p, o + delta);
    }
    let mut ehdr = [0; 64];
    ehdr.copy_from_slice(&b[..64]);
    Image {
        machine: get16(e, eh::MACHINE),
        ehdr,
        bytes: b,
        base,
    }
}

fn align_up(n: usize, a: usize) -> usize {
    n.div_ceil(a) * a
}

impl Ape {
    /// Lays out `elfs` (already [`prepare`]d) in the given order. The prologue must fit the
    /// 8 KiB window, so the first image goes at the first 64 KiB boundary past it.
    pub fn new(magic: Magic, elfs: &[Vec<u8>]) -> Self {
        let mut at = align_up(crate::ape::WINDOW, IMAGE_ALIGN);
        let images: Vec<Image> = elfs
            .iter()
            .map(|e| {
                let img = place(e, at);
                at = align_up(at + e.len(), IMAGE_ALIGN);
                img
            })
            .collect();
        let statements = images.iter().map(|i| printf_statement(&i.ehdr)).collect();
        Ape {
            magic,
            script: SCRIPT.to_string(),
            statements,
            images,
        }
    }

    /// The file.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(self.magic.bytes());
        out.extend_from_slice(b"\n'\n");
        out.extend_from_slice(self.script.as_bytes());
        for s in &self.statements {
            out.extend_from_slice(s);
        }
        for img in &self.images {
            assert!(out.len() <= img.base, "prologue overlaps the first image");
            out.resize(img.base, 0);
            out.extend_from_slice(&img.bytes);
        }
        out
    }
}

/// Builds an APE from ELF files (in the order given).
pub fn build(magic: Magic, elfs: &[Vec<u8>]) -> Result<Vec<u8>, String> {
    let prepared = elfs
        .iter()
        .map(|e| prepare(e))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Ape::new(magic, &prepared).render())
}
