//! Zeroed arrays taken straight from the kernel with `mmap` and given back
//! with `munmap`, for the replica tables.
//!
//! A replica table is the one large allocation that every shard repeats for
//! every AOR, and it is reallocated each time it grows. Through
//! the global allocator the freed tables stayed in the process (mimalloc
//! keeps and purges lazily): with 16 shards and 1,000,000 AORs the RSS per
//! binding was 469 bytes against 350 with tables sized once (measured
//! in-process, see perf/RESULTS.md). Pages from `mmap` leave the process the
//! moment a table is replaced, and untouched pages cost nothing.

use std::alloc::{handle_alloc_error, Layout};
use std::marker::PhantomData;
use std::ptr::NonNull;

/// Types for which all-zero bytes are a valid value.
///
/// # Safety
/// Implement only for types where the all-zero bit pattern is valid.
pub unsafe trait Zeroable: Copy {}

// SAFETY: every bit pattern is a valid integer.
unsafe impl Zeroable for u8 {}
// SAFETY: as above.
unsafe impl Zeroable for usize {}

/// `len` zeroed `T`s in their own anonymous mapping.
pub struct Pages<T: Zeroable> {
    ptr: NonNull<T>,
    len: usize,
    _owns: PhantomData<T>,
}

// SAFETY: `Pages` owns its mapping exclusively, like a `Box<[T]>`.
unsafe impl<T: Zeroable + Send> Send for Pages<T> {}
// SAFETY: shared access only reads, like `&[T]`.
unsafe impl<T: Zeroable + Sync> Sync for Pages<T> {}

impl<T: Zeroable> Pages<T> {
    /// `len` zeroes. Out of memory ends the process the way a failed `Vec`
    /// allocation does.
    pub fn zeroed(len: usize) -> Pages<T> {
        let bytes = len.checked_mul(size_of::<T>());
        let Some(bytes) = bytes.filter(|&b| b > 0) else {
            return Pages {
                ptr: NonNull::dangling(),
                len: if size_of::<T>() == 0 { len } else { 0 },
                _owns: PhantomData,
            };
        };
        // SAFETY: an anonymous private mapping of `bytes` bytes; no
        // pointer is passed in, and the result is checked below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        let layout =
            Layout::from_size_align(bytes, align_of::<T>()).unwrap_or_else(|_| Layout::new::<T>());
        if p == libc::MAP_FAILED {
            handle_alloc_error(layout);
        }
        match NonNull::new(p.cast::<T>()) {
            Some(ptr) => Pages {
                ptr,
                len,
                _owns: PhantomData,
            },
            None => handle_alloc_error(layout),
        }
    }

    /// The elements.
    pub fn as_slice(&self) -> &[T] {
        // SAFETY: `ptr` points to `len` initialised (zeroed or written)
        // `T`s that live as long as `self` (page-aligned, so aligned for T).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The elements, to write.
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        // SAFETY: as in `as_slice`, and `&mut self` makes the access unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl<T: Zeroable> Default for Pages<T> {
    fn default() -> Self {
        Pages::zeroed(0)
    }
}

impl<T: Zeroable> Drop for Pages<T> {
    fn drop(&mut self) {
        let bytes = self.len * size_of::<T>();
        if bytes > 0 {
            // SAFETY: exactly the mapping `zeroed` made; nothing refers to
            // it once `self` is dropped.
            unsafe { libc::munmap(self.ptr.as_ptr().cast(), bytes) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeroed_writable_and_empty() {
        let mut p: Pages<usize> = Pages::zeroed(100_000);
        assert!(p.as_slice().iter().all(|&x| x == 0));
        p.as_mut_slice()[99_999] = 7;
        assert_eq!(p.as_slice()[99_999], 7);
        let e: Pages<u8> = Pages::zeroed(0);
        assert!(e.is_empty() && e.as_slice().is_empty());
    }
}
