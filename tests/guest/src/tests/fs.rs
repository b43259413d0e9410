// SPDX-License-Identifier: GPL-2.0

//! File systems an APE may be read from: each exec reads it through the file system, cold
//! from a block device, over 9p without a cache, or through overlayfs.

use super::common::{base, check_payload, ent, expect_eq, real_apes_run, sh, Check, ENT_COM, FAT};
use super::{test, Test};
use crate::exec::Outcome;
use crate::sys::{free_loop_device, has_filesystem};
use std::fs;

/// File systems an APE may be read from: each exec reads it through the file system.
pub fn tests() -> Vec<Test> {
    let ext2 = test("fs.ext2_read_cold", || {
        let files: Vec<&str> = if real_apes_run() {
            vec![FAT, ENT_COM]
        } else {
            vec![FAT]
        };
        on_cold_ext2(&files, |mnt| {
            check_payload(&format!("{mnt}/{}", base(FAT)), "exec")?;
            if real_apes_run() {
                expect_eq(
                    "ent.com",
                    ent(&format!("{mnt}/ent.com")).outcome,
                    Outcome::Exit(0),
                )?;
            }
            Ok(())
        })
    })
    .skip_if(
        !(has_filesystem("ext2") && std::path::Path::new("/dev/loop-control").exists()),
        "kernel without ext2 or loop devices",
    );
    let ninep = test("fs.9p_cache_none", || {
        const MNT: &str = "/mnt/9p";
        fs::create_dir_all(MNT).map_err(|e| format!("{MNT}: {e}"))?;
        sh(
            "mount",
            &[
                "-t",
                "9p",
                "-o",
                "trans=virtio,version=9p2000.L,cache=none,ro",
                "apefix",
                MNT,
            ],
        )?;
        let r = check_payload(&format!("{MNT}/{}", base(FAT)), "exec");
        let unmounted = sh("umount", &[MNT]);
        r.and(unmounted)
    });
    let shared = fs::read_dir("/sys/bus/virtio/devices").is_ok_and(|d| {
        d.flatten()
            .any(|e| fs::read(e.path().join("mount_tag")).is_ok_and(|t| t.starts_with(b"apefix")))
    });
    let ninep = ninep.skip_if(
        !(has_filesystem("9p") && shared),
        "no 9p share from the QEMU host (kernel without 9p or virtio)",
    );
    let overlay = test("fs.overlayfs", || {
        const MNT: &str = "/mnt/ovl";
        const UPPER: &str = "/tmp/ovl-top";
        fs::create_dir_all(MNT).map_err(|e| format!("{MNT}: {e}"))?;
        fs::create_dir_all(UPPER).map_err(|e| format!("{UPPER}: {e}"))?;
        if real_apes_run() {
            sh("cp", &[ENT_COM, UPPER])?;
        }
        let lower = format!("lowerdir={UPPER}:/ape/fix");
        sh("mount", &["-t", "overlay", "overlay", "-o", &lower, MNT])?;
        let r = check_payload(&format!("{MNT}/{}", base(FAT)), "exec").and_then(|()| {
            if real_apes_run() {
                expect_eq(
                    "ent.com",
                    ent(&format!("{MNT}/ent.com")).outcome,
                    Outcome::Exit(0),
                )
            } else {
                Ok(())
            }
        });
        let unmounted = sh("umount", &[MNT]);
        r.and(unmounted)
    })
    .skip_if(!has_filesystem("overlay"), "kernel without overlayfs");
    vec![ext2, ninep, overlay]
}

/// Mounts an ext2 image on a loop device and copies `files` into it, then mounts it again
/// read-only, so that nothing of them is in the page cache; runs `f` on the mount point.
fn on_cold_ext2(files: &[&str], f: impl FnOnce(&str) -> Check) -> Check {
    const IMG: &str = "/tmp/cold.img";
    const MNT: &str = "/mnt/cold";
    fs::File::create(IMG)
        .and_then(|f| f.set_len(8 << 20))
        .map_err(|e| format!("{IMG}: {e}"))?;
    sh("mke2fs", &["-F", "-q", "-b", "4096", IMG])?;
    fs::create_dir_all(MNT).map_err(|e| format!("{MNT}: {e}"))?;
    free_loop_device()?;
    sh("mount", &["-t", "ext2", "-o", "loop", IMG, MNT])?;
    let copied = files.iter().try_for_each(|p| sh("cp", &[p, MNT]));
    sh("umount", &[MNT])?;
    copied?;
    sh("mount", &["-t", "ext2", "-o", "loop,ro", IMG, MNT])?;
    let r = f(MNT);
    let unmounted = sh("umount", &[MNT]);
    let _ = fs::remove_file(IMG);
    r.and(unmounted)
}
