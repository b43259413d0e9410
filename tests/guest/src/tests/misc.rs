// SPDX-License-Identifier: GPL-2.0

//! binfmt_misc under binfmt_ape: APEs it runs never reach binfmt_misc's rules, and what it
//! declines reaches them with `bprm->buf` untouched, magic and all.

use super::common::{
    check_case, check_payload, ent, expect_eq, in_tree, read, real_apes_run, sh, write, Check,
    ARCH, ENT_COM, E_MACHINE, FAT, MISC,
};
use super::corpus::Case;
use super::{test, Test};
use crate::exec::Outcome;
use std::fs;

/// binfmt_misc rules for every APE magic, the way Wine's MZ rule catches APEs.
pub const APE_RULES: [&str; 3] = [
    ":mz:M::MZ::/bin/sentinel:",
    ":jartsr:M::jartsr::/bin/sentinel:",
    ":apedbg:M::APEDBG::/bin/sentinel:",
];

/// The name a binfmt_misc rule gives itself (its first field).
fn rule_name(rule: &str) -> &str {
    rule.split(':').nth(1).unwrap_or_default()
}

/// Runs `f` with binfmt_misc mounted: mounted for it, and unmounted again, if it was not.
fn with_misc(f: impl FnOnce() -> Check) -> Check {
    let mount = !std::path::Path::new(&format!("{MISC}/register")).exists();
    if mount {
        sh("mount", &["-t", "binfmt_misc", "none", MISC])?;
    }
    let r = f();
    if mount {
        r.and(sh("umount", &[MISC]))
    } else {
        r
    }
}

/// Runs `f` with the binfmt_misc `rules` registered (binfmt_misc mounted first if it is not),
/// and removes them again, whatever `f` returned.
pub fn with_rules(rules: &[&str], f: impl FnOnce() -> Check) -> Check {
    with_misc(|| {
        let mut added = Vec::new();
        let mut r = rules.iter().try_for_each(|rule| {
            write(&format!("{MISC}/register"), rule)?;
            added.push(rule_name(rule));
            Ok(())
        });
        if r.is_ok() {
            r = f();
        }
        for name in added.into_iter().rev() {
            let removed = write(&format!("{MISC}/{name}"), "-1");
            r = r.and(removed);
        }
        r
    })
}

/// Each test registers the rules it needs and removes them again: none needs another's.
pub fn tests(fix: &[Case], corpus: &[Case]) -> Vec<Test> {
    let mut v = vec![
        test("misc.register_rules", || {
            with_rules(&APE_RULES, || {
                APE_RULES.iter().map(|r| rule_name(r)).try_for_each(|name| {
                    let state = read(&format!("{MISC}/{name}"))?;
                    expect_eq(name, state.lines().next(), Some("enabled"))
                })
            })
        }),
        test("misc.ape_still_native", || {
            with_rules(&APE_RULES, || check_payload(FAT, "exec"))
        }),
        test("misc.rule_matching_this_cpus_elf_header", || {
            // A rule for the very ELF header the fat fixture spells for this CPU (through
            // e_phoff, so no plain ELF matches it). Out of tree, binfmt_misc lies between
            // binfmt_ape and binfmt_elf and sees that header in `bprm->buf`, so it takes the
            // APE (README, "Known limits"); in-tree binfmt_elf gets the header directly and
            // the rule never matches.
            let header = fat_elf_header()?;
            let magic: String = header.iter().map(|b| format!("\\x{b:02x}")).collect();
            let rule = format!(":apehdr:M::{magic}::/bin/sentinel:");
            with_rules(&APE_RULES, || {
                with_rules(&[&rule], || {
                    if in_tree() {
                        check_payload(FAT, "exec")
                    } else {
                        check_case(FAT, "exec", "sentinel")
                    }
                })
            })
        }),
    ];
    if real_apes_run() {
        v.push(test("misc.ent_still_native", || {
            with_rules(&APE_RULES, || {
                expect_eq("ent.com", ent(ENT_COM).outcome, Outcome::Exit(0))
            })
        }));
    } else {
        // Declined with its magic intact, so binfmt_misc's MZ rule gets it.
        v.push(test("misc.ent_declined_reaches_misc", || {
            with_rules(&APE_RULES, || check_case(ENT_COM, "ent", "sentinel"))
        }));
    }
    // Declined files must reach binfmt_misc with `bprm->buf` untouched, magic and all.
    for c in fix
        .iter()
        .chain(corpus)
        .filter(|c| c.expect == "ENOEXEC" && c.with_misc != "same")
        .cloned()
    {
        v.push(test(format!("misc.{}", c.name), move || {
            with_rules(&APE_RULES, || {
                check_case(&format!("{}/{}.ape", c.dir, c.name), &c.name, &c.with_misc)
            })
        }));
    }
    const EXTENSION_RULE: &str = ":apeext:E::ape::/bin/sentinel:";
    if in_tree() {
        v.push(test("misc.extension_rule_does_not_take_ape", || {
            // In-tree, binfmt_ape has binfmt_elf load the APE itself: an `E::` rule, which
            // matches the file's name, sees only what binfmt_ape declines.
            with_rules(&APE_RULES, || {
                with_rules(&[EXTENSION_RULE], || check_payload(FAT, "exec"))
            })
        }));
    } else {
        v.push(test("misc.extension_rule_takes_ape", || {
            // binfmt_ape hands the exec on (ENOEXEC) to binfmt_elf, and binfmt_misc lies
            // between: an `E::` rule matches the file's name, not its bytes, so it takes the
            // APE, as it did without binfmt_ape (README, "Known limits").
            with_rules(&APE_RULES, || {
                with_rules(&[EXTENSION_RULE], || check_case(FAT, "exec", "sentinel"))?;
                check_payload(FAT, "exec")
            })
        }));
    }
    v.push(test("misc.unregister_rules", || {
        with_misc(|| {
            with_rules(&APE_RULES, || Ok(()))?;
            for name in APE_RULES.iter().map(|r| rule_name(r)) {
                if std::path::Path::new(&format!("{MISC}/{name}")).exists() {
                    return Err(format!("{MISC}/{name} is still there"));
                }
            }
            Ok(())
        })
    }));
    v
}

/// The first 40 bytes (through `e_phoff`) of the ELF header that [`FAT`] spells for this CPU:
/// mkape writes each image at a 64 KiB boundary with that very header.
fn fat_elf_header() -> Result<Vec<u8>, String> {
    let file = fs::read(FAT).map_err(|e| format!("{FAT}: {e}"))?;
    file.chunks(65536)
        .skip(1)
        .find(|c| c.starts_with(b"\x7fELF") && c.get(18..20) == Some(&E_MACHINE.to_le_bytes()[..]))
        .and_then(|c| c.get(..40))
        .map(<[u8]>::to_vec)
        .ok_or_else(|| format!("no ELF image for {ARCH} in {FAT}"))
}
