// SPDX-License-Identifier: GPL-2.0

//! The headers chosen for the APEs run last, with the bytes each choice read, so that running
//! one again compares those bytes instead of decoding them.
//!
//! A choice ([`ape::Statement`]) is a function of the window's first `end` bytes, the window's
//! length and the program header table the header names ([`ape::Statement::end`]). An entry
//! keeps exactly those bytes, and a lookup compares them with the file's, in the page cache:
//! a hit is the choice the decoder would make again, whatever happened to the file in between
//! (writes, `mmap` writes that move no timestamp or `i_version`, a new file at the old inode's
//! address). The file's identity ([`Binprm::file_id`]) only finds the entry.
//!
//! The table is a few slots, each holding at most one entry (a window prefix and a table: at
//! most 9 KiB) and the identity of the file it was made for, which a lookup scans for. Whoever
//! uses an entry takes it out of its slot and puts it back: an entry has one owner at a time,
//! so there is no lock and nothing to free under a reader. A concurrent exec of the same file
//! meanwhile finds the slot empty and decodes, as on a miss. A new entry goes into its file's
//! slot, or else the slots are reused in turn.

use crate::{alloc_flags, ape, binfmt::Binprm, FileSource};
use core::{
    ptr,
    sync::atomic::{AtomicPtr, AtomicUsize, Ordering},
};
use kernel::prelude::*;

/// Slots in the table: the number of APEs whose choices are kept.
const SLOTS: usize = 16;

/// Where an entry is kept.
struct Slot {
    /// [`Binprm::file_id`] of the file whose entry was put here last: a hint for lookups,
    /// which check [`Entry::file`] once they hold the entry.
    file: AtomicUsize,
    entry: AtomicPtr<Entry>,
}

static TABLE: [Slot; SLOTS] = [const {
    Slot {
        file: AtomicUsize::new(0),
        entry: AtomicPtr::new(ptr::null_mut()),
    }
}; SLOTS];

/// The slot that a new entry displaces when its file has none.
static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A choice and what it rests on.
struct Entry {
    /// [`Binprm::file_id`] of the file it was made for.
    file: usize,
    /// The length of the window it was made from.
    window: usize,
    statement: ape::Statement,
    /// The window's first `statement.end` bytes, then the program header table.
    bytes: KVec<u8>,
}

impl Entry {
    /// Whether the choice holds for `bprm`'s file (the one it was made for) now: the same bytes
    /// where it read them.
    fn holds(&self, bprm: &Binprm, window: usize) -> bool {
        let Some(end) = self.statement.end else {
            return false;
        };
        if self.window != window {
            return false;
        }
        let (Some(prefix), Some(table)) = (self.bytes.get(..end), self.bytes.get(end..)) else {
            return false;
        };
        let mut pos = 0usize;
        while let Some(want) = prefix.get(pos..).filter(|w| !w.is_empty()) {
            let Some(page) = u64::try_from(pos).ok().and_then(|p| bprm.cached(p)) else {
                return false;
            };
            let n = page.len().min(want.len());
            match (page.get(..n), want.get(..n)) {
                (Some(have), Some(want)) if n > 0 && same(have, want) => {}
                _ => return false,
            }
            // At most the window's length, so this cannot wrap.
            pos = pos.wrapping_add(n);
        }
        let mut src = FileSource::new(bprm);
        let found =
            ape::Source::read_exact_at(&mut src, self.statement.ehdr.e_phoff(), table.len());
        matches!(found, Ok(Some(t)) if same(t, table))
    }
}

/// Whether `a` and `b` hold the same bytes.
///
/// arm64's `memcmp` is written in assembly, 16 bytes per step; x86_64 has lib/string.c's, a
/// word and a branch per step. There, where the slices are aligned alike (the page cache's
/// pages and an entry's buffer are), this compares four words per branch instead: a third
/// fewer instructions for a window of 8 KiB.
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    if !cfg!(target_arch = "x86_64") {
        return a == b;
    }
    // SAFETY: Every bit pattern is a valid `u64`, and `align_to` hands out only the aligned
    // middle of each slice as words.
    let ((a_head, a_words, a_tail), (b_head, b_words, b_tail)) =
        unsafe { (a.align_to::<u64>(), b.align_to::<u64>()) };
    if a_head.len() != b_head.len() {
        return a == b;
    }
    if a_head != b_head || a_tail != b_tail {
        return false;
    }
    let (mut a_steps, mut b_steps) = (a_words.chunks_exact(4), b_words.chunks_exact(4));
    for (x, y) in a_steps.by_ref().zip(b_steps.by_ref()) {
        if x.iter().zip(y).fold(0, |d, (p, q)| d | p ^ q) != 0 {
            return false;
        }
    }
    a_steps.remainder() == b_steps.remainder()
}

/// The slot that last held an entry for `file`.
fn slot_of(file: usize) -> Option<&'static Slot> {
    TABLE
        .iter()
        .find(|s| s.file.load(Ordering::Relaxed) == file)
}

/// Takes the entry out of `slot`, if there is one.
fn take(slot: &Slot) -> Option<KBox<Entry>> {
    // Acquire: see the entry as whoever put it there wrote it.
    let p = slot.entry.swap(ptr::null_mut(), Ordering::Acquire);
    // SAFETY: A non-null pointer in a slot comes from `KBox::into_raw` in `put`, and the swap
    // made us its only owner.
    (!p.is_null()).then(|| unsafe { KBox::from_raw(p) })
}

/// Puts `entry` into `slot`: over what is there if `replace`, else only into an empty slot.
fn put(slot: &Slot, entry: KBox<Entry>, replace: bool) {
    let p = KBox::into_raw(entry);
    // Release: publish the entry's contents with the pointer.
    let old = if replace {
        slot.entry.swap(p, Ordering::AcqRel)
    } else {
        match slot
            .entry
            .compare_exchange(ptr::null_mut(), p, Ordering::Release, Ordering::Relaxed)
        {
            Ok(_) => ptr::null_mut(),
            Err(_) => p,
        }
    };
    if !old.is_null() {
        // SAFETY: `old` came from `KBox::into_raw`, here or in an earlier `put`, and is owned by
        // nothing else: a replaced entry left the slot in the swap, and one that was not put is
        // still ours.
        drop(unsafe { KBox::from_raw(old) });
    }
}

/// The choice made last time for `bprm`'s file, if it still holds (`window`: the length of the
/// window now).
pub(crate) fn lookup(bprm: &Binprm, window: usize) -> Option<ape::Statement> {
    let file = bprm.file_id();
    let slot = slot_of(file)?;
    let entry = take(slot)?;
    if entry.file != file {
        // Put there meanwhile for another file.
        put(slot, entry, false);
        return None;
    }
    if !entry.holds(bprm, window) {
        // Dropped, to be replaced once the file is decoded.
        return None;
    }
    let statement = entry.statement;
    put(slot, entry, false);
    Some(statement)
}

/// Keeps the choice `statement` made for `bprm`'s file from `window` (the first bytes of a
/// window `len` bytes long), if it can be checked later (see [`ape::Statement::end`]). Fails
/// quietly: a choice not kept is decoded again.
pub(crate) fn remember(bprm: &Binprm, len: usize, window: &[u8], statement: &ape::Statement) {
    let Some(prefix) = statement.end.and_then(|end| window.get(..end)) else {
        return;
    };
    let table_len = statement.ehdr.phdr_table_len();
    let mut src = FileSource::new(bprm);
    let Ok(Some(table)) = ape::Source::read_exact_at(&mut src, statement.ehdr.e_phoff(), table_len)
    else {
        return;
    };
    let Some(size) = prefix.len().checked_add(table.len()) else {
        return;
    };
    let Ok(mut bytes) = KVec::with_capacity(size, alloc_flags()) else {
        return;
    };
    if bytes.extend_from_slice(prefix, alloc_flags()).is_err()
        || bytes.extend_from_slice(table, alloc_flags()).is_err()
    {
        return;
    }
    drop(src);
    let entry = Entry {
        file: bprm.file_id(),
        window: len,
        statement: *statement,
        bytes,
    };
    let Ok(entry) = KBox::new(entry, alloc_flags()) else {
        return;
    };
    let slot = slot_of(entry.file).or_else(|| {
        let next = NEXT.fetch_add(1, Ordering::Relaxed);
        TABLE.get(next % SLOTS)
    });
    if let Some(slot) = slot {
        slot.file.store(entry.file, Ordering::Relaxed);
        put(slot, entry, true);
    }
}

/// Empties the table (when the module goes, once no exec can be in it).
pub(crate) fn clear() {
    for slot in &TABLE {
        drop(take(slot));
    }
}
