//! A global allocator for training on CPU backends: it keeps freed large blocks and hands them
//! back when a block of the same size is asked for again.
//!
//! A training step allocates and frees the same tensors of tens of MiB every step. glibc's
//! malloc serves blocks above its mmap threshold (at most 32 MiB when set by `mallopt`) with
//! `mmap` and returns them with `munmap`, so every step faults each page back in and the kernel
//! zeroes it: a third of a batch-128 step's time on `flex` (docs/performance.md). Tensor shapes
//! repeat from step to step, so an exact-size cache removes nearly all of it.
//!
//! Opt in from a binary:
//!
//! ```ignore
//! #[global_allocator]
//! static ALLOCATOR: cider_train::alloc::ReuseLargeBlocks = cider_train::alloc::ReuseLargeBlocks::new();
//! ```
//!
//! The cache holds at most [`MAX_CACHED_BLOCKS`] blocks and [`MAX_CACHED_BYTES`] bytes; beyond
//! that the oldest cached block is returned to the system.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Mutex;

/// Blocks smaller than this go straight to the system allocator.
pub const MIN_CACHED_SIZE: usize = 256 << 10;
/// Most blocks kept at once.
pub const MAX_CACHED_BLOCKS: usize = 1024;
/// Most bytes kept at once (freed blocks beyond it are returned to the system).
pub const MAX_CACHED_BYTES: usize = 2 << 30;

/// One kept block: address, size and alignment of the layout it was allocated with.
#[derive(Clone, Copy)]
struct Block {
    address: usize,
    size: usize,
    align: usize,
}

/// The kept blocks, in the order they were freed (oldest first).
struct Cache {
    blocks: [Option<Block>; MAX_CACHED_BLOCKS],
    len: usize,
    bytes: usize,
}

impl Cache {
    /// Removes and returns a kept block of exactly this layout.
    fn take(&mut self, layout: Layout) -> Option<Block> {
        let found = self.blocks[..self.len].iter().position(|block| {
            block.is_some_and(|b| b.size == layout.size() && b.align == layout.align())
        })?;
        Some(self.remove(found))
    }

    /// Removes the block at `index`, keeping the others in order.
    fn remove(&mut self, index: usize) -> Block {
        let block = self.blocks[index]
            .take()
            .expect("index below len holds a block");
        self.blocks.copy_within(index + 1..self.len, index);
        self.len -= 1;
        self.blocks[self.len] = None;
        self.bytes -= block.size;
        block
    }

    /// Keeps `block` if it fits within the limits; otherwise removes the oldest kept block and
    /// returns it, for the caller to free before trying again. `block.size` must be at most
    /// [`MAX_CACHED_BYTES`], so an empty cache always has room.
    fn keep_or_evict(&mut self, block: Block) -> Result<(), Block> {
        if self.len < MAX_CACHED_BLOCKS && self.bytes + block.size <= MAX_CACHED_BYTES {
            self.blocks[self.len] = Some(block);
            self.len += 1;
            self.bytes += block.size;
            Ok(())
        } else {
            Err(self.remove(0))
        }
    }
}

/// The system allocator with an exact-size cache of freed blocks of at least
/// [`MIN_CACHED_SIZE`] bytes.
pub struct ReuseLargeBlocks {
    cache: Mutex<Cache>,
}

impl ReuseLargeBlocks {
    /// An empty cache (usable in a `static`).
    pub const fn new() -> Self {
        Self {
            cache: Mutex::new(Cache {
                blocks: [None; MAX_CACHED_BLOCKS],
                len: 0,
                bytes: 0,
            }),
        }
    }

    /// Bytes currently kept for reuse.
    pub fn cached_bytes(&self) -> usize {
        self.lock().bytes
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        // Nothing panics while the lock is held; a poisoned lock still holds a valid cache.
        self.cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn cached(&self, layout: Layout) -> Option<*mut u8> {
        if layout.size() < MIN_CACHED_SIZE {
            return None;
        }
        self.lock()
            .take(layout)
            .map(|block| block.address as *mut u8)
    }
}

impl Default for ReuseLargeBlocks {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: every block handed out is either fresh from `System` with the caller's layout, or a
// block previously allocated by `System` with exactly the same size and alignment and since
// freed by its owner; blocks are returned to `System` with the layout they were allocated with.
unsafe impl GlobalAlloc for ReuseLargeBlocks {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match self.cached(layout) {
            Some(ptr) => ptr,
            // SAFETY: the caller's contract (non-zero size) is passed on unchanged.
            None => unsafe { System.alloc(layout) },
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        match self.cached(layout) {
            Some(ptr) => {
                // SAFETY: the block is `layout.size()` bytes, owned by no one else.
                unsafe { ptr.write_bytes(0, layout.size()) };
                ptr
            }
            // SAFETY: as in `alloc`.
            None => unsafe { System.alloc_zeroed(layout) },
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if layout.size() < MIN_CACHED_SIZE || layout.size() > MAX_CACHED_BYTES {
            // SAFETY: the block came from `System` with this layout.
            unsafe { System.dealloc(ptr, layout) };
            return;
        }
        let block = Block {
            address: ptr as usize,
            size: layout.size(),
            align: layout.align(),
        };
        loop {
            let evicted = match self.lock().keep_or_evict(block) {
                Ok(()) => return,
                Err(evicted) => evicted,
            };
            // SAFETY: a kept block was allocated by `System` with this size and alignment.
            unsafe {
                System.dealloc(
                    evicted.address as *mut u8,
                    Layout::from_size_align_unchecked(evicted.size, evicted.align),
                )
            };
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // Every live block, cached before or not, is a `System` block of `layout`.
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    fn layout(size: usize) -> Layout {
        Layout::from_size_align(size, 64).expect("valid layout")
    }

    #[test]
    fn a_freed_large_block_is_handed_back_for_the_same_layout_only() {
        let cache = ReuseLargeBlocks::new();
        unsafe {
            let first = cache.alloc(layout(3 * MIB));
            first.write_bytes(7, 3 * MIB);
            cache.dealloc(first, layout(3 * MIB));
            assert_eq!(cache.cached_bytes(), 3 * MIB);

            let other = cache.alloc(layout(3 * MIB + 64));
            assert_ne!(other, first);
            assert_eq!(cache.cached_bytes(), 3 * MIB);

            let again = cache.alloc_zeroed(layout(3 * MIB));
            assert_eq!(again, first);
            assert_eq!(cache.cached_bytes(), 0);
            let bytes = std::slice::from_raw_parts(again, 3 * MIB);
            assert!(
                bytes.iter().all(|&b| b == 0),
                "a reused zeroed block is zeroed"
            );

            cache.dealloc(other, layout(3 * MIB + 64));
            cache.dealloc(again, layout(3 * MIB));
            assert_eq!(cache.cached_bytes(), 6 * MIB + 64);
        }
    }

    #[test]
    fn small_blocks_are_not_kept() {
        let cache = ReuseLargeBlocks::new();
        unsafe {
            let small = cache.alloc(layout(MIN_CACHED_SIZE - 64));
            cache.dealloc(small, layout(MIN_CACHED_SIZE - 64));
        }
        assert_eq!(cache.cached_bytes(), 0);
    }

    #[test]
    fn the_cache_keeps_at_most_the_block_limit_dropping_the_oldest() {
        let cache = ReuseLargeBlocks::new();
        let blocks: Vec<(*mut u8, Layout)> = (0..MAX_CACHED_BLOCKS + 3)
            .map(|i| {
                let layout = layout(MIN_CACHED_SIZE + 64 * i);
                (unsafe { cache.alloc(layout) }, layout)
            })
            .collect();
        for &(ptr, layout) in &blocks {
            unsafe { cache.dealloc(ptr, layout) };
        }
        let kept: usize = (3..MAX_CACHED_BLOCKS + 3)
            .map(|i| MIN_CACHED_SIZE + 64 * i)
            .sum();
        assert_eq!(cache.cached_bytes(), kept);
        // The three oldest went back to the system: asking for one gets a fresh block.
        unsafe {
            let fresh = cache.alloc(blocks[0].1);
            assert_eq!(cache.cached_bytes(), kept);
            let reused = cache.alloc(blocks[5].1);
            assert_eq!(reused, blocks[5].0);
            cache.dealloc(fresh, blocks[0].1);
            cache.dealloc(reused, blocks[5].1);
        }
    }
}
