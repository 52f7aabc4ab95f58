// SPDX-License-Identifier: GPL-2.0

//! Memory cgroups: holding a reference to one, and charging allocations to it.
//!
//! Accounted allocations (`__GFP_ACCOUNT`, as in `GFP_KERNEL_ACCOUNT`) are charged to the
//! memory cgroup of the allocating task, unless the task made another one *active*
//! (`set_active_memcg()`): then they are charged to that one. A subsystem that allocates on
//! behalf of someone else (a pipe writer filling a reader's buffer, a sender queueing a message
//! for a receiver) can so charge the memory to the one who keeps it, whose cgroup then bounds
//! it. [`MemCgroup::charge_to`] does that for the duration of a closure.
//!
//! An accounted allocation that finds its cgroup at its limit reclaims there and, failing that,
//! runs the OOM killer in that cgroup. On behalf of someone else, pass
//! [`__GFP_NORETRY`](super::gfp::__GFP_NORETRY) too, so that the allocation fails instead, and
//! use [`MemCgroup::is_full`] to tell a full cgroup from memory being short.
//!
//! C headers: [`include/linux/memcontrol.h`](srctree/include/linux/memcontrol.h),
//! [`include/linux/sched/mm.h`](srctree/include/linux/sched/mm.h); glue in `rust/helpers.c`.

use core::ptr::NonNull;
use kernel::{
    bindings,
    sync::aref::{
        ARef,
        AlwaysRefCounted, //
    },
    types::Opaque,
};

#[allow(
    improper_ctypes,
    reason = "only pointers cross the boundary; the lint trips over zero-sized bindgen fields"
)]
extern "C" {
    fn rust_bus1_memcg_get_current() -> *mut bindings::mem_cgroup;
    fn rust_bus1_memcg_get(memcg: *mut bindings::mem_cgroup);
    fn rust_bus1_memcg_put(memcg: *mut bindings::mem_cgroup);
    fn rust_bus1_memcg_full(memcg: *mut bindings::mem_cgroup) -> bool;
    fn rust_bus1_set_active_memcg(memcg: *mut bindings::mem_cgroup) -> *mut bindings::mem_cgroup;
}

/// Wraps the kernel's `struct mem_cgroup`.
///
/// # Invariants
///
/// Instances are always reference-counted: a reference (`css_get()` or one of the functions
/// returning a new reference, such as `get_mem_cgroup_from_mm()`) keeps the memory cgroup valid
/// until the matching `mem_cgroup_put()`. The cgroup may be removed meanwhile; charging it still
/// works then (charges go to the nearest ancestor still online).
#[repr(transparent)]
pub(crate) struct MemCgroup(Opaque<bindings::mem_cgroup>);

// SAFETY: References to a memory cgroup may be taken and put from any thread.
unsafe impl Send for MemCgroup {}

// SAFETY: Through a shared reference a memory cgroup is only charged, its page counters read and
// its reference count changed, all of which is synchronised internally.
unsafe impl Sync for MemCgroup {}

// SAFETY: The type invariants guarantee that `MemCgroup` is always reference-counted.
unsafe impl AlwaysRefCounted for MemCgroup {
    fn inc_ref(&self) {
        // SAFETY: The existence of a shared reference means that the refcount is non-zero.
        unsafe { rust_bus1_memcg_get(self.as_ptr()) };
    }

    unsafe fn dec_ref(obj: NonNull<Self>) {
        // SAFETY: The caller guarantees that it owns a reference, which is given up here.
        // `MemCgroup` is a transparent wrapper of `struct mem_cgroup`.
        unsafe { rust_bus1_memcg_put(obj.cast().as_ptr()) };
    }
}

impl MemCgroup {
    /// Returns the memory cgroup the current task's memory is charged to, or `None` if memory
    /// cgroups are disabled (at build time or with `cgroup_disable=memory`).
    ///
    /// A kernel thread gets the memory cgroup made active for it, or the root cgroup.
    pub(crate) fn current() -> Option<ARef<Self>> {
        // SAFETY: No preconditions; the result is NULL or a new reference.
        let ptr = NonNull::new(unsafe { rust_bus1_memcg_get_current() })?;
        // SAFETY: `ptr` carries a reference we own, handed over to the `ARef`. `MemCgroup` is a
        // transparent wrapper of `struct mem_cgroup`.
        Some(unsafe { ARef::from_raw(ptr.cast()) })
    }

    /// Returns a raw pointer to the `struct mem_cgroup`, valid while `self` is.
    pub(crate) fn as_ptr(&self) -> *mut bindings::mem_cgroup {
        self.0.get()
    }

    /// Whether this memory cgroup or one of its ancestors is within a charge batch of its
    /// memory limit: after an accounted allocation for it failed, whether the cgroup was full
    /// rather than memory short.
    pub(crate) fn is_full(&self) -> bool {
        // SAFETY: `self` is valid by the type invariants; the helper only reads its page counters
        // and those of its ancestors, which it pins.
        unsafe { rust_bus1_memcg_full(self.as_ptr()) }
    }

    /// Runs `f` with this memory cgroup active for the current task: the accounted allocations
    /// `f` makes are charged to this cgroup instead of the task's own. The previously active
    /// memory cgroup (if any) is active again when `f` returns.
    ///
    /// Nested calls charge to the innermost cgroup. Switching costs two stores to the task
    /// structure.
    pub(crate) fn charge_to<R>(&self, f: impl FnOnce() -> R) -> R {
        // SAFETY: `self` is valid by the type invariants and stays so until this function
        // returns, which is when it stops being active: the old value is restored below.
        let old = unsafe { rust_bus1_set_active_memcg(self.as_ptr()) };
        let r = f();
        // SAFETY: `old` was active when this function was called, so whoever made it active
        // keeps it valid until after we return; nested calls in `f` have restored `self` before
        // returning. Kernel code does not unwind, so this line is always reached.
        unsafe { rust_bus1_set_active_memcg(old) };
        r
    }
}

/// Runs `f` with `memcg` active as with [`MemCgroup::charge_to`], or simply runs it if there is
/// none.
pub(crate) fn charge_to<R>(memcg: Option<&MemCgroup>, f: impl FnOnce() -> R) -> R {
    match memcg {
        Some(m) => m.charge_to(f),
        None => f(),
    }
}
