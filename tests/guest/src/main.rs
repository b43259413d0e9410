// SPDX-License-Identifier: GPL-2.0

//! binfmt_ape's guest test runner: runs inside the QEMU guest (started by the initramfs's
//! init), execs programs directly with `fork` + `execve`, and prints KTAP.
//!
//! `ape-runner check [PREFIX...]`   the whole suite, or the tests named so, with `insmod`
//!                      (plan first, one line per test; the tests that unload and reload the
//!                      module, from `rmmod` on, are one sequence and are named together)
//! `ape-runner demo [APE [ARGS...]]`  show an APE running natively
//! `ape-runner soak SECONDS`  the exec storm (`storm.rs`) for that long
//! `ape-runner fuzz [SECONDS] [--execs N] ...`  the guest fuzzer (`fuzz/mod.rs`)
//!
//! The tests live in `tests/`, one module per area; the guest's layout (built by
//! qemu/mkinitramfs.sh) is described in `tests/common.rs`.

mod exec;
mod fuzz;
mod storm;
mod sys;
mod tests;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match args.first().map(String::as_str) {
        Some("check") => tests::check(&args[1..]),
        Some("demo") => tests::demo(&args[1..]),
        Some("fuzz") => fuzz::main(&args[1..]),
        Some("soak") => tests::soak(args.get(1).and_then(|s| s.parse().ok()).unwrap_or(60)),
        _ => {
            eprintln!("usage: ape-runner check | demo [APE [ARGS...]] | soak SECONDS | fuzz ...");
            2
        }
    };
    std::process::exit(code);
}
