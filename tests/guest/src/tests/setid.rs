// SPDX-License-Identifier: GPL-2.0

//! Set-id APEs: declined unless root opts in (`setid`), run unprivileged where the kernel would
//! ignore the bits anyway. In tree there is no policy of its own: exec's rules apply.

use super::common::{
    counter, describe, expect_eq, in_tree, ran, sh, write, Check, LogMark, FAT, NATIVE, SYSCTL,
};
use super::misc::with_rules;
use super::{test, unless_in_tree, Test};
use crate::exec::{run_as, As, Outcome, Run, Stdin};
use std::fs;

/// The set-id tests; those of the module's own policy are skipped in tree.
pub fn tests() -> Vec<Test> {
    let nobody = As {
        uid: Some(65534),
        ..As::default()
    };
    let mut v = vec![
        unless_in_tree("setid.declined_by_default", move || {
            suid_copy("/tmp/suid.ape")?;
            let want = "binfmt_ape: suid.ape: not run natively: setid";
            LogMark::expect(want, || {
                let before = counter("declined_setid");
                let r = run_as(nobody, "/tmp/suid.ape", &["/tmp/suid.ape"], Stdin::Null);
                expect_eq("execve", r.outcome, Outcome::Errno(libc::ENOEXEC))?;
                expect_eq("declined_setid", counter("declined_setid"), before + 1)
            })
        }),
        test("setid.sgid_without_group_exec_runs", move || {
            // bprm_fill_uid() ignores set-group-ID without group execute: so do we.
            sh("cp", &[FAT, "/tmp/sgid.ape"])?;
            sh("chmod", &["2745", "/tmp/sgid.ape"])?;
            let r = run_as(nobody, "/tmp/sgid.ape", &["/tmp/sgid.ape"], Stdin::Null);
            secure_run(&r, "0")
        }),
        test("setid.opt_in_sets_at_secure", move || {
            suid_copy("/tmp/suid.ape")?;
            set_setid("1")?;
            let r = run_as(nobody, "/tmp/suid.ape", &["/tmp/suid.ape"], Stdin::Null);
            set_setid("0")?;
            secure_run(&r, "1")
        }),
        test("setid.nosuid_mount_runs_unprivileged", move || {
            fs::create_dir_all("/mnt/nosuid").map_err(|e| e.to_string())?;
            sh(
                "mount",
                &["-t", "tmpfs", "-o", "nosuid", "none", "/mnt/nosuid"],
            )?;
            let r = suid_copy("/mnt/nosuid/x.ape")
                .map(|()| run_as(nobody, "/mnt/nosuid/x.ape", &["x"], Stdin::Null));
            sh("umount", &["/mnt/nosuid"])?;
            secure_run(&r?, "0")
        }),
        test("setid.no_new_privs_runs_unprivileged", || {
            suid_copy("/tmp/suid.ape")?;
            let who = As {
                uid: Some(65534),
                no_new_privs: true,
                ..As::default()
            };
            let r = run_as(who, "/tmp/suid.ape", &["/tmp/suid.ape"], Stdin::Null);
            secure_run(&r, "0")
        }),
    ];
    let caps = unless_in_tree("setid.file_capabilities_declined_by_default", move || {
        // `security.capability` makes an ELF run with more privileges, as set-id bits do.
        cap_copy("/tmp/caps.ape")?;
        let before = counter("declined_setid");
        let r = run_as(nobody, "/tmp/caps.ape", &["/tmp/caps.ape"], Stdin::Null);
        expect_eq("execve", r.outcome, Outcome::Errno(libc::ENOEXEC))?;
        expect_eq("declined_setid", counter("declined_setid"), before + 1)?;
        set_setid("1")?;
        let r = run_as(nobody, "/tmp/caps.ape", &["/tmp/caps.ape"], Stdin::Null);
        set_setid("0")?;
        expect_eq("with setid=1", r.outcome, Outcome::Exit(0))
    })
    .skip_if(
        cap_copy("/tmp/caps-probe").is_err(),
        "no security.* xattrs on tmpfs (CONFIG_TMPFS_XATTR)",
    );
    v.push(caps);
    // A binfmt_misc rule with the C flag takes the credentials from the file it matched, not
    // from its interpreter: a set-id target is declined even though the interpreter APE is
    // not set-id (an exec that failed before binfmt_ape), and runs set-id where root opted in.
    v.push(unless_in_tree(
        "setid.misc_credentials_rule_declined",
        move || {
            let (interp, target) = misc_credentials_files()?;
            let rule = format!(":apecreds:E::xsuid::{interp}:C");
            with_rules(&[&rule], || {
                let before = counter("declined_setid");
                let r = run_as(nobody, target, &[target], Stdin::Null);
                expect_eq("execve", r.outcome, Outcome::Errno(libc::ENOEXEC))?;
                expect_eq("declined_setid", counter("declined_setid"), before + 1)
            })
        },
    ));
    v.push(test("setid.misc_credentials_rule_allowed", move || {
        let (interp, target) = misc_credentials_files()?;
        let rule = format!(":apecreds:E::xsuid::{interp}:C");
        set_setid("1")?;
        let r = with_rules(&[&rule], || {
            secure_run(&run_as(nobody, target, &[target], Stdin::Null), "1")
        });
        set_setid("0")?;
        r
    }));
    v.push(test("setid.ptrace_gets_elf_semantics", move || {
        // Traced by an unprivileged tracer (ptracer_capable() false), a set-id ELF runs with
        // exec's ptrace rules (commoncap keeps the caller's ids, and still sets AT_SECURE):
        // a set-id APE that binfmt_ape hands over runs the same way.
        suid_copy("/tmp/suid.ape")?;
        sh("cp", &[NATIVE, "/tmp/suid.elf"])?;
        sh("chmod", &["4755", "/tmp/suid.elf"])?;
        let traced = As {
            traced: true,
            ..nobody
        };
        set_setid("1")?;
        let ape = run_as(traced, "/tmp/suid.ape", &["/tmp/suid.ape"], Stdin::Null);
        set_setid("0")?;
        let elf = run_as(traced, "/tmp/suid.elf", &["/tmp/suid.elf"], Stdin::Null);
        let secure = |r: &Run| {
            r.out()
                .split_whitespace()
                .find(|w| w.starts_with("secure="))
                .map(String::from)
        };
        if ran(&ape)
            && ape.outcome == elf.outcome
            && secure(&ape).is_some()
            && secure(&ape) == secure(&elf)
        {
            Ok(())
        } else {
            Err(format!("APE {}; ELF {}", describe(&ape), describe(&elf)))
        }
    }));
    v.push(unless_in_tree(
        "setid.ptrace_declined_by_default",
        move || {
            // binfmt_ape cannot ask whether the tracer may raise privileges (ptracer_capable() is
            // not exported): with `setid` at 0 it declines, erring that way.
            suid_copy("/tmp/suid.ape")?;
            let traced = As {
                traced: true,
                ..nobody
            };
            let before = counter("declined_setid");
            let r = run_as(traced, "/tmp/suid.ape", &["/tmp/suid.ape"], Stdin::Null);
            expect_eq("execve", r.outcome, Outcome::Errno(libc::ENOEXEC))?;
            expect_eq("declined_setid", counter("declined_setid"), before + 1)
        },
    ));
    v
}

/// Sets the module's set-id policy (`setid`). In tree there is none to set: exec's own rules
/// apply to APEs as to any ELF, as with `setid` at 1.
fn set_setid(v: &str) -> Check {
    if in_tree() {
        return Ok(());
    }
    write(&format!("{SYSCTL}/setid"), &format!("{v}\n"))
}

fn suid_copy(path: &str) -> Check {
    sh("cp", &[FAT, path])?;
    sh("chmod", &["4755", path])
}

/// The payload ran natively, with AT_SECURE as `secure` says.
fn secure_run(r: &Run, secure: &str) -> Check {
    if r.outcome == Outcome::Exit(0) && r.out().contains(&format!(" secure={secure} ")) {
        Ok(())
    } else {
        Err(format!("{}; want a run with secure={secure}", describe(r)))
    }
}

/// A copy of the fat fixture with file capabilities (`cap_net_raw`, permitted and effective).
fn cap_copy(path: &str) -> Check {
    sh("cp", &[FAT, path])?;
    // struct vfs_cap_data, revision 2: magic_etc (revision | effective), then permitted and
    // inheritable for capabilities 0-31 and 32-63.
    let mut cap = Vec::new();
    for word in [0x0200_0001u32, 1 << 13, 0, 0, 0] {
        cap.extend_from_slice(&word.to_le_bytes());
    }
    let c_path = std::ffi::CString::new(path).map_err(|e| e.to_string())?;
    // SAFETY: Both strings are NUL-terminated and `cap` is `cap.len()` readable bytes.
    let r = unsafe {
        libc::setxattr(
            c_path.as_ptr(),
            c"security.capability".as_ptr(),
            cap.as_ptr().cast(),
            cap.len(),
            0,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(format!("setxattr: {}", std::io::Error::last_os_error()))
    }
}

/// An interpreter APE for a binfmt_misc rule with the `C` flag, and a set-user-ID root file
/// the rule runs through it (plain data: only the rule makes it run). Returns the
/// `(interpreter, target)` paths.
fn misc_credentials_files() -> Result<(&'static str, &'static str), String> {
    const INTERP: &str = "/tmp/interp.ape";
    const TARGET: &str = "/tmp/prog.xsuid";
    sh("cp", &[FAT, INTERP])?;
    sh("chmod", &["0755", INTERP])?;
    fs::write(TARGET, "not an executable of any format\n").map_err(|e| format!("{TARGET}: {e}"))?;
    sh("chmod", &["4755", TARGET])?;
    Ok((INTERP, TARGET))
}
