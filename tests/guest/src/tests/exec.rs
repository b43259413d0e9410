// SPDX-License-Identifier: GPL-2.0

//! Exec semantics: each case gives the fat APE and its payload as a plain ELF the same outcome,
//! and the one named; the kernel's own exec checks still apply to APEs.

use super::common::{
    base, check_payload, describe, expect_eq, open, page_size, ran, read, refused, sh, write,
    Check, LogMark, E_MACHINE, FAT, NATIVE, SYSCTL,
};
use super::{test, Test};
use crate::exec::{errno_name, run, run_as, run_how, spawn, As, How, Outcome, Run, Stdin};
use std::fs;

/// The exec semantics, then the kernel's own checks (permissions, core dumps) and the formats
/// next to binfmt_ape (ELF, `#!`).
pub fn tests() -> Vec<Test> {
    let mut v = vec![
        test("exec.refused_name_escaped_in_log", || {
            // A file name may hold a newline: the log escapes it, so no line of its own begins
            // with what followed it.
            let path = "/tmp/bad\nname.ape";
            sh("cp", &["/ape/corpus/phentsize-55.ape", path])?;
            let want = "binfmt_ape: bad\\nname.ape: not run natively: phentsize";
            LogMark::logged(
                || refused(path),
                |logged| {
                    let forged = logged
                        .iter()
                        .flat_map(|m| m.lines())
                        .any(|l| l.starts_with("name.ape: not run"));
                    logged.iter().any(|l| l.contains(want)) && !forged
                },
            )
            .map_err(|e| format!("no {want:?} alone in the kernel log; {e}"))
        }),
        test("exec.execveat_cloexec_fd", || {
            twin(|p| fd_run(p, libc::O_RDONLY), ran)
        }),
        test("exec.execveat_o_path_fd", || {
            twin(|p| fd_run(p, libc::O_PATH), ran)
        }),
        test("exec.execveat_memfd", || {
            twin(
                |p| {
                    let bytes = fs::read(p).map_err(|e| format!("{p}: {e}"))?;
                    // MFD_EXEC (6.3+): an executable memfd, said so (else the kernel warns once).
                    const MFD_EXEC: libc::c_uint = 0x10;
                    // SAFETY: A valid name; the descriptor is ours.
                    let fd = unsafe {
                        libc::memfd_create(c"ape".as_ptr(), libc::MFD_CLOEXEC | MFD_EXEC)
                    };
                    if fd < 0 {
                        return Err(format!("memfd_create: {}", std::io::Error::last_os_error()));
                    }
                    // SAFETY: `fd` is open; `bytes` is valid for its length.
                    let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
                    let r = (usize::try_from(n).ok() == Some(bytes.len()))
                        .then(|| run_how(As::default(), How::Fd(fd), &["memfd"], Stdin::Null))
                        .ok_or_else(|| "short write to the memfd".to_string());
                    // SAFETY: Closing our descriptor.
                    unsafe { libc::close(fd) };
                    r
                },
                ran,
            )
        }),
        test("exec.execveat_unlinked_file", || {
            twin(
                |p| {
                    let copy = format!("/tmp/unlinked-{}", base(p));
                    sh("cp", &[p, &copy])?;
                    let fd = open(&copy, libc::O_RDONLY)?;
                    fs::remove_file(&copy).map_err(|e| format!("{copy}: {e}"))?;
                    let r = run_how(As::default(), How::Fd(fd), &["unlinked"], Stdin::Null);
                    // SAFETY: Closing our descriptor.
                    unsafe { libc::close(fd) };
                    Ok(r)
                },
                ran,
            )
        }),
        test("exec.script_interpreter", || {
            twin(
                |p| {
                    let script = format!("/tmp/interp-{}.sh", base(p));
                    write_exe(&script, &format!("#!{p}\n"))?;
                    let r = run(&script, &[&script], Stdin::Null);
                    if r.out().contains(&format!("argv=[{p},{script}]")) {
                        Ok(r)
                    } else {
                        Err(format!(
                            "{script}: {}; want argv=[{p},{script}]",
                            describe(&r)
                        ))
                    }
                },
                ran,
            )
        }),
        test("exec.refused_interpreter_logged_by_its_path", || {
            // The log names the APE (bprm->interp), not the script that named it.
            sh(
                "cp",
                &["/ape/corpus/phentsize-55.ape", "/tmp/bad-interp.ape"],
            )?;
            write_exe("/tmp/bad-interp.sh", "#!/tmp/bad-interp.ape\n")?;
            let want = "binfmt_ape: bad-interp.ape: not run natively: phentsize";
            LogMark::expect(want, || {
                let r = run("/tmp/bad-interp.sh", &["/tmp/bad-interp.sh"], Stdin::Null);
                expect_eq("execve", r.outcome, Outcome::Errno(libc::ENOEXEC))
            })
        }),
        test("exec.script_chain_depth_eloop", || {
            // Each #! level is one round of the kernel's handler search; binfmt_ape adds none.
            for depth in 1..=7 {
                let r = twin_run(|p| chain_run(p, depth), |_| true)?;
                let want = if depth <= 4 {
                    Some(Outcome::Exit(0))
                } else if depth >= 6 {
                    Some(Outcome::Errno(libc::ELOOP))
                } else {
                    None
                };
                if want.is_some_and(|w| w != r.outcome) {
                    return Err(format!(
                        "{depth} scripts deep: {}; want {want:?}",
                        describe(&r)
                    ));
                }
            }
            Ok(())
        }),
        test("exec.write_while_running_etxtbsy", || {
            twin(
                |p| {
                    let copy = format!("/tmp/busy-{}", base(p));
                    sh("cp", &[p, &copy])?;
                    let child = spawn(&copy, &[&copy, "--wait"], Stdin::Pipe)
                        .map_err(|e| format!("{copy}: {}", errno_name(e)))?;
                    let w = fs::OpenOptions::new().write(true).open(&copy);
                    let r = child.finish();
                    match w {
                        Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => Ok(r),
                        Err(e) => Err(format!("open {copy} for writing: {e}; want ETXTBSY")),
                        Ok(_) => Err(format!("open {copy} for writing succeeded; want ETXTBSY")),
                    }
                },
                ran,
            )
        }),
        test("exec.argv_near_and_past_the_limit", || {
            // One string may be at most MAX_ARG_STRLEN (32 pages) long.
            let limit = usize::try_from(32 * page_size()).map_err(|e| e.to_string())?;
            let near = "a".repeat(120 * 1024);
            twin(|p| Ok(run(p, &[p, &near], Stdin::Null)), ran)?;
            let past = "a".repeat(limit + 1024);
            twin(
                |p| Ok(run(p, &[p, &past], Stdin::Null)),
                |r| r.outcome == Outcome::Errno(libc::E2BIG),
            )
        }),
        test("exec.empty_argv", || {
            // The kernel supplies an empty argv[0] (since 5.18).
            twin(
                |p| Ok(run(p, &[], Stdin::Null)),
                |r| ran(r) && r.out().contains(" argc=1 argv=[] "),
            )
        }),
        test("exec.empty_chroot", || {
            // No /bin/sh, no loader, no /tmp: only a kernel that runs the APE itself can.
            for (jail, p) in [("/tmp/jail-ape", FAT), ("/tmp/jail-elf", NATIVE)] {
                fs::create_dir_all(jail).map_err(|e| format!("{jail}: {e}"))?;
                sh("cp", &[p, &format!("{jail}/x")])?;
            }
            let inside = |jail: &'static str| {
                let who = As {
                    chroot: Some(jail),
                    ..As::default()
                };
                run_as(who, "/x", &["/x"], Stdin::Null)
            };
            let (ape, elf) = (inside("/tmp/jail-ape"), inside("/tmp/jail-elf"));
            if !(ran(&ape) && ape.outcome == elf.outcome) {
                return Err(format!("APE {}; ELF {}", describe(&ape), describe(&elf)));
            }
            write(&format!("{SYSCTL}/enabled"), "0\n")?;
            let off = inside("/tmp/jail-ape");
            write(&format!("{SYSCTL}/enabled"), "1\n")?;
            expect_eq("with enabled=0", off.outcome, Outcome::Errno(libc::ENOEXEC))
        }),
    ];
    v.push(test("exec.core_dump_is_an_elf_core", core_dump).skip_if(
        !std::path::Path::new(CORE_PATTERN).exists(),
        "kernel without core dumps (CONFIG_COREDUMP)",
    ));
    v.push(test("permissions.noexec_mount_eacces", || {
        fs::create_dir_all("/mnt/noexec").map_err(|e| e.to_string())?;
        sh(
            "mount",
            &["-t", "tmpfs", "-o", "noexec", "none", "/mnt/noexec"],
        )?;
        sh("cp", &[FAT, "/mnt/noexec/x.ape"])?;
        let r = run("/mnt/noexec/x.ape", &["x"], Stdin::Null);
        sh("umount", &["/mnt/noexec"])?;
        expect_eq("execve", r.outcome, Outcome::Errno(libc::EACCES))
    }));
    v.push(test("permissions.mode_0644_eacces", || {
        sh("cp", &[FAT, "/tmp/0644.ape"])?;
        sh("chmod", &["0644", "/tmp/0644.ape"])?;
        expect_eq(
            "execve",
            run("/tmp/0644.ape", &["x"], Stdin::Null).outcome,
            Outcome::Errno(libc::EACCES),
        )
    }));
    v.push(test("elf_still_runs", || check_payload(NATIVE, "exec")));
    v.push(test("script_still_runs", || {
        let r = run("/test/hello.sh", &["/test/hello.sh"], Stdin::Null);
        if r.outcome == Outcome::Exit(0) && r.out() == "hello from #!\n" {
            Ok(())
        } else {
            Err(describe(&r))
        }
    }));
    v
}

/// Runs `f` on the fat APE and on its payload as a plain ELF: both must end the same way, and
/// the APE's run must pass `ok`.
fn twin(f: impl Fn(&str) -> Result<Run, String>, ok: impl Fn(&Run) -> bool) -> Check {
    twin_run(f, ok).map(drop)
}

/// As [`twin`], returning the APE's run.
fn twin_run(
    f: impl Fn(&str) -> Result<Run, String>,
    ok: impl Fn(&Run) -> bool,
) -> Result<Run, String> {
    let (ape, elf) = (f(FAT)?, f(NATIVE)?);
    if ape.outcome != elf.outcome || !ok(&ape) {
        return Err(format!("APE {}; ELF {}", describe(&ape), describe(&elf)));
    }
    Ok(ape)
}

/// Runs `path` with `execveat(fd, "", AT_EMPTY_PATH)` on a descriptor opened with `flags`.
fn fd_run(path: &str, flags: i32) -> Result<Run, String> {
    let fd = open(path, flags)?;
    let r = run_how(As::default(), How::Fd(fd), &["fd"], Stdin::Null);
    // SAFETY: Closing our descriptor.
    unsafe { libc::close(fd) };
    Ok(r)
}

fn write_exe(path: &str, text: &str) -> Check {
    write(path, text)?;
    sh("chmod", &["755", path])
}

/// Runs a chain of `depth` `#!` scripts that ends in `target`.
fn chain_run(target: &str, depth: usize) -> Result<Run, String> {
    let tag = target.rsplit('/').next().unwrap_or("x");
    let mut next = target.to_string();
    for i in 0..depth {
        let script = format!("/tmp/chain-{tag}-{depth}-{i}.sh");
        write_exe(&script, &format!("#!{next}\n"))?;
        next = script;
    }
    Ok(run(&next, &[&next], Stdin::Null))
}

const CORE_PATTERN: &str = "/proc/sys/kernel/core_pattern";

/// A crashing APE dumps core as an ELF program does: an `ET_CORE` file for this CPU.
fn core_dump() -> Check {
    let old = read(CORE_PATTERN)?;
    write(CORE_PATTERN, "/tmp/core.%p")?;
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    let mut old_limit = unlimited;
    // SAFETY: `old_limit` and `unlimited` are valid rlimits; children inherit the new one.
    unsafe {
        libc::getrlimit(libc::RLIMIT_CORE, &mut old_limit);
        libc::setrlimit(libc::RLIMIT_CORE, &unlimited);
    }
    let child = spawn(FAT, &[FAT, "--wait"], Stdin::Pipe);
    let dumped = child
        .map_err(|e| format!("execve: {}", errno_name(e)))
        .and_then(|child| {
            let pid = child.pid;
            // SAFETY: `kill` has no memory-safety preconditions.
            unsafe { libc::kill(pid, libc::SIGQUIT) };
            let r = child.finish();
            expect_eq("outcome", r.outcome, Outcome::Signal(libc::SIGQUIT))?;
            let path = format!("/tmp/core.{pid}");
            let core = fs::read(&path).map_err(|e| format!("{path}: {e}"));
            let _ = fs::remove_file(&path);
            core
        });
    // Back to the limit as it was, for the later tests' crashes (corpus cases, the rewrite
    // storm): they are not to dump cores.
    // SAFETY: `old_limit` is the valid rlimit read above.
    unsafe { libc::setrlimit(libc::RLIMIT_CORE, &old_limit) };
    write(CORE_PATTERN, &format!("{old}\n"))?;
    let core = dumped?;
    let half = |at: usize| {
        core.get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    expect_eq("magic", core.get(..4), Some(&b"\x7fELF"[..]))?;
    expect_eq("e_type (ET_CORE)", half(16), Some(4))?;
    expect_eq("e_machine", half(18), Some(E_MACHINE))
}
