// SPDX-License-Identifier: GPL-2.0
//! The decoder against the independent reference model: any difference is a crash.
#![no_main]

use apekit::{ape, reference};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for m in [ape::EM_X86_64, ape::EM_AARCH64] {
        for page in [4096, 16384] {
            let got = apekit::select(data, m, page).map(|s| (s.index, s.statement.ehdr.0)).map_err(|e| e.name());
            assert_eq!(got, reference::select(data, m, page).result, "machine {m} page {page}");
        }
    }
});
