// SPDX-License-Identifier: GPL-2.0

//! Host-side tools around binfmt_ape's decoder: the decoder itself (the kernel module's own
//! file), an independent reference model, an APE writer and the malformed-APE corpus.

#[path = "../../../src/ape.rs"]
pub mod ape;
pub mod corpus;
pub mod elf;
pub mod mkape;
pub mod reference;

/// A [`ape::Source`] over a whole file in memory.
pub struct Slice<'a>(pub &'a [u8]);

impl ape::Source for Slice<'_> {
    type Error = std::convert::Infallible;

    fn read_exact_at(&mut self, pos: u64, len: usize) -> Result<Option<&[u8]>, Self::Error> {
        let start = usize::try_from(pos).ok();
        Ok(start.and_then(|s| self.0.get(s..s.checked_add(len)?)))
    }
}

/// The header the decoder chose, and its index among the window's header statements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Selected {
    pub index: usize,
    pub statement: ape::Statement,
}

/// Runs the decoder on a whole file, the way the kernel module does.
pub fn select(file: &[u8], machine: u16, page_size: u64) -> Result<Selected, ape::Error> {
    let window = &file[..file.len().min(ape::WINDOW)];
    let chosen = match ape::select(window, machine, page_size, &mut Slice(file)) {
        Ok(v) => v,
        Err(never) => match never {},
    };
    chosen.map(|statement| Selected {
        index: ape::header_index(window, &statement),
        statement,
    })
}

/// Runs the decoder on the first `n` bytes of the window only, as the kernel module does with
/// its first read, then (if they do not decide) on the whole window from where it stopped: the
/// verdict from the prefix (`None` if it did not decide), and the final one. (The module
/// decodes the whole window from the start instead, which is [`select`].)
pub fn select_prefix(
    file: &[u8],
    n: usize,
    machine: u16,
    page_size: u64,
) -> (
    Option<Result<ape::Statement, ape::Error>>,
    Result<ape::Statement, ape::Error>,
) {
    let window = &file[..file.len().min(ape::WINDOW)];
    let prefix = &window[..n.min(window.len())];
    if prefix.len() == window.len() {
        let v = ape::select(window, machine, page_size, &mut Slice(file))
            .unwrap_or_else(|never| match never {});
        return (Some(v), v);
    }
    let step = ape::select_prefix(prefix, machine, page_size, &mut Slice(file))
        .unwrap_or_else(|never| match never {});
    match step {
        ape::Prefix::Decided(v) => (Some(v), v),
        ape::Prefix::Undecided(at) => (
            None,
            ape::resume(window, at, machine, page_size, &mut Slice(file))
                .unwrap_or_else(|never| match never {}),
        ),
    }
}
