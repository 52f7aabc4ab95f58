// SPDX-License-Identifier: GPL-2.0

//! Receive-pool memory: a shmem file that the kernel writes into and user space maps read-only.
//!
//! Each peer's pool is an unlinked shmem file of a large, fixed virtual size. Physical pages
//! exist only where the kernel has written (the file is created with `VM_NORESERVE`, so memory is
//! committed page by page too), and they are charged to the memory cgroup given when the file is
//! created (the pool owner's), not to whichever sender happens to write into it.
//!
//! Writers copy straight into the page cache, one page at a time, holding only a reference on the
//! page's folio: no inode lock, so senders to one receiver copy in parallel, and no bounce buffer,
//! so a payload is copied exactly once from the sender's memory. Discarding a range punches a hole
//! in the file, which frees its pages and removes them from every user mapping.
//!
//! Pool memory is shared with user space, which may read it at any time. It is therefore never
//! accessed through Rust references or Rust loads and stores, only by C copy routines working on
//! raw addresses (like user memory), so concurrent calls on overlapping ranges can garble bytes
//! but cannot cause undefined behaviour.
//!
//! C headers: [`include/linux/shmem_fs.h`](srctree/include/linux/shmem_fs.h),
//! [`include/linux/memcontrol.h`](srctree/include/linux/memcontrol.h); glue in `rust/helpers.c`.

use super::memcg::MemCgroup;
use core::ptr::NonNull;
use kernel::{
    bindings,
    error::{
        from_err_ptr,
        to_result, //
    },
    ffi::{
        c_char,
        c_int,
        c_ulong,
        c_void, //
    },
    fs::File,
    mm::virt::VmaNew,
    page::{
        PAGE_SHIFT,
        PAGE_SIZE, //
    },
    prelude::*,
    sync::aref::ARef,
    uaccess::UserPtr,
};

#[allow(
    improper_ctypes,
    reason = "only pointers cross the boundary; the lint trips over zero-sized bindgen fields"
)]
extern "C" {
    fn rust_bus1_shmem_setup(name: *const c_char, size: bindings::loff_t) -> *mut bindings::file;
    fn rust_bus1_shmem_get_page(
        file: *mut bindings::file,
        index: c_ulong,
        memcg: *mut bindings::mem_cgroup,
    ) -> *mut bindings::page;
    fn rust_bus1_shmem_find_page(file: *mut bindings::file, index: c_ulong) -> *mut bindings::page;
    fn rust_bus1_shmem_put_page(page: *mut bindings::page, dirty: bool);
    fn rust_bus1_shmem_write_user(
        file: *mut bindings::file,
        pos: bindings::loff_t,
        src: *const c_void,
        len: usize,
        memcg: *mut bindings::mem_cgroup,
    ) -> c_int;
    fn rust_bus1_page_copy_from_user(
        page: *mut bindings::page,
        offset: usize,
        src: *const c_void,
        len: usize,
    ) -> usize;
    fn rust_bus1_page_write(
        page: *mut bindings::page,
        offset: usize,
        src: *const c_void,
        len: usize,
    );
    fn rust_bus1_page_read(page: *mut bindings::page, offset: usize, dst: *mut c_void, len: usize);
    fn rust_bus1_page_dirtied(page: *mut bindings::page);
    fn rust_bus1_shmem_punch_hole(
        file: *mut bindings::file,
        offset: bindings::loff_t,
        len: bindings::loff_t,
    ) -> c_int;
    fn rust_bus1_shmem_resident_pages(file: *mut bindings::file) -> c_ulong;
    fn rust_bus1_shmem_mmap(file: *mut bindings::file, vma: *mut bindings::vm_area_struct)
        -> c_int;
}

// CAST: `PAGE_SIZE` is a small power of two.
const PAGE: u64 = PAGE_SIZE as u64;

/// A shmem file used as a peer's receive pool.
///
/// # Invariants
///
/// - `file` is an unlinked, kernel-internal shmem file created by `rust_bus1_shmem_setup`, open
///   for reading and writing, of size `size`, which never changes. It is never installed in a
///   file descriptor table, so nobody holds an `fdget_pos` on it.
/// - `size` is a non-zero multiple of `PAGE_SIZE` and fits in an `loff_t`.
pub(crate) struct ShmemFile {
    file: ARef<File>,
    /// The memory cgroup pages are charged to; `None` without memory cgroups.
    memcg: Option<ARef<MemCgroup>>,
    size: u64,
}

// SAFETY: The file is reference counted and may be used and put from any thread, and so may the
// memory cgroup.
unsafe impl Send for ShmemFile {}
// SAFETY: Every `&self` method may run concurrently with any other: page-cache lookups and
// allocations are internally synchronised, pool memory is only accessed by C copy routines (see
// the module documentation), and hole punching takes the inode lock.
unsafe impl Sync for ShmemFile {}

impl ShmemFile {
    /// Creates a pool file of `size` bytes, none of them backed by memory yet.
    ///
    /// `name` shows up in `/proc/<pid>/maps` of processes that map the pool. Pages are charged to
    /// `memcg` (for example that of the pool's owner, [`MemCgroup::current`] in `open`), whoever
    /// writes them. Fails with `EINVAL` unless `size` is a non-zero multiple of the page size
    /// that the page cache can address.
    pub(crate) fn new(name: &CStr, size: u64, memcg: Option<ARef<MemCgroup>>) -> Result<Self> {
        if size == 0 || size % PAGE != 0 {
            return Err(EINVAL);
        }
        let loff = bindings::loff_t::try_from(size).map_err(|_| EINVAL)?;
        // SAFETY: `name` is a NUL-terminated string valid for the call; shmem copies it into the
        // file's dentry.
        let raw = from_err_ptr(unsafe { rust_bus1_shmem_setup(name.as_char_ptr(), loff) })?;
        let raw = NonNull::new(raw).ok_or(ENOMEM)?;
        // SAFETY: `rust_bus1_shmem_setup` returned a new file holding one reference, which is
        // handed over to the `ARef`. `File` is a transparent wrapper of `struct file`, and the
        // file is never installed in an fd table, so no `fdget_pos` can be active on it.
        let file = unsafe { ARef::from_raw(raw.cast::<File>()) };
        // INVARIANT: The file is a fresh shmem file of `size` bytes, and `size` was checked above.
        Ok(Self { file, memcg, size })
    }

    /// Returns the size of the file in bytes, fixed at creation.
    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// Copies `len` bytes from the user address `src` (in the current task) to `offset`.
    ///
    /// Allocates pages for holes, charged to the pool owner's memory cgroup. Fails with `EINVAL`
    /// if the range does not fit in the file, with `EFAULT` if the user memory cannot be read (the
    /// range may then be partially written), and with `ENOMEM` if no page can be allocated. May
    /// sleep, and faulting on `src` takes the current task's mmap lock, so do not call this while
    /// holding a lock that an `mmap` hook or page fault may take.
    ///
    /// Concurrent calls for disjoint ranges do not interfere, even within one page.
    ///
    /// The pages in the page cache are found in one walk of the file's mapping per batch of
    /// them, not looked up one by one.
    pub(crate) fn write_from_user(&self, offset: u64, src: UserPtr, len: usize) -> Result {
        self.check_range(offset, len)?;
        // CAST: `check_range` proved that `offset + len` fits the file, whose size is a `loff_t`.
        let pos = offset as bindings::loff_t;
        // SAFETY: `self.file` is a valid shmem file, the range lies within it, `memcg_ptr` is null
        // or a memcg that `self` holds a reference to for the duration of the call, and the copy
        // checks that `src` is a user address (it tolerates concurrent accesses to the pages).
        to_result(unsafe {
            rust_bus1_shmem_write_user(
                self.file.as_ptr(),
                pos,
                src.as_const_ptr(),
                len,
                self.memcg_ptr(),
            )
        })
    }

    /// Copies `data` to `offset`.
    ///
    /// Fails like [`Self::write_from_user`], except that it cannot fault.
    pub(crate) fn write(&self, offset: u64, data: &[u8]) -> Result {
        self.check_range(offset, data.len())?;
        for_each_chunk(offset, data.len(), |index, in_page, done, n| {
            let mut page = PoolPage::get(self, index)?;
            page.write(in_page, &data[done..done + n])
        })
    }

    /// Copies the bytes at `offset` into `buf`.
    ///
    /// Holes read as zeros and are left unallocated. Fails with `EINVAL` if the range does not fit
    /// in the file, and may fail with `ENOMEM` or `EIO` if a swapped-out page cannot be read back.
    pub(crate) fn read(&self, offset: u64, buf: &mut [u8]) -> Result {
        self.check_range(offset, buf.len())?;
        for_each_chunk(offset, buf.len(), |index, in_page, done, n| {
            let chunk = &mut buf[done..done + n];
            match PoolPage::find(self, index)? {
                Some(page) => page.read(in_page, chunk),
                None => {
                    chunk.fill(0);
                    Ok(())
                }
            }
        })
    }

    /// Returns the page at byte `offset` of the file, allocating a zeroed one for a hole,
    /// charged like a written page, and keeps it in memory until the returned object is dropped.
    ///
    /// For a range that is written again and again (a slab of small slices): writes through the
    /// [`PinnedPage`] need no page-cache lookup. Fails with `EINVAL` unless `offset` is a
    /// multiple of the page size within the file, and with `ENOMEM` if no page can be allocated.
    /// A discard of the page while it is pinned takes it out of the file as usual; the pinned
    /// page then lives on, out of the file, until it is dropped.
    pub(crate) fn pin_page(&self, offset: u64) -> Result<PinnedPage> {
        if offset % PAGE != 0 {
            return Err(EINVAL);
        }
        self.check_range(offset, PAGE_SIZE)?;
        let index = c_ulong::try_from(offset >> PAGE_SHIFT).map_err(|_| EINVAL)?;
        Ok(PinnedPage {
            page: PoolPage::get(self, index)?,
        })
    }

    /// Gives back the pages of `[offset, offset + len)`.
    ///
    /// Later reads of the range see zeros, and user mappings lose the pages (a user access faults
    /// in a fresh zero page). Both `offset` and `len` must be multiples of the page size and the
    /// range must fit in the file, `EINVAL` otherwise. Takes the inode lock, so it may sleep; a
    /// concurrent write into the range may or may not survive.
    pub(crate) fn discard(&self, offset: u64, len: u64) -> Result {
        if offset % PAGE != 0 || len % PAGE != 0 {
            return Err(EINVAL);
        }
        let end = offset.checked_add(len).ok_or(EINVAL)?;
        if end > self.size {
            return Err(EINVAL);
        }
        if len == 0 {
            // `fallocate` rejects empty ranges; there is nothing to give back.
            return Ok(());
        }
        // CAST: Both are at most `size`, which fits in an `loff_t` by the type invariants.
        let (offset, len) = (offset as bindings::loff_t, len as bindings::loff_t);
        // SAFETY: `file` is a valid shmem file open for writing, and the range is non-empty and
        // within it.
        to_result(unsafe { rust_bus1_shmem_punch_hole(self.file.as_ptr(), offset, len) })
    }

    /// Returns the number of pages of the file currently in memory.
    ///
    /// Pages that were swapped out are not counted. Meant for tests and `fdinfo`; the value may be
    /// stale by the time the caller looks at it.
    pub(crate) fn resident_pages(&self) -> u64 {
        // SAFETY: `file` is a valid file.
        let pages = unsafe { rust_bus1_shmem_resident_pages(self.file.as_ptr()) };
        // CAST: `c_ulong` is at most 64 bits wide.
        pages as u64
    }

    /// Turns `vma`, being set up by the `mmap` hook of another file, into a read-only mapping of
    /// this file.
    ///
    /// Fails with `EPERM` if the mapping is writable. Otherwise `VM_MAYWRITE` is cleared, so that
    /// `mprotect(PROT_WRITE)` fails later, and the VMA's file is replaced by this one and set up
    /// by shmem, so that shmem serves its faults and later kernel writes and discards show up in
    /// it. Both shared and private mappings work: a private one can never be written, so it never
    /// gets copy-on-write pages of its own. The offset and length of the mapping are up to the
    /// caller; accesses beyond the end of the file raise `SIGBUS`. A user access to a hole
    /// allocates a zero page, as for any shmem mapping.
    pub(crate) fn mmap(&self, vma: &VmaNew) -> Result {
        if vma.writable() {
            return Err(EPERM);
        }
        vma.try_clear_maywrite().map_err(|_| EPERM)?;
        // SAFETY: A `VmaNew` is a VMA in its initial setup inside an `mmap` hook, with the mmap
        // lock held for writing, which is what `vma_set_file()` and `vfs_mmap()` require; the
        // caller of the hook holds its own reference to the hooked file, so dropping the VMA's
        // reference to it does not free it under the hook. `file` is a valid shmem file.
        to_result(unsafe { rust_bus1_shmem_mmap(self.file.as_ptr(), vma.as_ptr()) })
    }

    /// Checks that `[offset, offset + len)` lies within the file.
    fn check_range(&self, offset: u64, len: usize) -> Result {
        let len = u64::try_from(len).map_err(|_| EINVAL)?;
        match offset.checked_add(len) {
            Some(end) if end <= self.size => Ok(()),
            _ => Err(EINVAL),
        }
    }

    /// Returns the memory cgroup to charge pages to, or null. Pages charged to it hold
    /// references of their own, so they may outlive the file's.
    fn memcg_ptr(&self) -> *mut bindings::mem_cgroup {
        self.memcg
            .as_ref()
            .map_or(core::ptr::null_mut(), |m| m.as_ptr())
    }
}

/// Splits `[offset, offset + len)` at page boundaries and calls
/// `f(page_index, offset_in_page, offset_in_range, chunk_len)` for each piece in order, stopping
/// at the first error.
fn for_each_chunk(
    offset: u64,
    len: usize,
    mut f: impl FnMut(c_ulong, usize, usize, usize) -> Result,
) -> Result {
    let mut done = 0;
    while done < len {
        // CAST: `done` is at most `len`, and the caller checked that `offset + len` fits.
        let pos = offset + done as u64;
        let index = c_ulong::try_from(pos >> PAGE_SHIFT).map_err(|_| EINVAL)?;
        // CAST: The remainder is less than `PAGE_SIZE`.
        let in_page = (pos % PAGE) as usize;
        let n = (PAGE_SIZE - in_page).min(len - done);
        f(index, in_page, done, n)?;
        done += n;
    }
    Ok(())
}

/// A page of a [`ShmemFile`], with a reference on its folio.
///
/// # Invariants
///
/// - `page` points to a page that is, or was until a concurrent discard, in the page cache of a
///   shmem file, and this object owns one reference to the page's folio, so the page stays
///   valid until drop.
/// - `dirty` is set once the page may have been written.
struct PoolPage {
    page: NonNull<bindings::page>,
    dirty: bool,
}

impl PoolPage {
    /// Returns the page at `index` of `file`, allocating a zeroed one for a hole.
    fn get(file: &ShmemFile, index: c_ulong) -> Result<Self> {
        // SAFETY: `file.file` is a valid shmem file, and `memcg_ptr` is null or a memcg that
        // `file` holds a reference to for the duration of the call.
        let raw = unsafe { rust_bus1_shmem_get_page(file.file.as_ptr(), index, file.memcg_ptr()) };
        let page = NonNull::new(from_err_ptr(raw)?).ok_or(ENOMEM)?;
        // INVARIANT: On success, the helper returns a page of the file with a folio reference.
        Ok(Self { page, dirty: false })
    }

    /// Returns the page at `index` of `file`, or `None` for a hole.
    fn find(file: &ShmemFile, index: c_ulong) -> Result<Option<Self>> {
        // SAFETY: `file.file` is a valid shmem file.
        let raw = unsafe { rust_bus1_shmem_find_page(file.file.as_ptr(), index) };
        // INVARIANT: A non-null, non-error result is a page of the file with a folio reference.
        Ok(NonNull::new(from_err_ptr(raw)?).map(|page| Self { page, dirty: false }))
    }

    /// Checks that `[offset, offset + len)` lies within one page.
    fn check(offset: usize, len: usize) -> Result {
        match offset.checked_add(len) {
            Some(end) if end <= PAGE_SIZE => Ok(()),
            _ => Err(EINVAL),
        }
    }

    /// Copies `data` to `offset` in the page.
    fn write(&mut self, offset: usize, data: &[u8]) -> Result {
        self.dirty = true;
        self.write_in(offset, data)
    }

    /// Copies `len` bytes from the user address `src` to `offset` in the page, without noting
    /// that the page was written.
    fn copy_in(&self, offset: usize, src: UserPtr, len: usize) -> Result {
        Self::check(offset, len)?;
        // SAFETY: The page is valid by the type invariants and the range lies within it. The
        // copy works on raw addresses and tolerates concurrent accesses, and `copy_from_user()`
        // checks that `src` is a user address.
        let left = unsafe {
            rust_bus1_page_copy_from_user(self.page.as_ptr(), offset, src.as_const_ptr(), len)
        };
        if left != 0 {
            return Err(EFAULT);
        }
        Ok(())
    }

    /// The copy of [`Self::write`], without noting that the page was written.
    fn write_in(&self, offset: usize, data: &[u8]) -> Result {
        Self::check(offset, data.len())?;
        // SAFETY: The page is valid by the type invariants and the range lies within it; `data`
        // is valid for reading `data.len()` bytes. The copy works on raw addresses and tolerates
        // concurrent accesses to the page.
        unsafe {
            rust_bus1_page_write(self.page.as_ptr(), offset, data.as_ptr().cast(), data.len())
        };
        Ok(())
    }

    /// Copies the bytes at `offset` in the page into `buf`.
    fn read(&self, offset: usize, buf: &mut [u8]) -> Result {
        Self::check(offset, buf.len())?;
        // SAFETY: The page is valid by the type invariants and the range lies within it; `buf` is
        // valid for writing `buf.len()` bytes and not aliased. The copy works on raw addresses and
        // tolerates concurrent accesses to the page.
        unsafe {
            rust_bus1_page_read(
                self.page.as_ptr(),
                offset,
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        Ok(())
    }
}

impl Drop for PoolPage {
    fn drop(&mut self) {
        // SAFETY: By the type invariants, we own a reference to the page's folio, given up here.
        unsafe { rust_bus1_shmem_put_page(self.page.as_ptr(), self.dirty) };
    }
}

/// A page of a [`ShmemFile`] kept in memory (see [`ShmemFile::pin_page`]): a [`PoolPage`] that
/// is shared and marks the page dirty after every write rather than when it is dropped.
pub(crate) struct PinnedPage {
    page: PoolPage,
}

// SAFETY: A folio reference may be held and dropped on any thread.
unsafe impl Send for PinnedPage {}
// SAFETY: Writes work on raw addresses through C copy routines and tolerate concurrent accesses
// (see the module documentation); marking the folio dirty is atomic.
unsafe impl Sync for PinnedPage {}

impl PinnedPage {
    /// Copies `len` bytes from the user address `src` (in the current task) to `offset` in the
    /// page. Fails with `EINVAL` if the range does not lie within the page and with `EFAULT` if
    /// the user memory cannot be read (the range may then be partially written). Never
    /// allocates.
    pub(crate) fn write_from_user(&self, offset: usize, src: UserPtr, len: usize) -> Result {
        let r = self.page.copy_in(offset, src, len);
        // Even a failed copy may have written part of the range.
        self.dirtied();
        r
    }

    /// Copies `data` to `offset` in the page; `EINVAL` if the range does not lie within it.
    pub(crate) fn write(&self, offset: usize, data: &[u8]) -> Result {
        self.page.write_in(offset, data)?;
        self.dirtied();
        Ok(())
    }

    /// Marks the page dirty after a write, so reclaim writes it back instead of dropping it.
    fn dirtied(&self) {
        // SAFETY: The page is valid by the type invariants of `PoolPage`.
        unsafe { rust_bus1_page_dirtied(self.page.page.as_ptr()) };
    }
}

#[kunit_tests(bus1_shmem)]
mod tests {
    use super::*;
    use crate::ext::uaccess_ext::test_support::vm_mmap;
    use core::marker::PhantomData;
    use kernel::{
        current,
        mm::virt::vm_flags_t,
        uaccess::UserSlice, //
    };

    #[allow(
        improper_ctypes,
        reason = "only pointers cross the boundary; the lint trips over zero-sized bindgen fields"
    )]
    extern "C" {
        fn rust_bus1_test_anon_file(
            fops: *const bindings::file_operations,
            private: *mut c_void,
        ) -> *mut bindings::file;
        fn rust_bus1_test_fput_sync(file: *mut bindings::file);
    }

    /// Pages in the files of most tests.
    const PAGES: u64 = 16;
    const SIZE: u64 = PAGES * PAGE;

    fn pool() -> Result<ShmemFile> {
        ShmemFile::new(c"bus1-test", SIZE, MemCgroup::current())
    }

    /// Returns `len` bytes of a pattern that differs between pages and from zero.
    fn pattern(len: usize, seed: u8) -> Result<KVec<u8>> {
        let mut v = KVec::with_capacity(len, GFP_KERNEL)?;
        for i in 0..len {
            // CAST: Truncation is intended.
            v.push(((i % 251) as u8 ^ seed) | 1, GFP_KERNEL)?;
        }
        Ok(v)
    }

    fn read_vec(f: &ShmemFile, offset: u64, len: usize) -> Result<KVec<u8>> {
        let mut v = KVec::from_elem(0xaau8, len, GFP_KERNEL)?;
        f.read(offset, &mut v)?;
        Ok(v)
    }

    fn is_zero(v: &[u8]) -> bool {
        v.iter().all(|&b| b == 0)
    }

    fn user_read(addr: usize, len: usize) -> Result<KVec<u8>> {
        let mut v = KVec::from_elem(0xaau8, len, GFP_KERNEL)?;
        UserSlice::new(UserPtr::from_addr(addr), len)
            .reader()
            .read_slice(&mut v)?;
        Ok(v)
    }

    /// A file whose `mmap` hook is [`ShmemFile::mmap`] of the pool it points to.
    ///
    /// # Invariants
    ///
    /// `file` is a file we hold a reference to, opened with [`TEST_FOPS`] and private data
    /// pointing at a `ShmemFile` that outlives this object.
    struct TestFile<'a> {
        file: NonNull<bindings::file>,
        _pool: PhantomData<&'a ShmemFile>,
    }

    impl<'a> TestFile<'a> {
        fn new(pool: &'a ShmemFile) -> Result<Self> {
            let private = core::ptr::from_ref(pool).cast_mut().cast();
            // SAFETY: `TEST_FOPS` is static, and the private data outlives the file: drop waits
            // for the last reference to go.
            let raw = unsafe { rust_bus1_test_anon_file(&TEST_FOPS.0, private) };
            let file = NonNull::new(from_err_ptr(raw)?).ok_or(ENOMEM)?;
            Ok(Self {
                file,
                _pool: PhantomData,
            })
        }
    }

    impl Drop for TestFile<'_> {
        fn drop(&mut self) {
            // SAFETY: We own a reference to the file; this drops it and waits until the
            // references VMAs dropped while the file was open are released as well.
            unsafe { rust_bus1_test_fput_sync(self.file.as_ptr()) };
        }
    }

    /// The `mmap` hook of a [`TestFile`].
    ///
    /// # Safety
    ///
    /// `file` must be a [`TestFile`] and `vma` a VMA in its initial setup.
    unsafe extern "C" fn test_mmap(
        file: *mut bindings::file,
        vma: *mut bindings::vm_area_struct,
    ) -> c_int {
        // SAFETY: The private data of a `TestFile` points at a live `ShmemFile`.
        let pool = unsafe { &*(*file).private_data.cast::<ShmemFile>() };
        // SAFETY: The caller passes a VMA in its initial setup.
        let vma = unsafe { VmaNew::from_raw(vma) };
        match pool.mmap(vma) {
            Ok(()) => 0,
            Err(e) => e.to_errno(),
        }
    }

    struct Fops(bindings::file_operations);
    // SAFETY: The operations are never modified; the VFS only reads them.
    unsafe impl Sync for Fops {}

    static TEST_FOPS: Fops = Fops(bindings::file_operations {
        mmap: Some(test_mmap),
        ..pin_init::zeroed()
    });

    /// Returns the flags of the VMA at `addr` in the test thread and whether it maps `pool`.
    fn vma_info(addr: usize, pool: &ShmemFile) -> Result<(vm_flags_t, bool)> {
        let task = current!();
        let mm = task.mm().ok_or(EINVAL)?;
        let guard = mm.mmap_read_lock();
        let vma = guard.vma_lookup(addr).ok_or(EINVAL)?;
        // SAFETY: The mmap read lock is held, so the VMA and its file pointer are stable.
        let vm_file = unsafe { (*vma.as_ptr()).vm_file };
        Ok((vma.flags(), vm_file == pool.file.as_ptr()))
    }

    #[test]
    fn new_checks_size() -> Result {
        assert_eq!(ShmemFile::new(c"bus1-test", 0, None).err(), Some(EINVAL));
        assert_eq!(
            ShmemFile::new(c"bus1-test", PAGE + 1, None).err(),
            Some(EINVAL)
        );
        assert_eq!(
            ShmemFile::new(c"bus1-test", !(PAGE - 1), None).err(),
            Some(EINVAL)
        );
        let f = pool()?;
        assert_eq!(f.size(), SIZE);
        assert_eq!(f.resident_pages(), 0);
        Ok(())
    }

    #[test]
    fn round_trip() -> Result {
        let f = pool()?;
        let a = pattern(100, 1)?;
        f.write(0, &a)?;
        assert!(read_vec(&f, 0, 100)?[..] == a[..]);
        assert_eq!(f.resident_pages(), 1);

        // Across a page boundary.
        let b = pattern(7, 2)?;
        f.write(PAGE - 3, &b)?;
        assert!(read_vec(&f, PAGE - 3, 7)?[..] == b[..]);
        assert_eq!(f.resident_pages(), 2);
        // The bytes between the two writes are still zero, the first write is intact.
        assert!(is_zero(&read_vec(&f, 100, (PAGE - 103) as usize)?));
        assert!(read_vec(&f, 0, 100)?[..] == a[..]);

        // Several whole pages, unaligned, in one call.
        let c = pattern(3 * PAGE_SIZE, 3)?;
        f.write(3 * PAGE + 17, &c)?;
        assert!(read_vec(&f, 3 * PAGE + 17, c.len())?[..] == c[..]);
        assert_eq!(f.resident_pages(), 6);

        // At the very end of the file.
        let d = pattern(5, 4)?;
        f.write(SIZE - 5, &d)?;
        assert!(read_vec(&f, SIZE - 5, 5)?[..] == d[..]);
        assert_eq!(f.resident_pages(), 7);

        // Zero-length accesses anywhere in range, including the end, are no-ops.
        f.write(SIZE, &[])?;
        f.read(SIZE, &mut [])?;
        assert_eq!(f.resident_pages(), 7);
        Ok(())
    }

    #[test]
    fn out_of_range() -> Result {
        let f = pool()?;
        let mut buf = [0u8; 2];
        assert_eq!(f.write(SIZE - 1, &[1, 2]), Err(EINVAL));
        assert_eq!(f.write(SIZE + 1, &[]), Err(EINVAL));
        assert_eq!(f.write(u64::MAX, &[1]), Err(EINVAL));
        assert_eq!(f.read(SIZE - 1, &mut buf), Err(EINVAL));
        assert_eq!(f.read(u64::MAX - 1, &mut buf), Err(EINVAL));
        let user = UserPtr::from_addr(0);
        assert_eq!(f.write_from_user(SIZE - 1, user, 2), Err(EINVAL));
        assert_eq!(f.write_from_user(1, user, usize::MAX), Err(EINVAL));
        assert_eq!(f.discard(1, PAGE), Err(EINVAL));
        assert_eq!(f.discard(0, PAGE - 1), Err(EINVAL));
        assert_eq!(f.discard(SIZE - PAGE, 2 * PAGE), Err(EINVAL));
        assert_eq!(f.discard(PAGE, !(PAGE - 1)), Err(EINVAL));
        // Nothing was allocated by the rejected calls.
        assert_eq!(f.resident_pages(), 0);
        // The last byte itself is writable.
        f.write(SIZE - 1, &[9])?;
        f.read(SIZE - 2, &mut buf)?;
        assert_eq!(buf, [0, 9]);
        Ok(())
    }

    #[test]
    fn hole_read_allocates_nothing() -> Result {
        let f = pool()?;
        assert!(is_zero(&read_vec(&f, 0, SIZE as usize)?));
        assert_eq!(f.resident_pages(), 0);
        f.write(2 * PAGE, &[7])?;
        assert_eq!(f.resident_pages(), 1);
        // A read spanning the written page and holes on both sides.
        let v = read_vec(&f, PAGE, 3 * PAGE_SIZE)?;
        assert_eq!(v[PAGE_SIZE], 7);
        assert_eq!(v.iter().filter(|&&b| b != 0).count(), 1);
        assert_eq!(f.resident_pages(), 1);
        Ok(())
    }

    #[test]
    fn discard_frees_pages() -> Result {
        let f = pool()?;
        let a = pattern(4 * PAGE_SIZE, 5)?;
        f.write(0, &a)?;
        assert_eq!(f.resident_pages(), 4);

        f.discard(PAGE, 2 * PAGE)?;
        assert_eq!(f.resident_pages(), 2);
        assert!(is_zero(&read_vec(&f, PAGE, 2 * PAGE_SIZE)?));
        assert_eq!(f.resident_pages(), 2);
        // The neighbours are untouched.
        assert!(read_vec(&f, 0, PAGE_SIZE)?[..] == a[..PAGE_SIZE]);
        assert!(read_vec(&f, 3 * PAGE, PAGE_SIZE)?[..] == a[3 * PAGE_SIZE..]);

        // Discarding holes and empty ranges is fine.
        f.discard(PAGE, 2 * PAGE)?;
        f.discard(SIZE, 0)?;
        assert_eq!(f.resident_pages(), 2);

        // Writing after a discard allocates again.
        let b = pattern(10, 6)?;
        f.write(PAGE + 5, &b)?;
        assert!(read_vec(&f, PAGE + 5, 10)?[..] == b[..]);
        assert!(is_zero(&read_vec(&f, PAGE, 5)?));
        assert_eq!(f.resident_pages(), 3);

        f.discard(0, SIZE)?;
        assert_eq!(f.resident_pages(), 0);
        assert!(is_zero(&read_vec(&f, 0, 4 * PAGE_SIZE)?));
        Ok(())
    }

    #[test]
    fn pinned_page_writes_without_lookup_and_survives_a_discard() -> Result {
        let f = pool()?;
        assert_eq!(f.pin_page(1).err(), Some(EINVAL));
        assert_eq!(f.pin_page(SIZE).err(), Some(EINVAL));

        // Pinning a hole allocates the page; writes through the pin are the file's bytes.
        let p = f.pin_page(2 * PAGE)?;
        assert_eq!(f.resident_pages(), 1);
        let a = pattern(100, 7)?;
        p.write(PAGE_SIZE - 100, &a)?;
        assert!(read_vec(&f, 3 * PAGE - 100, 100)?[..] == a[..]);
        assert_eq!(p.write(PAGE_SIZE - 99, &a).err(), Some(EINVAL));
        // A second pin of the same page is the same page.
        let q = f.pin_page(2 * PAGE)?;
        q.write(0, &[9])?;
        assert_eq!(read_vec(&f, 2 * PAGE, 1)?[0], 9);
        drop(q);

        // A discard takes the page out of the file while it is pinned: the file reads zeros,
        // and a write through the pin goes to the detached page, freed with the pin.
        f.discard(2 * PAGE, PAGE)?;
        assert_eq!(f.resident_pages(), 0);
        p.write(0, &a)?;
        assert!(is_zero(&read_vec(&f, 2 * PAGE, PAGE_SIZE)?));
        drop(p);
        assert_eq!(f.resident_pages(), 0);
        Ok(())
    }

    #[test]
    fn large_file_is_sparse() -> Result {
        // The size of a real pool: nothing is allocated up front, the last page is reachable.
        let size = 512 << 20;
        let f = ShmemFile::new(c"bus1-test", size, MemCgroup::current())?;
        assert_eq!(f.resident_pages(), 0);
        f.write(size - 3, &[1, 2, 3])?;
        assert_eq!(f.resident_pages(), 1);
        assert!(read_vec(&f, size - 3, 3)?[..] == [1, 2, 3]);
        f.discard(size - PAGE, PAGE)?;
        assert_eq!(f.resident_pages(), 0);
        Ok(())
    }

    /// Copies `data` into fresh anonymous user memory of the current task; returns its address.
    fn user_copy(data: &[u8]) -> Result<usize> {
        let addr = vm_mmap(core::ptr::null_mut(), data.len(), true, false)?;
        UserSlice::new(UserPtr::from_addr(addr), data.len())
            .writer()
            .write_slice(data)?;
        Ok(addr)
    }

    #[test]
    fn write_from_user_over_resident_pages_and_holes() -> Result {
        let f = ShmemFile::new(c"bus1-test", 64 * PAGE, MemCgroup::current())?;
        let len = 4 * PAGE_SIZE;
        let data = pattern(len, 3)?;
        let addr = user_copy(&data)?;
        // Pages 1 and 3 resident, 0, 2 and 4 holes: every other page is allocated on the way.
        f.write(PAGE + 5, &[1])?;
        f.write(3 * PAGE, &[1])?;
        assert_eq!(f.resident_pages(), 2);
        f.write_from_user(100, UserPtr::from_addr(addr), len)?;
        assert!(read_vec(&f, 100, len)?[..] == data[..]);
        assert_eq!(f.resident_pages(), 5);
        // Everything resident now, unaligned at both ends.
        f.write_from_user(PAGE + 7, UserPtr::from_addr(addr + 3), len - 200)?;
        assert!(read_vec(&f, PAGE + 7, len - 200)?[..] == data[3..len - 197]);
        assert!(read_vec(&f, 100, PAGE_SIZE - 93)?[..] == data[..PAGE_SIZE - 93]);
        assert_eq!(f.resident_pages(), 5);
        // A long run of pages, allocated by the first copy and overwritten by the second.
        let big = 40 * PAGE_SIZE;
        let (first, second) = (pattern(big, 9)?, pattern(big, 11)?);
        f.write_from_user(8 * PAGE, UserPtr::from_addr(user_copy(&first)?), big)?;
        f.write_from_user(
            8 * PAGE + 1,
            UserPtr::from_addr(user_copy(&second)?),
            big - 1,
        )?;
        assert!(read_vec(&f, 8 * PAGE + 1, big - 1)?[..] == second[..big - 1]);
        assert!(read_vec(&f, 8 * PAGE, 1)?[..] == first[..1]);
        Ok(())
    }

    #[test]
    fn write_from_user() -> Result {
        let f = pool()?;
        let len = 2 * PAGE_SIZE;
        let data = pattern(len, 7)?;
        let addr = user_copy(&data)?;

        // Unaligned on both sides, spanning three pool pages.
        f.write_from_user(PAGE + 9, UserPtr::from_addr(addr), len)?;
        assert!(read_vec(&f, PAGE + 9, len)?[..] == data[..]);
        assert_eq!(f.resident_pages(), 3);

        // A source that is not mapped at all.
        assert_eq!(f.write_from_user(0, UserPtr::from_addr(0), 8), Err(EFAULT));
        // A kernel address is not a user address.
        let kernel = UserPtr::from_ptr(data.as_ptr().cast_mut().cast());
        assert_eq!(f.write_from_user(0, kernel, 8), Err(EFAULT));

        // A source whose second half is unmapped: the first half lands, the call fails.
        // SAFETY: The range is part of the anonymous mapping made above, which only this test
        // uses.
        to_result(unsafe { bindings::vm_munmap(addr + PAGE_SIZE, PAGE_SIZE) })?;
        assert_eq!(
            f.write_from_user(8 * PAGE, UserPtr::from_addr(addr + PAGE_SIZE - 4), 8),
            Err(EFAULT)
        );
        assert!(read_vec(&f, 8 * PAGE, 4)?[..] == data[PAGE_SIZE - 4..PAGE_SIZE]);
        Ok(())
    }

    #[test]
    fn mmap_shared_read_only() -> Result {
        let f = pool()?;
        let early = pattern(100, 8)?;
        f.write(PAGE, &early)?;
        let file = TestFile::new(&f)?;

        let len = 4 * PAGE_SIZE;
        let addr = vm_mmap(file.file.as_ptr(), len, false, true)?;
        let (flags, maps_pool) = vma_info(addr, &f)?;
        assert!(maps_pool);
        assert_eq!(flags & bindings::VM_MAYWRITE, 0);
        assert_eq!(flags & bindings::VM_WRITE, 0);
        assert_ne!(flags & bindings::VM_SHARED, 0);

        // Data written before and after mapping is visible; holes read as zeros.
        assert!(user_read(addr + PAGE_SIZE, 100)?[..] == early[..]);
        let late = pattern(PAGE_SIZE, 9)?;
        f.write(2 * PAGE + 50, &late)?;
        assert!(user_read(addr + 2 * PAGE_SIZE + 50, PAGE_SIZE)?[..] == late[..]);
        assert!(is_zero(&user_read(addr, 50)?));

        // A discard zaps the mapped pages: the mapping reads zeros, not the old pages.
        f.discard(PAGE, 2 * PAGE)?;
        assert!(is_zero(&user_read(addr + PAGE_SIZE, 2 * PAGE_SIZE)?));
        // A write after that shows up in the same mapping again.
        f.write(2 * PAGE, &[42])?;
        assert_eq!(user_read(addr + 2 * PAGE_SIZE, 1)?[..], [42]);
        Ok(())
    }

    #[test]
    fn mmap_private_read_only() -> Result {
        let f = pool()?;
        let file = TestFile::new(&f)?;
        let addr = vm_mmap(file.file.as_ptr(), PAGE_SIZE, false, false)?;
        let (flags, maps_pool) = vma_info(addr, &f)?;
        assert!(maps_pool);
        assert_eq!(flags & bindings::VM_MAYWRITE, 0);
        assert_eq!(flags & bindings::VM_SHARED, 0);
        f.write(3, &[1, 2])?;
        assert_eq!(user_read(addr + 2, 3)?[..], [0, 1, 2]);
        Ok(())
    }

    #[test]
    fn mmap_rejects_write() -> Result {
        let f = pool()?;
        let file = TestFile::new(&f)?;
        assert_eq!(
            vm_mmap(file.file.as_ptr(), PAGE_SIZE, true, true).err(),
            Some(EPERM)
        );
        assert_eq!(
            vm_mmap(file.file.as_ptr(), PAGE_SIZE, true, false).err(),
            Some(EPERM)
        );
        Ok(())
    }
}
