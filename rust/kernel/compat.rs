// SPDX-License-Identifier: GPL-2.0

//! The parts of the newest kernel crate API that older kernel series lack, backported.
//!
//! The Rust-for-Linux API changes every release. binfmt_ape is written against the newest one
//! (Linux 7.3); this file is the only place that knows older ones exist. `Kbuild` sets
//! `cfg(ape_pre_6_15)` when the target kernel is older than 6.15, from the target's own
//! `VERSION` and `PATCHLEVEL`. Each item says what it stands in for; drop it once the oldest
//! supported series has the real thing.
//!
//! | Linux 6.15 and later | before 6.15 | here |
//! | --- | --- | --- |
//! | `module! { authors: [..] }` | `module! { author: ".." }` | [`module!`] |
//!
//! Everything else the module uses has the same name and meaning in every supported series:
//! `kernel::str::CStr` with `c_str!`, `as_char_ptr` and `from_char_ptr` (inherent methods
//! before 7.0, the prelude's `CStrExt` after), `PinInit` and the pin-init macros from the
//! prelude, `Opaque::ffi_init`, `kernel::ffi`, `KVec`, `KVVec`, `page::PAGE_SIZE`.

/// Declares the module, with the newest `module!` syntax.
#[cfg(not(ape_pre_6_15))]
macro_rules! module {
    ($($info:tt)*) => {
        ::kernel::prelude::module! { $($info)* }
    };
}

/// Declares the module, with the newest `module!` syntax: before 6.15 the macro takes one
/// `author:` string instead of an `authors:` list.
#[cfg(ape_pre_6_15)]
macro_rules! module {
    (
        type: $type:tt,
        name: $name:tt,
        authors: [$author:tt],
        description: $description:tt,
        license: $license:tt $(,)?
    ) => {
        ::kernel::prelude::module! {
            type: $type,
            name: $name,
            author: $author,
            description: $description,
            license: $license,
        }
    };
}
pub(crate) use module;
