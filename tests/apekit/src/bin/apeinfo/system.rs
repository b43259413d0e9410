// SPDX-License-Identifier: GPL-2.0

//! What an ordinary user can read of this machine's exec path: binfmt_ape and binfmt_misc, the
//! order in which the kernel tries them, the mounts, and the caller's credentials.
//!
//! Nothing here needs privileges: `/proc/sys/fs/binfmt_ape`, `/proc/sys/fs/binfmt_misc`,
//! `/proc/modules` and `/proc/self/*` are readable by every user. A file that exists but cannot
//! be read is recorded in [`Machine::unreadable`], never guessed silently; a file that does not
//! exist is a fact (the module is not loaded, binfmt_misc is not mounted).

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

pub const SYSCTL: &str = "/proc/sys/fs/binfmt_ape";
/// Where binfmt_misc is mounted by convention; [`Misc::mount`] is where it is.
pub const MISC: &str = "/proc/sys/fs/binfmt_misc";
/// `BINPRM_BUF_SIZE`: the bytes of the file that exec's formats (and binfmt_misc's magic
/// rules) look at, zero-filled past the end of a shorter file.
pub const BUF: usize = 256;

/// How a binary format handler is present in the running kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Presence {
    /// A loaded module (`/proc/modules`).
    Module,
    /// Built into the kernel.
    Builtin,
    Absent,
}

impl Presence {
    pub fn name(self) -> &'static str {
        match self {
            Self::Module => "module",
            Self::Builtin => "builtin",
            Self::Absent => "absent",
        }
    }
}

/// binfmt_ape as userspace sees it.
pub struct Ape {
    pub presence: Presence,
    /// Built from the upstream series (`CONFIG_BINFMT_APE`): no set-id policy of its own, and
    /// binfmt_elf loads the header directly. Known by the absence of the `setid` control.
    pub in_tree: bool,
    pub enabled: Option<bool>,
    /// The set-id policy of the module built out of tree (`None` in tree, or unreadable).
    pub setid: Option<bool>,
    pub version: Option<String>,
    pub srcversion: Option<String>,
    /// The taint flags `/proc/modules` shows for it (`O`: out of tree, `E`: unsigned).
    pub taint: Option<String>,
    /// Whether `modprobe` can find it for the running kernel (`modules.dep`).
    pub installed: Option<bool>,
    /// Every counter in `/proc/sys/fs/binfmt_ape`, by name.
    pub counters: Vec<(String, u64)>,
}

/// What a binfmt_misc rule matches.
pub enum Test {
    /// `M`: `magic` (under `mask`) at `offset` of the first [`BUF`] bytes.
    Magic {
        offset: usize,
        magic: Vec<u8>,
        mask: Option<Vec<u8>>,
    },
    /// `E`: what follows the last `.` of the path passed to execve.
    Extension(String),
}

pub struct Rule {
    pub name: String,
    pub enabled: bool,
    pub interpreter: String,
    /// `P`, `O`, `C`, `F`, as the rule's file lists them.
    pub flags: String,
    pub test: Test,
    /// The inode binfmt_misc made for the rule: numbered in creation order, and binfmt_misc
    /// tries the newest rule first.
    ino: u64,
}

impl Rule {
    /// Whether binfmt_misc's check (`search_binfmt_handler()`) picks this rule for an exec of
    /// `path` whose first bytes are `buf`.
    pub fn matches(&self, buf: &[u8; BUF], path: &str) -> bool {
        if !self.enabled {
            return false;
        }
        match &self.test {
            Test::Extension(ext) => path.rfind('.').is_some_and(|dot| &path[dot + 1..] == ext),
            Test::Magic {
                offset,
                magic,
                mask,
            } => {
                let Some(bytes) = buf.get(*offset..offset + magic.len()) else {
                    return false;
                };
                bytes.iter().zip(magic).enumerate().all(|(i, (b, m))| {
                    let keep = mask
                        .as_ref()
                        .and_then(|k| k.get(i))
                        .copied()
                        .unwrap_or(0xff);
                    (b ^ m) & keep == 0
                })
            }
        }
    }

    /// `F`: the interpreter was opened when the rule was registered.
    pub fn fixed(&self) -> bool {
        self.flags.contains('F')
    }
}

pub struct Misc {
    pub presence: Presence,
    /// Where binfmt_misc's file system is mounted; rules exist only while it is.
    pub mount: Option<String>,
    /// binfmt_misc's own switch (`status`).
    pub enabled: Option<bool>,
    /// Newest first, the order binfmt_misc tries them in.
    pub rules: Vec<Rule>,
}

/// A binary format, as exec tries them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Ape,
    Misc,
    Elf,
    Script,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Self::Ape => "binfmt_ape",
            Self::Misc => "binfmt_misc",
            Self::Elf => "binfmt_elf",
            Self::Script => "binfmt_script",
        }
    }
}

/// The order exec tries the formats in, and how it was told.
pub struct Order {
    pub formats: Vec<Format>,
    /// False when userspace cannot tell whether binfmt_ape or binfmt_misc goes first.
    pub known: bool,
    pub why: String,
}

/// The caller's credentials, from `/proc/self/status`.
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    /// `CAP_DAC_OVERRIDE` in the effective set: root's way past permission bits.
    pub dac_override: bool,
    pub no_new_privs: bool,
}

impl Caller {
    /// Whether the caller may access a file with `meta` for `want` (4 read, 2 write, 1
    /// execute, or'ed), by its permission bits as `generic_permission()` weighs them. ACLs and
    /// LSMs are not read.
    pub fn may(&self, meta: &fs::Metadata, want: u32) -> bool {
        let mode = meta.mode();
        if self.dac_override {
            // Even root executes only a file that has an execute bit.
            return want & 1 == 0 || meta.is_dir() || mode & 0o111 != 0;
        }
        let bits = if meta.uid() == self.uid {
            mode >> 6
        } else if meta.gid() == self.gid || self.groups.contains(&meta.gid()) {
            mode >> 3
        } else {
            mode
        };
        bits & want == want
    }
}

#[derive(Clone)]
pub struct Mount {
    pub point: String,
    pub fstype: String,
    pub noexec: bool,
    pub nosuid: bool,
    pub ro: bool,
}

/// Where an APE's shell prologue extracts the APE loader, `${TMPDIR:-${HOME:-.}}`, and whether
/// it can: the prologue makes the directory, writes the loader there and executes it.
pub struct ShellDir {
    pub dir: String,
    /// `TMPDIR`, `HOME` or `cwd`.
    pub from: &'static str,
    pub usable: Option<bool>,
    pub why: String,
}

pub struct Machine {
    /// Read from this system; false for the machine `--arch`/`--page-size` describe.
    pub live: bool,
    pub kernel: Option<String>,
    pub arch: String,
    pub page_size: u64,
    pub ape: Ape,
    pub misc: Misc,
    pub order: Order,
    pub caller: Option<Caller>,
    pub mounts: Vec<Mount>,
    /// An `ape` loader on `PATH`, which APE prologues run before extracting their own.
    pub ape_command: Option<String>,
    pub shell: Option<ShellDir>,
    pub nixos: bool,
    /// Files that exist but could not be read, with the error.
    pub unreadable: Vec<(String, String)>,
}

/// Reads files, recording those it could not read.
#[derive(Default)]
struct Reader {
    unreadable: Vec<(String, String)>,
}

impl Reader {
    /// The file's text; `None` when it does not exist, or could not be read (recorded).
    fn text(&mut self, path: &str) -> Option<String> {
        self.noted(path, fs::read_to_string(path))
    }

    fn noted<T>(&mut self, path: &str, r: io::Result<T>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => {
                self.unreadable.push((path.into(), e.to_string()));
                None
            }
        }
    }

    fn trimmed(&mut self, path: &str) -> Option<String> {
        self.text(path).map(|s| s.trim().to_string())
    }

    fn switch(&mut self, path: &str) -> Option<bool> {
        self.trimmed(path).map(|s| s != "0")
    }
}

impl Machine {
    /// The machine that `--arch` and `--page-size` describe: binfmt_ape loaded, enabled and
    /// first, binfmt_elf loading the header it chose, nothing else known.
    pub fn assumed(arch: &str, page_size: u64) -> Self {
        Self {
            live: false,
            kernel: None,
            arch: arch.into(),
            page_size,
            ape: Ape {
                presence: Presence::Builtin,
                in_tree: true,
                enabled: Some(true),
                setid: None,
                version: None,
                srcversion: None,
                taint: None,
                installed: None,
                counters: Vec::new(),
            },
            misc: Misc {
                presence: Presence::Absent,
                mount: None,
                enabled: None,
                rules: Vec::new(),
            },
            order: Order {
                formats: vec![Format::Ape, Format::Elf, Format::Script],
                known: true,
                why: "assumed: binfmt_ape loaded and enabled, no binfmt_misc rules".into(),
            },
            caller: None,
            mounts: Vec::new(),
            ape_command: None,
            shell: None,
            nixos: false,
            unreadable: Vec::new(),
        }
    }

    /// Reads this machine.
    pub fn read() -> Self {
        let mut r = Reader::default();
        let kernel = r.trimmed("/proc/sys/kernel/osrelease");
        let arch = r
            .trimmed("/proc/sys/kernel/arch")
            .unwrap_or_else(|| std::env::consts::ARCH.into());
        let page_size = page_size(&mut r);
        let modules: Option<Vec<(String, String)>> = r.text("/proc/modules").map(|m| {
            m.lines()
                .filter_map(|l| {
                    let name = l.split_whitespace().next()?;
                    // The taint flags close the line, in parentheses, when there are any.
                    let taint = l
                        .rsplit_once('(')
                        .and_then(|(_, t)| t.strip_suffix(')'))
                        .unwrap_or("");
                    Some((name.to_string(), taint.to_string()))
                })
                .collect()
        });
        let listed = |name: &str| {
            modules
                .as_ref()
                .map(|m| m.iter().position(|(n, _)| n == name))
        };
        let ape = read_ape(
            &mut r,
            listed("binfmt_ape"),
            modules.as_deref(),
            kernel.as_deref(),
        );
        let mounts: Vec<Mount> = r
            .text("/proc/self/mountinfo")
            .map(|t| t.lines().filter_map(parse_mount).collect())
            .unwrap_or_default();
        let misc = read_misc(&mut r, listed("binfmt_misc"), &mounts);
        let order = order(&ape, &misc, listed("binfmt_ape"), listed("binfmt_misc"));
        let caller = r.text("/proc/self/status").map(|s| parse_caller(&s));
        let shell = caller.as_ref().map(|c| shell_dir(c, &mounts));
        Self {
            live: true,
            kernel,
            arch,
            page_size,
            ape,
            misc,
            order,
            caller,
            mounts,
            ape_command: on_path("ape"),
            shell,
            nixos: Path::new("/etc/NIXOS").exists(),
            unreadable: r.unreadable,
        }
    }

    /// The mount `path` lies on: the deepest mount point above it, the last mounted of those
    /// on the same point.
    pub fn mount_of(&self, path: &Path) -> Option<&Mount> {
        mount_of(&self.mounts, path)
    }
}

fn mount_of<'m>(mounts: &'m [Mount], path: &Path) -> Option<&'m Mount> {
    let path = fs::canonicalize(path).ok()?;
    let path = path.to_str()?;
    let under = |point: &str| {
        point == "/"
            || path == point
            || path
                .strip_prefix(point)
                .is_some_and(|rest| rest.starts_with('/'))
    };
    let mut best: Option<&Mount> = None;
    for m in mounts.iter().filter(|m| under(&m.point)) {
        if best.is_none_or(|b| m.point.len() >= b.point.len()) {
            best = Some(m);
        }
    }
    best
}

/// The running kernel's page size, from the auxiliary vector the kernel gave apeinfo.
fn page_size(r: &mut Reader) -> u64 {
    const AT_PAGESZ: u64 = 6;
    let auxv = r.noted("/proc/self/auxv", fs::read("/proc/self/auxv"));
    let words: Vec<u64> = auxv
        .unwrap_or_default()
        .chunks_exact(8)
        .map(|c| u64::from_ne_bytes(c.try_into().unwrap_or_default()))
        .collect();
    words
        .chunks_exact(2)
        .find(|kv| kv[0] == AT_PAGESZ)
        .map_or(4096, |kv| kv[1])
}

fn read_ape(
    r: &mut Reader,
    listed: Option<Option<usize>>,
    modules: Option<&[(String, String)]>,
    kernel: Option<&str>,
) -> Ape {
    let controls = Path::new(SYSCTL).is_dir();
    let presence = match listed {
        Some(Some(_)) => Presence::Module,
        // Built in: the controls without a loaded module (`/sys/module/binfmt_ape` has no
        // `initstate` then, if it exists at all).
        Some(None) if controls => Presence::Builtin,
        Some(None) => Presence::Absent,
        // `/proc/modules` unreadable: a loadable module has an `initstate`.
        None if Path::new("/sys/module/binfmt_ape/initstate").exists() => Presence::Module,
        None if controls => Presence::Builtin,
        None => Presence::Absent,
    };
    let mut counters = Vec::new();
    if let Some(dir) = r.noted(SYSCTL, fs::read_dir(SYSCTL)) {
        let mut names: Vec<String> = dir
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n != "enabled" && n != "setid")
            .collect();
        names.sort();
        for n in names {
            if let Some(v) = r.trimmed(&format!("{SYSCTL}/{n}")) {
                counters.push((n, v.parse().unwrap_or(0)));
            }
        }
    }
    let setid_file = format!("{SYSCTL}/setid");
    let taint = modules
        .and_then(|m| m.iter().find(|(n, _)| n == "binfmt_ape"))
        .map(|(_, t)| t.clone())
        .filter(|t| !t.is_empty());
    Ape {
        presence,
        in_tree: controls && !Path::new(&setid_file).exists(),
        enabled: r.switch(&format!("{SYSCTL}/enabled")),
        setid: r.switch(&setid_file),
        version: r.trimmed("/sys/module/binfmt_ape/version"),
        srcversion: r.trimmed("/sys/module/binfmt_ape/srcversion"),
        taint,
        installed: kernel.and_then(|k| installed(r, k)),
        counters,
    }
}

/// Whether `modprobe binfmt_ape` finds a module for kernel `release`.
fn installed(r: &mut Reader, release: &str) -> Option<bool> {
    let dep = r.text(&format!("/lib/modules/{release}/modules.dep"))?;
    Some(dep.lines().any(|l| {
        l.split(':')
            .next()
            .and_then(|p| p.rsplit('/').next())
            .is_some_and(|f| f.starts_with("binfmt_ape.ko"))
    }))
}

fn read_misc(r: &mut Reader, listed: Option<Option<usize>>, mounts: &[Mount]) -> Misc {
    // binfmt_misc registers its file system and its format together.
    let registered = r.text("/proc/filesystems").is_some_and(|f| {
        f.lines()
            .any(|l| l.split_whitespace().last() == Some("binfmt_misc"))
    });
    let presence = match listed {
        Some(Some(_)) => Presence::Module,
        _ if registered => Presence::Builtin,
        _ => Presence::Absent,
    };
    let mount = mounts
        .iter()
        .rev()
        .find(|m| m.fstype == "binfmt_misc")
        .map(|m| m.point.clone());
    let mut rules = Vec::new();
    let mut enabled = None;
    if let Some(dir) = &mount {
        enabled = r.trimmed(&format!("{dir}/status")).map(|s| s == "enabled");
        if let Some(entries) = r.noted(dir, fs::read_dir(dir)) {
            for e in entries.flatten() {
                let Ok(name) = e.file_name().into_string() else {
                    continue;
                };
                if name == "register" || name == "status" {
                    continue;
                }
                let path = format!("{dir}/{name}");
                let ino = e.metadata().map(|m| m.ino()).unwrap_or(0);
                if let Some(rule) = r.text(&path).and_then(|t| parse_rule(name, &t, ino)) {
                    rules.push(rule);
                }
            }
        }
    }
    rules.sort_by_key(|r| std::cmp::Reverse(r.ino));
    Misc {
        presence,
        mount,
        enabled,
        rules,
    }
}

/// A rule's file, as binfmt_misc writes it (`bm_entry_read()`): `enabled`, `interpreter
/// PATH`, `flags: POCF`, then `offset N`, `magic HEX` and `mask HEX`, or `extension .EXT`.
fn parse_rule(name: String, text: &str, ino: u64) -> Option<Rule> {
    let mut lines = text.lines();
    let enabled = lines.next()? == "enabled";
    let (mut interpreter, mut flags, mut ext) = (String::new(), String::new(), None);
    let (mut offset, mut magic, mut mask) = (0, None, None);
    for l in lines {
        if let Some(v) = l.strip_prefix("interpreter ") {
            interpreter = v.into();
        } else if let Some(v) = l.strip_prefix("flags:") {
            flags = v.trim().into();
        } else if let Some(v) = l.strip_prefix("extension .") {
            ext = Some(v.to_string());
        } else if let Some(v) = l.strip_prefix("offset ") {
            offset = v.trim().parse().ok()?;
        } else if let Some(v) = l.strip_prefix("magic ") {
            magic = unhex(v.trim());
        } else if let Some(v) = l.strip_prefix("mask ") {
            mask = unhex(v.trim());
        }
    }
    let test = match (ext, magic) {
        (Some(e), _) => Test::Extension(e),
        (None, Some(magic)) => Test::Magic {
            offset,
            magic,
            mask,
        },
        (None, None) => return None,
    };
    Some(Rule {
        name,
        enabled,
        interpreter,
        flags,
        test,
        ino,
    })
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
        .collect()
}

/// Which of binfmt_ape and binfmt_misc exec tries first. Each registers at the head of the
/// list of formats when it loads (binfmt_elf and binfmt_script register at its tail), so the
/// one registered last goes first; built-in binfmt_ape registers after built-in binfmt_misc.
/// `/proc/modules` lists loaded modules newest first.
fn order(
    ape: &Ape,
    misc: &Misc,
    ape_at: Option<Option<usize>>,
    misc_at: Option<Option<usize>>,
) -> Order {
    use Presence::*;
    let (ape_first, known, why) = match (ape.presence, misc.presence) {
        (Module | Builtin, Module | Builtin) if ape_at.is_none() => (
            true,
            false,
            "cannot tell which of binfmt_ape and binfmt_misc goes first (/proc/modules \
             unreadable); binfmt_ape loads binfmt_misc before itself, so it usually does"
                .into(),
        ),
        (Absent, Absent) => (
            true,
            true,
            "neither binfmt_ape nor binfmt_misc is loaded".into(),
        ),
        (_, Absent) => (true, true, "binfmt_misc is not loaded".into()),
        (Absent, _) => (false, true, "binfmt_ape is not loaded".into()),
        (Builtin, Builtin) => (
            true,
            true,
            "both are built in: binfmt_ape registers after binfmt_misc, at the head".into(),
        ),
        (Builtin, Module) => (
            false,
            true,
            "binfmt_ape is built in and binfmt_misc a module, loaded after it".into(),
        ),
        (Module, Builtin) => (
            true,
            true,
            "binfmt_misc is built in and binfmt_ape a module, loaded after it".into(),
        ),
        (Module, Module) => match (ape_at.flatten(), misc_at.flatten()) {
            // /proc/modules lists the newest first. Loaded with insmod, binfmt_ape's init loads
            // binfmt_misc itself (modprobe loads it first, for the softdep) and registers after
            // it: binfmt_misc is then the next module loaded after binfmt_ape, as when it was
            // loaded again later.
            (Some(a), Some(m)) if m + 1 == a => (
                false,
                false,
                "binfmt_misc was loaded next after binfmt_ape (/proc/modules): if binfmt_ape's \
                 init loaded it (insmod), binfmt_ape goes first; if it was loaded again later, \
                 binfmt_misc does. apeinfo cannot tell which, and assumes binfmt_misc goes first"
                    .into(),
            ),
            (Some(_), Some(_)) if misc_at < ape_at => (
                false,
                true,
                "/proc/modules lists binfmt_misc as loaded after binfmt_ape: it went ahead".into(),
            ),
            (Some(_), Some(_)) => (
                true,
                true,
                "/proc/modules lists binfmt_ape as loaded after binfmt_misc".into(),
            ),
            _ => (
                true,
                false,
                "cannot tell which of binfmt_ape and binfmt_misc goes first: /proc/modules \
                 does not list both"
                    .into(),
            ),
        },
    };
    let mut formats = Vec::new();
    let (a, m) = (ape.presence != Absent, misc.presence != Absent);
    if ape_first {
        formats.extend(a.then_some(Format::Ape));
        formats.extend(m.then_some(Format::Misc));
    } else {
        formats.extend(m.then_some(Format::Misc));
        formats.extend(a.then_some(Format::Ape));
    }
    formats.extend([Format::Elf, Format::Script]);
    Order {
        formats,
        known,
        why,
    }
}

/// One line of `/proc/self/mountinfo`: `ID PARENT MAJ:MIN ROOT POINT OPTS [TAGS...] - TYPE
/// SOURCE SUPEROPTS`.
fn parse_mount(line: &str) -> Option<Mount> {
    let (left, right) = line.split_once(" - ")?;
    let f: Vec<&str> = left.split(' ').collect();
    let (point, opts) = (f.get(4)?, f.get(5)?.split(',').collect::<Vec<_>>());
    Some(Mount {
        point: unescape(point),
        fstype: right.split(' ').next()?.into(),
        noexec: opts.contains(&"noexec"),
        nosuid: opts.contains(&"nosuid"),
        ro: opts.contains(&"ro"),
    })
}

/// Undoes mountinfo's octal escapes (`\040` for a space, and so on).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let (mut out, mut i) = (Vec::new(), 0);
    while i < b.len() {
        let oct = b
            .get(i + 1..i + 4)
            .filter(|d| b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)))
            .and_then(|d| u8::from_str_radix(std::str::from_utf8(d).ok()?, 8).ok());
        match oct {
            Some(v) => {
                out.push(v);
                i += 4;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_caller(status: &str) -> Caller {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or("")
            .split_whitespace()
            .map(String::from)
            .collect::<Vec<_>>()
    };
    // The file-system ids (the fourth of `Uid:` and `Gid:`) are those permission checks use.
    let id = |name: &str| {
        field(name)
            .get(3)
            .and_then(|v| v.parse().ok())
            .unwrap_or(u32::MAX)
    };
    let cap_eff = field("CapEff:")
        .first()
        .and_then(|v| u64::from_str_radix(v, 16).ok())
        .unwrap_or(0);
    const CAP_DAC_OVERRIDE: u64 = 1 << 1;
    Caller {
        uid: id("Uid:"),
        gid: id("Gid:"),
        groups: field("Groups:")
            .iter()
            .filter_map(|g| g.parse().ok())
            .collect(),
        dac_override: cap_eff & CAP_DAC_OVERRIDE != 0,
        no_new_privs: field("NoNewPrivs:").first().is_some_and(|v| v == "1"),
    }
}

/// `${TMPDIR:-${HOME:-.}}`, where an APE's prologue puts the APE loader, and whether the caller
/// can make it there and run it from there.
fn shell_dir(caller: &Caller, mounts: &[Mount]) -> ShellDir {
    let var = |n: &str| std::env::var(n).ok().filter(|v| !v.is_empty());
    let (dir, from) = match (var("TMPDIR"), var("HOME")) {
        (Some(d), _) => (d, "TMPDIR"),
        (None, Some(d)) => (d, "HOME"),
        (None, None) => (".".into(), "cwd"),
    };
    // `mkdir -p` makes what is missing: the nearest directory that exists must be writable.
    let mut at = Path::new(&dir);
    let meta = loop {
        match fs::metadata(at) {
            Ok(m) => break Some(m),
            Err(_) => match at.parent() {
                Some(p) if !p.as_os_str().is_empty() => at = p,
                _ => break None,
            },
        }
    };
    let (usable, why) = match (meta, mount_of(mounts, at)) {
        (None, _) => (
            Some(false),
            format!("{dir} does not exist and cannot be made"),
        ),
        (Some(m), _) if !m.is_dir() => {
            (Some(false), format!("{} is not a directory", at.display()))
        }
        (Some(_), Some(mt)) if mt.noexec => (
            Some(false),
            format!("{} is on a noexec mount ({})", at.display(), mt.point),
        ),
        (Some(_), Some(mt)) if mt.ro => (
            Some(false),
            format!("{} is on a read-only mount ({})", at.display(), mt.point),
        ),
        (Some(m), _) if !caller.may(&m, 3) => {
            (Some(false), format!("{} is not writable", at.display()))
        }
        (Some(_), Some(_)) => (Some(true), format!("{dir} is writable and executable")),
        (Some(_), None) => (None, format!("{dir}: its mount is unknown")),
    };
    ShellDir {
        dir,
        from,
        usable,
        why,
    }
}

/// The first executable file named `name` on `PATH`.
fn on_path(name: &str) -> Option<String> {
    let path = std::env::var("PATH").ok()?;
    path.split(':').filter(|d| !d.is_empty()).find_map(|d| {
        let p = format!("{d}/{name}");
        let m = fs::metadata(&p).ok()?;
        (m.is_file() && m.mode() & 0o111 != 0).then_some(p)
    })
}
