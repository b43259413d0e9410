// SPDX-License-Identifier: GPL-2.0
//! The decoder alone, on arbitrary bytes: it must never panic, and a selected header must be
//! one its own checks accept.
#![no_main]

use apekit::ape;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for s in ape::statements(data) {
        let _ = s.ehdr.check(ape::EM_X86_64);
    }
    for m in [ape::EM_X86_64, ape::EM_AARCH64] {
        for page in [4096, 65536] {
            if let Ok(sel) = apekit::select(data, m, page) {
                assert_eq!(sel.statement.ehdr.check(m), Ok(()));
                assert_eq!(sel.statement.ehdr.e_machine(), m);
            }
        }
    }
});
