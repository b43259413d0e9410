// SPDX-License-Identifier: GPL-2.0

//! What `execve()` does with a file on a machine: the checks exec makes before any format, then
//! each format in the kernel's order as that format decides (`fs/exec.c`'s
//! `search_binary_handler()`), then what a shell does when execve fails with `ENOEXEC`.

use crate::system::{Format, Machine, Mount, Presence, Rule, BUF};
use apekit::ape::{self, Field, Magic};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// What decides a file's exec.
pub struct File {
    pub path: String,
    /// The first [`BUF`] bytes, zero-filled past the end, as exec's formats see them.
    pub head: [u8; BUF],
    pub magic: Option<Magic>,
    /// binfmt_ape's choice for the machine's CPU and page size: the header's index, and the
    /// header.
    pub chosen: Result<(usize, [u8; ape::EHDR_SIZE]), ape::Error>,
    /// What cosmopolitan's APE loader does with the file, which a shell runs through the
    /// prologue: the same choice, debug builds included.
    pub loader: Result<(), ape::Error>,
    /// The loader the prologue extracts to `${TMPDIR:-${HOME:-.}}` (`.ape-1.10`), if any.
    pub extracts: Option<String>,
    /// Whether the prologue first runs an `ape` command from `PATH`.
    pub runs_ape_command: bool,
    /// The file's inode and mount (live only).
    pub stat: Option<Stat>,
    /// An ELF file's `PT_INTERP`.
    pub elf_interp: Option<String>,
}

pub struct Stat {
    pub meta: std::fs::Metadata,
    /// Whether it has file capabilities (`security.capability`); `None`: unreadable.
    pub caps: Option<bool>,
    pub mount: Option<Mount>,
}

/// What becomes of the file, by exit status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    /// The kernel runs it: binfmt_ape then binfmt_elf, or binfmt_elf alone.
    Native,
    /// It runs another way: a binfmt_misc rule's interpreter, a `#!` interpreter, or a shell
    /// after execve failed with `ENOEXEC`.
    Other,
    /// It does not run.
    No,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Self::Native => "native",
            Self::Other => "other",
            Self::No => "no",
        }
    }

    pub fn code(self) -> u8 {
        match self {
            Self::Native => 0,
            Self::Other => 1,
            Self::No => 2,
        }
    }
}

pub struct Reason {
    pub id: &'static str,
    pub text: String,
}

pub struct Fix {
    /// The reason it fixes.
    pub reason: &'static str,
    pub command: Option<String>,
    /// Whether the command needs root.
    pub root: bool,
    pub text: String,
}

pub struct Verdict {
    pub status: Status,
    /// `runs`, or the errno name execve fails with.
    pub execve: &'static str,
    /// The format that runs the file, when one does.
    pub handler: Option<&'static str>,
    /// The binfmt_misc rule that takes it.
    pub rule: Option<String>,
    /// The program the kernel starts for it: a rule's or a `#!` line's interpreter.
    pub interpreter: Option<String>,
    /// Why binfmt_ape declines it, as the module counts and logs it (an `ape::Error` name, or
    /// `setid`).
    pub declined: Option<&'static str>,
    /// `shell`: a shell that gets `ENOEXEC` runs the file as a script.
    pub fallback: Option<&'static str>,
    pub summary: String,
    pub reasons: Vec<Reason>,
    pub fixes: Vec<Fix>,
}

/// The `e_machine` of a CPU apeinfo knows.
pub fn e_machine(arch: &str) -> Option<u16> {
    match arch {
        "x86_64" => Some(ape::EM_X86_64),
        "aarch64" => Some(ape::EM_AARCH64),
        _ => None,
    }
}

/// Predicts the exec of `f` on `m`.
pub fn exec(f: &File, m: &Machine) -> Verdict {
    let mut s = Exec {
        f,
        m,
        buf: f.head,
        handed: false,
        why: String::new(),
        v: Verdict {
            status: Status::No,
            execve: "ENOEXEC",
            handler: None,
            rule: None,
            interpreter: None,
            declined: None,
            fallback: None,
            summary: String::new(),
            reasons: Vec::new(),
            fixes: Vec::new(),
        },
    };
    s.run();
    s.summarize();
    s.v
}

struct Exec<'a> {
    f: &'a File,
    m: &'a Machine,
    /// `bprm->buf` as the next format sees it.
    buf: [u8; BUF],
    /// binfmt_ape (out of tree) wrote this CPU's header over `buf`.
    handed: bool,
    /// A few words on why the exec fails, for the summary.
    why: String,
    v: Verdict,
}

impl Exec<'_> {
    fn reason(&mut self, id: &'static str, text: impl Into<String>) {
        self.v.reasons.push(Reason {
            id,
            text: text.into(),
        });
    }

    fn fix(
        &mut self,
        reason: &'static str,
        command: Option<String>,
        root: bool,
        text: impl Into<String>,
    ) {
        if self
            .v
            .fixes
            .iter()
            .any(|f| f.reason == reason && f.command == command)
        {
            return;
        }
        self.v.fixes.push(Fix {
            reason,
            command,
            root,
            text: text.into(),
        });
    }

    /// The exec fails with `errno`, for a reason a shell does not work around.
    fn fails(&mut self, errno: &'static str, why: impl Into<String>) {
        self.v.status = Status::No;
        self.v.execve = errno;
        self.why = why.into();
    }

    /// The exec succeeds: the program starts.
    fn runs(&mut self, handler: &'static str) {
        self.v.execve = "runs";
        self.v.handler = Some(handler);
        self.v.status = match handler {
            "binfmt_ape" | "binfmt_elf" => Status::Native,
            _ => Status::Other,
        };
    }

    fn live(&self) -> bool {
        self.m.live
    }

    fn run(&mut self) {
        let ape_file = self.f.magic.is_some();
        if ape_file && self.m.ape.presence == Presence::Absent {
            self.module_absent();
        }
        // Which goes first matters only when a rule matches the APE.
        let contested = self.m.ape.presence != Presence::Absent
            && self
                .m
                .misc
                .rules
                .iter()
                .any(|r| r.matches(&self.f.head, &self.f.path));
        if ape_file && contested && !self.m.order.known {
            let why = self.m.order.why.clone();
            self.reason("order-unknown", why);
        }
        if !self.m.unreadable.is_empty() {
            let what: Vec<&str> = self.m.unreadable.iter().map(|(p, _)| p.as_str()).collect();
            let text = format!(
                "apeinfo could not read {}: the verdict may miss what they say",
                what.join(", ")
            );
            self.reason("unreadable", text);
        }
        if self.refused_before_formats() {
            return;
        }
        for fmt in self.m.order.formats.clone() {
            let done = match fmt {
                Format::Ape => self.ape(),
                Format::Misc => self.misc(),
                Format::Elf => self.elf(),
                Format::Script => self.script(),
            };
            if done {
                return;
            }
        }
        self.enoexec();
    }

    fn module_absent(&mut self) {
        if self.f.chosen.is_err() {
            // It would decline the file: loading it is no fix (the reasons say why).
            self.reason(
                "module-absent",
                "binfmt_ape is not loaded (it would decline this file)",
            );
            return;
        }
        self.reason("module-absent", "binfmt_ape is not loaded");
        if self.m.nixos {
            self.fix(
                "module-absent",
                Some("boot.binfmtApe.enable = true;".into()),
                true,
                "in configuration.nix, then nixos-rebuild switch",
            );
        } else if self.m.ape.installed == Some(false) {
            self.fix(
                "module-absent",
                Some("modprobe binfmt_ape".into()),
                true,
                "after installing it for this kernel: binfmt-ape-dkms (Debian), or make && \
                 make modules_install in its source",
            );
        } else {
            self.fix(
                "module-absent",
                Some("modprobe binfmt_ape".into()),
                true,
                "load it (at every boot: list it in /etc/modules-load.d/)",
            );
        }
    }

    /// What exec checks when it opens the file (`do_open_execat()`, `may_open()`): a regular
    /// file, on a mount without noexec, with execute permission for the caller.
    fn refused_before_formats(&mut self) -> bool {
        let Some(st) = &self.f.stat else {
            return false;
        };
        let path = self.f.path.clone();
        if !st.meta.is_file() {
            self.reason("not-regular", "it is not a regular file");
            self.fails("EACCES", "not a regular file");
            return true;
        }
        if let Some(mt) = st.mount.as_ref().filter(|mt| mt.noexec) {
            let point = mt.point.clone();
            self.reason(
                "noexec",
                format!("it is on a noexec mount ({point}): exec refuses every file there"),
            );
            self.fix(
                "noexec",
                Some(format!("mount -o remount,exec {point}")),
                true,
                "or copy the file to a file system mounted without noexec",
            );
            self.fails("EACCES", format!("noexec mount {point}"));
            return true;
        }
        if let Some(c) = &self.m.caller {
            if !c.may(&st.meta, 1) {
                let owner = st.meta.uid() == c.uid;
                self.reason(
                    "no-exec-permission",
                    format!(
                        "you may not execute it (mode {:04o})",
                        st.meta.mode() & 0o7777
                    ),
                );
                self.fix(
                    "no-exec-permission",
                    Some(format!("chmod +x {path}")),
                    !owner,
                    "give it execute permission",
                );
                self.fails("EACCES", "no execute permission");
                return true;
            }
        }
        false
    }

    /// binfmt_ape's `load_binary`.
    fn ape(&mut self) -> bool {
        let Some(magic) = Magic::of(&self.buf) else {
            return false;
        };
        if self.m.ape.enabled == Some(false) {
            self.reason(
                "module-disabled",
                "binfmt_ape is loaded but disabled (fs.binfmt_ape.enabled = 0): it declines every file",
            );
            if self.f.chosen.is_ok() {
                self.fix(
                    "module-disabled",
                    Some("sysctl fs.binfmt_ape.enabled=1".into()),
                    true,
                    "enable binfmt_ape",
                );
            }
            return false;
        }
        if magic == Magic::Debug {
            self.v.declined = Some(ape::Error::DebugMagic.name());
            self.reason(
                "declined",
                "binfmt_ape leaves debug builds (APEDBG=') to the shell, by design (debug-magic)",
            );
            return false;
        }
        let (index, ehdr) = match self.f.chosen {
            Ok(c) => c,
            Err(e) => {
                self.v.declined = Some(e.name());
                self.file_problem(e, "binfmt_ape declines it");
                return false;
            }
        };
        if self.setid_declined() {
            return false;
        }
        let arch = self.m.arch.clone();
        self.reason(
            "handed-over",
            format!("binfmt_ape takes its {arch} header ({index}) and has binfmt_elf load it"),
        );
        if self.m.ape.in_tree {
            self.runs("binfmt_ape");
            return true;
        }
        // Out of tree the header goes over the file's first bytes, for binfmt_elf further down
        // the list: a format in between (binfmt_misc) sees the header.
        self.buf[..ape::EHDR_SIZE].copy_from_slice(&ehdr);
        self.handed = true;
        self.v.handler = Some("binfmt_ape");
        false
    }

    /// The set-id policy of binfmt_ape built out of tree (`binprm_gains_privilege()`).
    fn setid_declined(&mut self) -> bool {
        let Some(st) = &self.f.stat else {
            return false;
        };
        let mode = st.meta.mode();
        let bits = mode & 0o4000 != 0 || mode & 0o2010 == 0o2010;
        let privileged = bits || st.caps == Some(true);
        if !privileged {
            return false;
        }
        let what = if bits {
            "set-id"
        } else {
            "has file capabilities"
        };
        if let Some(mt) = st.mount.as_ref().filter(|mt| mt.nosuid) {
            let point = mt.point.clone();
            self.reason(
                "nosuid",
                format!("it is {what}, on a nosuid mount ({point}): it runs unprivileged"),
            );
            return false;
        }
        if self.m.caller.as_ref().is_some_and(|c| c.no_new_privs) {
            self.reason(
                "nosuid",
                format!("it is {what}, and you run with no_new_privs: it runs unprivileged"),
            );
            return false;
        }
        if self.m.ape.in_tree || self.m.ape.setid == Some(true) {
            self.reason(
                "setid",
                format!("it is {what}: it runs with those privileges, as an ELF file would"),
            );
            return false;
        }
        self.v.declined = Some("setid");
        self.reason(
            "setid",
            format!(
                "it is {what}, and binfmt_ape's set-id policy (fs.binfmt_ape.setid = 0) declines \
                 such APEs: through the shell it runs unprivileged"
            ),
        );
        self.fix(
            "setid",
            Some("sysctl fs.binfmt_ape.setid=1".into()),
            true,
            "to run set-id APEs natively, with their privileges (or drop them: chmod ug-s)",
        );
        true
    }

    /// A problem of the file itself, which binfmt_ape and cosmopolitan's loader both refuse.
    fn file_problem(&mut self, e: ape::Error, who: &str) {
        let arch = self.m.arch.clone();
        let kib = self.m.page_size / 1024;
        let (text, fix) = match e {
            ape::Error::NotApe | ape::Error::DebugMagic => return,
            ape::Error::NoPrintf => (
                format!("{who}: no printf statement in its first 8192 bytes spells an ELF header (no-printf)"),
                "it is not a complete APE: rebuild it".to_string(),
            ),
            ape::Error::NoMachine => (
                format!("{who}: it has no header for {arch} (no-machine)"),
                format!("ask its author for a build with an {arch} image (cosmocc builds both)"),
            ),
            ape::Error::Invalid(Field::Align) if self.m.page_size > 4096 => (
                format!(
                    "{who}: its {arch} segments are aligned for smaller pages than this kernel's \
                     {kib} KiB (align)"
                ),
                format!("this file cannot run on {kib}K pages: ask its author for a {kib}K-aligned build"),
            ),
            ape::Error::Invalid(f) => (
                format!("{who}: its {arch} header or program headers are invalid ({})", f.name()),
                "the file is damaged or was not built by cosmocc: rebuild it".to_string(),
            ),
        };
        self.reason("declined", text);
        self.fix("declined", None, false, fix);
    }

    /// binfmt_misc's `load_binary`: the first enabled rule that matches, newest first.
    fn misc(&mut self) -> bool {
        if self.m.misc.enabled == Some(false) {
            return false;
        }
        let hits: Vec<&Rule> = self
            .m
            .misc
            .rules
            .iter()
            .filter(|r| r.matches(&self.buf, &self.f.path))
            .collect();
        let Some(rule) = hits.first() else {
            return false;
        };
        let (name, interp) = (rule.name.clone(), rule.interpreter.clone());
        if hits.len() > 1 {
            let names: Vec<&str> = hits.iter().map(|r| r.name.as_str()).collect();
            self.reason(
                "misc-several",
                format!(
                    "binfmt_misc rules {} all match; binfmt_misc tries the newest first, taken \
                     to be {name} (highest inode number)",
                    names.join(", ")
                ),
            );
        }
        let how = match &rule.test {
            crate::system::Test::Extension(e) => format!("its name ends in .{e}"),
            crate::system::Test::Magic { .. } if self.handed => {
                "the ELF header binfmt_ape put in place of its first bytes".into()
            }
            crate::system::Test::Magic { .. } => "its first bytes".into(),
        };
        let ape_ahead = self.m.order.formats.iter().position(|&f| f == Format::Ape)
            < self.m.order.formats.iter().position(|&f| f == Format::Misc);
        let mount = self
            .m
            .misc
            .mount
            .clone()
            .unwrap_or_else(|| crate::system::MISC.into());
        if self.handed {
            self.reason(
                "misc-after-handover",
                format!(
                    "binfmt_misc, between binfmt_ape and binfmt_elf, matches {how} with rule \
                     {name}, and takes the file"
                ),
            );
        } else if self.f.magic.is_some() && self.m.ape.presence != Presence::Absent && !ape_ahead {
            let goes = if self.m.order.known {
                format!("binfmt_misc goes before binfmt_ape ({})", self.m.order.why)
            } else {
                "binfmt_misc is taken to go before binfmt_ape".into()
            };
            self.reason(
                "misc-ahead",
                format!("{goes}, and its rule {name} matches {how}"),
            );
            if self.m.ape.presence == Presence::Module {
                self.fix(
                    "misc-ahead",
                    Some("modprobe -r binfmt_ape && modprobe binfmt_ape".into()),
                    true,
                    "reload binfmt_ape, which puts it back ahead of binfmt_misc",
                );
            }
        } else {
            self.reason(
                "misc-rule",
                format!("binfmt_misc rule {name} matches {how}"),
            );
        }
        if self.f.magic.is_some() {
            self.fix(
                "misc-rule",
                Some(format!("echo 0 > {mount}/{name}")),
                true,
                format!("disable binfmt_misc rule {name}"),
            );
        }
        self.v.rule = Some(name);
        self.v.interpreter = Some(interp.clone());
        // Without `F`, binfmt_misc opens the interpreter at each exec.
        if self.live() && !rule.fixed() && !Path::new(&interp).exists() {
            self.reason(
                "misc-interpreter-missing",
                format!("its interpreter {interp} does not exist"),
            );
            self.fails("ENOENT", format!("interpreter {interp} missing"));
            self.v.handler = Some("binfmt_misc");
            return true;
        }
        self.runs("binfmt_misc");
        true
    }

    /// binfmt_elf's `load_binary`, as far as the first bytes tell.
    fn elf(&mut self) -> bool {
        if !self.buf.starts_with(b"\x7fELF") {
            return false;
        }
        if self.handed {
            self.runs("binfmt_ape");
            return true;
        }
        let class = self.buf[4];
        let machine = u16::from_le_bytes([self.buf[18], self.buf[19]]);
        let arch = self.m.arch.clone();
        let this = e_machine(&arch);
        // The 32-bit ELF of the same CPU family runs where the kernel has compat support.
        let compat = match arch.as_str() {
            "x86_64" => 3,
            "aarch64" => 40,
            _ => 0,
        };
        if class == 2 && Some(machine) == this {
            self.reason("elf", format!("it is an ELF program for {arch}"));
        } else if class == 1 && machine == compat {
            self.reason(
                "elf",
                format!("it is a 32-bit ELF program: it runs if the kernel has 32-bit support for {arch}"),
            );
        } else {
            self.reason(
                "elf-other-cpu",
                format!("it is an ELF file for another CPU (e_machine {machine}): binfmt_elf refuses it"),
            );
            return false;
        }
        if let Some(interp) = self.f.elf_interp.clone() {
            if self.live() && !Path::new(&interp).exists() {
                self.reason(
                    "elf-interpreter-missing",
                    format!("its dynamic loader {interp} does not exist"),
                );
                self.fails("ENOENT", format!("dynamic loader {interp} missing"));
                return true;
            }
        }
        self.runs("binfmt_elf");
        true
    }

    /// binfmt_script's `load_binary`: the interpreter named on the `#!` line.
    fn script(&mut self) -> bool {
        if !self.buf.starts_with(b"#!") {
            return false;
        }
        let line = &self.buf[2..];
        let line = &line[..line.iter().position(|&b| b == b'\n').unwrap_or(line.len())];
        let Some(interp) = line
            .split(|&b| b == b' ' || b == b'\t' || b == 0)
            .find(|w| !w.is_empty())
            .map(|w| String::from_utf8_lossy(w).into_owned())
        else {
            return false;
        };
        self.v.interpreter = Some(interp.clone());
        if self.live() && !Path::new(&interp).exists() {
            self.reason(
                "script-interpreter-missing",
                format!("its interpreter {interp} does not exist"),
            );
            self.fails("ENOENT", format!("interpreter {interp} missing"));
            self.v.handler = Some("binfmt_script");
            return true;
        }
        self.reason("script", format!("it is a #! script for {interp}"));
        self.runs("binfmt_script");
        true
    }

    /// No format took the file: execve fails with `ENOEXEC`, and a shell that called it runs
    /// the file as a shell script (execvp does the same).
    fn enoexec(&mut self) {
        self.v.execve = "ENOEXEC";
        self.v.handler = None;
        self.v.status = Status::No;
        if self.f.magic.is_none() {
            if self.f.head.contains(&0) {
                self.reason(
                    "no-format",
                    "no binary format takes it, and it is no shell script",
                );
                self.why = "no format takes it".into();
            } else {
                self.v.fallback = Some("shell");
                self.v.status = Status::Other;
                self.reason(
                    "shell-script",
                    "a shell runs it as a shell script (it has no #! line)",
                );
            }
            return;
        }
        self.v.fallback = Some("shell");
        self.why = "and a shell cannot run it either".into();
        if let Err(e) = self.f.loader {
            // Where binfmt_ape did not look, the problem is said here.
            if self.v.declined.is_none() {
                self.file_problem(e, "cosmopolitan's APE loader refuses it");
            }
            self.reason(
                "loader-refuses",
                "a shell would run its prologue, but the APE loader refuses it as binfmt_ape does",
            );
            return;
        }
        if let (true, Some(ape)) = (self.f.runs_ape_command, &self.m.ape_command) {
            let text = format!("a shell runs its prologue, which runs it with {ape}");
            self.reason("shell-loader", text);
            self.v.status = Status::Other;
            return;
        }
        let Some(loader) = self.f.extracts.clone() else {
            self.reason(
                "shell-no-loader",
                "a shell would run its prologue, which carries no APE loader for Linux",
            );
            return;
        };
        match &self.m.shell {
            Some(d) if d.usable == Some(false) => {
                let text = format!(
                    "a shell would run its prologue, which extracts the APE loader to {}/{loader} \
                     (${}) and runs it from there: {}",
                    d.dir, d.from, d.why
                );
                self.reason("shell-dir", text);
                self.fix(
                    "shell-dir",
                    None,
                    false,
                    "point TMPDIR at a writable directory on a file system mounted without noexec",
                );
            }
            Some(d) => {
                let text = format!(
                    "a shell runs its prologue, which extracts the APE loader to {}/{loader} (${}) \
                     and runs it with that",
                    d.dir, d.from
                );
                self.reason("shell-loader", text);
                self.v.status = Status::Other;
            }
            None => {
                self.reason(
                    "shell-loader",
                    format!("a shell runs its prologue, which extracts the APE loader (${{TMPDIR:-$HOME}}/{loader})"),
                );
                self.v.status = Status::Other;
            }
        }
    }

    fn summarize(&mut self) {
        let v = &self.v;
        let arch = &self.m.arch;
        let index = self.f.chosen.map(|(i, _)| i).unwrap_or(0);
        let mut s = match (v.status, v.handler, v.execve) {
            (Status::Native, Some("binfmt_ape"), _) => {
                format!("runs natively: binfmt_ape hands its {arch} header ({index}) to binfmt_elf")
            }
            (Status::Native, _, _) => format!("runs natively: binfmt_elf loads it ({arch} ELF)"),
            (Status::Other, Some("binfmt_misc"), _) => format!(
                "runs another way: binfmt_misc rule {} runs it with {}",
                v.rule.as_deref().unwrap_or("?"),
                v.interpreter.as_deref().unwrap_or("?")
            ),
            (Status::Other, Some("binfmt_script"), _) => format!(
                "runs another way: a #! script, run by {}",
                v.interpreter.as_deref().unwrap_or("?")
            ),
            (Status::Other, _, _) if self.f.magic.is_some() => {
                "runs another way: execve fails with ENOEXEC, then a shell runs its prologue and \
                 the APE loader"
                    .into()
            }
            (Status::Other, _, _) => {
                "runs another way: execve fails with ENOEXEC, then a shell runs it".into()
            }
            (Status::No, _, errno) if self.why.starts_with("and ") => {
                format!("will not run: execve fails with {errno} {}", self.why)
            }
            (Status::No, _, errno) => {
                format!("will not run: execve fails with {errno} ({})", self.why)
            }
        };
        if v.status == Status::No {
            if let Some(d) = v.declined {
                s.push_str(&format!(" (binfmt_ape declines it: {d})"));
            }
        }
        if !self.m.live {
            s.push_str(&format!(
                " [for {arch} with {} KiB pages and binfmt_ape loaded, not this machine]",
                self.m.page_size / 1024
            ));
        }
        self.v.summary = s;
    }
}
