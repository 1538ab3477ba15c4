//! The one `unsafe` edge of the counters: a `MAP_SHARED` anonymous mapping,
//! made by the master before it forks, that every worker inherits.
#![allow(unsafe_code)]
#![deny(clippy::undocumented_unsafe_blocks)]

use std::io;
use std::num::NonZeroUsize;

use nix::sys::mman::{MapFlags, ProtFlags, mmap_anonymous};

use super::Counters;

/// Map `len` zeroed [`Counters`] rows shared with every process forked
/// afterwards. The mapping is never unmapped: it lives as long as the
/// process (the master and its workers read it until they exit).
pub fn map_counters(len: usize) -> io::Result<&'static [Counters]> {
    let len = len.max(1);
    let bytes = NonZeroUsize::new(len * std::mem::size_of::<Counters>()).unwrap();
    // SAFETY: a fresh anonymous mapping aliases no Rust object; the kernel
    // zero-fills it, and all-zero bytes are a valid `Counters` (atomics only).
    let ptr = unsafe {
        mmap_anonymous(
            None,
            bytes,
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
            MapFlags::MAP_SHARED,
        )
    }
    .map_err(|e| io::Error::from_raw_os_error(e as i32))?;
    // SAFETY: the mapping holds `len` page-aligned, zero-initialised rows and
    // is never unmapped, so a `'static` shared slice over it is valid; only
    // atomics are reached through it, so other processes writing the same
    // pages concurrently is fine.
    Ok(unsafe { std::slice::from_raw_parts(ptr.as_ptr().cast::<Counters>(), len) })
}
