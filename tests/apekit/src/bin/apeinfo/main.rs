// SPDX-License-Identifier: GPL-2.0

//! `apeinfo`: what this machine's kernel will do with a file, why, and how to fix it (see
//! `man/apeinfo.1`).
//!
//! For each FILE it reads the file's first 8 KiB and the program header tables they name, with
//! the decoder binfmt_ape runs ([`apekit::ape`]); reads what an ordinary user can read of this
//! machine ([`system`]); and follows the exec through the kernel's formats in their order
//! ([`route`]). The output is a verdict line and its reasons and fixes, or a JSON object per
//! file ([`report`]); the exit status says whether the file runs natively, another way, or not
//! at all. With `--arch` or `--page-size`, it judges the file alone, for such a machine with
//! binfmt_ape loaded, and reads nothing of this one.

mod report;
mod route;
mod system;

use apekit::ape::{self, Magic};
use route::{File, Stat};
use std::io;
use std::os::unix::fs::FileExt;
use std::process::ExitCode;
use system::{Machine, BUF};

/// The version of `--json`'s schema: raised only when a field changes meaning or goes away.
pub const SCHEMA: u64 = 1;

pub const MACHINES: [(u16, &str); 2] = [(ape::EM_X86_64, "x86_64"), (ape::EM_AARCH64, "aarch64")];

/// The exit status for bad usage or an unreadable file (0-2 are [`Status::code`]).
const TROUBLE: u8 = 3;

const USAGE: &str = "usage: apeinfo [--json] FILE...
       apeinfo [--json] --machine-only
       apeinfo [--json] [--arch x86_64|aarch64] [--page-size N] FILE...
Says what this machine's kernel will do with each FILE (run it natively with binfmt_ape, run
it another way, or not run it), why, and how to fix it. --machine-only: this machine's
readiness for APEs. --arch, --page-size: judge the file alone, for that CPU and page size with
binfmt_ape loaded. Exit status: 0 runs natively, 1 runs another way, 2 will not run, 3 bad
usage or an unreadable file.";

struct Options {
    json: bool,
    machine_only: bool,
    arch: Option<String>,
    page_size: Option<u64>,
    files: Vec<String>,
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        json: false,
        machine_only: false,
        arch: None,
        page_size: None,
        files: Vec::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--json" => o.json = true,
            "--machine-only" => o.machine_only = true,
            "--arch" => {
                let arch = args.next().unwrap_or_default();
                if route::e_machine(&arch).is_none() {
                    return Err(format!("unknown --arch '{arch}' (x86_64 or aarch64)"));
                }
                o.arch = Some(arch);
            }
            "--page-size" => {
                let p = args.next().and_then(|p| p.parse::<u64>().ok());
                match p.filter(|p| p.is_power_of_two()) {
                    Some(p) => o.page_size = Some(p),
                    None => return Err("--page-size needs a power of two".into()),
                }
            }
            "--" => o.files.extend(args.by_ref()),
            s if s.starts_with('-') && s.len() > 1 => return Err(format!("unknown option {s}")),
            _ => o.files.push(a),
        }
    }
    let offline = o.arch.is_some() || o.page_size.is_some();
    if o.machine_only && (offline || !o.files.is_empty()) {
        return Err("--machine-only takes no FILE, --arch or --page-size".into());
    }
    if !o.machine_only && o.files.is_empty() {
        return Err("need FILE... or --machine-only".into());
    }
    Ok(o)
}

fn main() -> ExitCode {
    if std::env::args().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let o = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("apeinfo: {e}\n{USAGE}");
            return ExitCode::from(TROUBLE);
        }
    };
    let machine = if o.arch.is_none() && o.page_size.is_none() {
        Machine::read()
    } else {
        let arch = o
            .arch
            .clone()
            .unwrap_or_else(|| std::env::consts::ARCH.into());
        Machine::assumed(&arch, o.page_size.unwrap_or(4096))
    };
    let Some(want) = route::e_machine(&machine.arch) else {
        eprintln!(
            "apeinfo: this machine's CPU ({}) runs no APE natively; judge a file for another \
             with --arch",
            machine.arch
        );
        return ExitCode::from(TROUBLE);
    };
    if o.machine_only {
        let v = route::exec(&any_ape(want), &machine);
        let v = report::readiness(&machine, v);
        if o.json {
            println!("{}", report::machine_json(&machine, &v));
        } else {
            print!("{}", report::machine_human(&machine, &v));
        }
        return ExitCode::from(v.status.code());
    }
    let mut worst = 0;
    for path in &o.files {
        let code = match Inspected::read(path, want, &machine) {
            Ok(i) => {
                let v = route::exec(&i.file, &machine);
                if o.json {
                    println!("{}", report::file_json(&i, &machine, &v));
                } else {
                    print!("{}", report::file_human(&i, &v));
                }
                v.status.code()
            }
            Err(e) => {
                eprintln!("apeinfo: {path}: {e}");
                TROUBLE
            }
        };
        worst = worst.max(code);
    }
    if !o.json && machine.live {
        print!("{}", report::machine_lines(&machine));
    }
    ExitCode::from(worst)
}

/// An APE for this CPU, for `--machine-only`: a cosmocc build (its prologue extracts the
/// loader), with no name a binfmt_misc extension rule would match.
fn any_ape(machine: u16) -> File {
    let mut head = [0; BUF];
    head[..8].copy_from_slice(Magic::Mz.bytes());
    let mut ehdr = [0; ape::EHDR_SIZE];
    ehdr[..8].copy_from_slice(b"\x7fELF\x02\x01\x01\x00");
    ehdr[16] = 2;
    ehdr[18..20].copy_from_slice(&machine.to_le_bytes());
    ehdr[20] = 1;
    File {
        path: "APE".into(),
        head,
        magic: Some(Magic::Mz),
        chosen: Ok((0, ehdr)),
        loader: Ok(()),
        extracts: Some(".ape-1.10".into()),
        runs_ape_command: true,
        stat: None,
        elf_interp: None,
    }
}

/// Program header tables and other parts of the file, read where they lie: an APE can be
/// gigabytes (llamafiles), and only its first bytes and tables decide.
struct Source {
    f: std::fs::File,
    buf: Vec<u8>,
}

impl Source {
    /// Up to `len` bytes at `pos`: fewer only where the file ends.
    fn read_upto(&mut self, pos: u64, len: usize) -> io::Result<&[u8]> {
        self.buf.resize(len, 0);
        let mut done = 0;
        while done < len {
            let Some(at) = u64::try_from(done).ok().and_then(|d| pos.checked_add(d)) else {
                break;
            };
            match self.f.read_at(&mut self.buf[done..], at) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(&self.buf[..done])
    }
}

impl ape::Source for Source {
    type Error = io::Error;

    fn read_exact_at(&mut self, pos: u64, len: usize) -> io::Result<Option<&[u8]>> {
        // Like the module: a part that would end past `loff_t` lies past EOF (pread would
        // fail with EINVAL, which is not this file's fault).
        let end = u64::try_from(len).ok().and_then(|l| pos.checked_add(l));
        if end.is_none_or(|e| e > i64::MAX as u64) {
            return Ok(None);
        }
        let got = self.read_upto(pos, len)?;
        Ok((got.len() == len).then_some(got))
    }
}

/// A file, read.
pub struct Inspected {
    pub file: File,
    pub magic: Option<Magic>,
    pub headers: Vec<ape::Statement>,
    /// Each header's verdict on its own machine: `ok` or the failing field.
    pub header_verdicts: Vec<String>,
    /// The decoder's choice for each CPU (`selected`, `error`), at the requested page size.
    pub per_cpu: Vec<(&'static str, Result<usize, ape::Error>)>,
    pub arch: String,
    pub page_size: u64,
    /// Whether the file has a header for some CPU and for the requested one.
    pub runs: bool,
}

impl Inspected {
    fn read(path: &str, want: u16, m: &Machine) -> io::Result<Self> {
        let f = std::fs::File::open(path)?;
        let meta = f.metadata()?;
        let mut src = Source { f, buf: Vec::new() };
        let window = if meta.is_file() {
            src.read_upto(0, ape::WINDOW)?.to_vec()
        } else {
            Vec::new()
        };
        let page = m.page_size;
        let magic = Magic::of(&window);
        let headers: Vec<_> = ape::statements(&window).collect();
        let mut header_verdicts = Vec::new();
        for s in &headers {
            header_verdicts.push(header_verdict(&mut src, &s.ehdr, page)?);
        }
        let mut choose =
            |w: &[u8], machine: u16| -> io::Result<Result<ape::Statement, ape::Error>> {
                ape::select(w, machine, page, &mut src)
            };
        let mut per_cpu = Vec::new();
        let mut chosen = Err(ape::Error::NotApe);
        for &(machine, name) in &MACHINES {
            let c = choose(&window, machine)?;
            if machine == want {
                chosen = c.map(|s| (ape::header_index(&window, &s), s.ehdr.0));
            }
            per_cpu.push((name, c.map(|s| ape::header_index(&window, &s))));
        }
        // Cosmopolitan's loader runs debug builds too: what it does is the choice for the same
        // file under a magic that binfmt_ape runs.
        let loader = if magic == Some(Magic::Debug) {
            let mut w = window.clone();
            w[..8].copy_from_slice(Magic::Mz.bytes());
            choose(&w, want)?.map(|_| ())
        } else {
            chosen.map(|_| ())
        };
        let runs = per_cpu.iter().any(|(_, c)| c.is_ok()) && chosen.is_ok();
        let mut head = [0; BUF];
        let n = window.len().min(BUF);
        head[..n].copy_from_slice(&window[..n]);
        let elf_interp = elf_interp(&mut src, &head)?;
        let stat = m.live.then(|| Stat {
            caps: caps(path),
            mount: m.mount_of(std::path::Path::new(path)).cloned(),
            meta,
        });
        let file = File {
            path: path.into(),
            head,
            magic,
            chosen,
            loader,
            extracts: extracted_loader(&window),
            runs_ape_command: find(&window, b"exec ape ").is_some(),
            stat,
            elf_interp,
        };
        Ok(Self {
            file,
            magic,
            headers,
            header_verdicts,
            per_cpu,
            arch: m.arch.clone(),
            page_size: page,
            runs,
        })
    }
}

/// The verdict for one header on its own machine: `ok` or the failing field.
fn header_verdict(src: &mut Source, h: &ape::Ehdr, page: u64) -> io::Result<String> {
    if let Err(f) = h.check(h.e_machine()) {
        return Ok(f.name().into());
    }
    let Some(table) = ape::Source::read_exact_at(src, h.e_phoff(), h.phdr_table_len())? else {
        return Ok("phoff".into());
    };
    Ok(match ape::check_phdrs(h, table, page) {
        Ok(()) => "ok".into(),
        Err(f) => f.name().into(),
    })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The loader a cosmocc prologue extracts, `.ape-VERSION` from its
/// `t="${TMPDIR:-${HOME:-.}}/.ape-1.10"`.
fn extracted_loader(window: &[u8]) -> Option<String> {
    let at = find(window, b"/.ape-")? + 1;
    let name: Vec<u8> = window[at..]
        .iter()
        .take_while(|&&b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
        .copied()
        .collect();
    (name.len() > 5).then(|| String::from_utf8_lossy(&name).into_owned())
}

/// The `PT_INTERP` of a 64-bit little-endian ELF file: the dynamic loader exec needs.
fn elf_interp(src: &mut Source, head: &[u8; BUF]) -> io::Result<Option<String>> {
    const PT_INTERP: u32 = 3;
    if !head.starts_with(b"\x7fELF\x02\x01") {
        return Ok(None);
    }
    let u16_at = |at: usize| u16::from_le_bytes([head[at], head[at + 1]]);
    let phoff = u64::from_le_bytes(head[32..40].try_into().unwrap_or_default());
    let (phentsize, phnum) = (usize::from(u16_at(54)), usize::from(u16_at(56)));
    if phentsize != ape::PHDR_SIZE || phnum > 256 {
        return Ok(None);
    }
    let table = src.read_upto(phoff, phentsize * phnum)?.to_vec();
    for ph in table.chunks_exact(phentsize) {
        let word = |at: usize| u64::from_le_bytes(ph[at..at + 8].try_into().unwrap_or_default());
        if u32::from_le_bytes(ph[..4].try_into().unwrap_or_default()) != PT_INTERP {
            continue;
        }
        let len = usize::try_from(word(32)).unwrap_or(0).min(4096);
        let name = src.read_upto(word(8), len)?;
        let name = name.split(|&b| b == 0).next().unwrap_or_default();
        return Ok(Some(String::from_utf8_lossy(name).into_owned()));
    }
    Ok(None)
}

/// Whether `path` has file capabilities (`security.capability`), which exec honours as it does
/// set-id bits; `None` when that cannot be read.
fn caps(path: &str) -> Option<bool> {
    use std::ffi::{c_char, c_void, CString};
    extern "C" {
        fn getxattr(
            path: *const c_char,
            name: *const c_char,
            value: *mut c_void,
            size: usize,
        ) -> isize;
    }
    const ENODATA: i32 = 61;
    const EOPNOTSUPP: i32 = 95;
    let p = CString::new(path).ok()?;
    // SAFETY: Both strings are NUL-terminated and outlive the call; with a size of 0, getxattr
    // only returns the value's length and writes nothing through the null `value`.
    let n = unsafe {
        getxattr(
            p.as_ptr(),
            c"security.capability".as_ptr(),
            std::ptr::null_mut(),
            0,
        )
    };
    if n >= 0 {
        return Some(n > 0);
    }
    match io::Error::last_os_error().raw_os_error() {
        Some(ENODATA | EOPNOTSUPP) => Some(false),
        _ => None,
    }
}
