// SPDX-License-Identifier: GPL-2.0

//! `poll(2)`: the event bits a `poll` file operation returns, its `poll_table`, and a wait queue
//! to register on it.
//!
//! C header: [`include/uapi/asm-generic/poll.h`](srctree/include/uapi/asm-generic/poll.h).

use core::{
    ffi::c_void,
    marker::PhantomData,
    pin::Pin,
    ptr::NonNull, //
};
use kernel::{
    bindings,
    fs::File,
    prelude::*,
    sync::LockClassKey, //
};

/// There is data to read.
pub(crate) const POLLIN: u32 = bindings::POLLIN;
/// Normal data may be read.
pub(crate) const POLLRDNORM: u32 = bindings::POLLRDNORM;
/// Writing is possible.
pub(crate) const POLLOUT: u32 = bindings::POLLOUT;
/// Normal data may be written.
pub(crate) const POLLWRNORM: u32 = bindings::POLLWRNORM;
/// The other end hung up; no further operations are possible.
pub(crate) const POLLHUP: u32 = bindings::POLLHUP;

/// The `poll_table` of one `poll` file operation call.
///
/// Like [`kernel::sync::poll::PollTable`], but it registers [`PollQueue`]s.
///
/// # Invariants
///
/// `table` is null or points to a `poll_table` that is valid for `'a`.
pub(crate) struct PollTable<'a> {
    table: *mut bindings::poll_table,
    _lifetime: PhantomData<&'a bindings::poll_table>,
}

impl<'a> PollTable<'a> {
    /// Wraps the `poll_table` passed to a `poll` file operation.
    ///
    /// # Safety
    ///
    /// `table` must be null or point to a `poll_table` that is valid for `'a`.
    pub(crate) unsafe fn from_raw(table: *mut bindings::poll_table) -> Self {
        // INVARIANTS: The caller guarantees it.
        PollTable {
            table,
            _lifetime: PhantomData,
        }
    }

    /// Registers the caller of `poll` on `queue`, through `file`, so that
    /// [`PollQueue::wake_sync`] wakes it.
    ///
    /// Ends with a full memory barrier, as `sock_poll_wait()` does: the caller checks its
    /// conditions after this returns, and the barrier orders the queue insertion before those
    /// reads. It pairs with the one in [`PollQueue::has_sleeper`], so a waker that skips the
    /// wake-up because it saw no waiter made its condition visible to this poll.
    ///
    /// As with [`kernel::sync::poll::PollCondVar`], `queue` must be one that `file` keeps alive:
    /// `select` and `poll` remove their entries before they return, while they hold `file`;
    /// epoll, aio and io_uring rely on the `POLLFREE` contract that [`PollQueue`] keeps.
    pub(crate) fn register(&self, file: &File, queue: &PollQueue) {
        // SAFETY: `file` is valid for this call and `self.table` is null or valid (invariants);
        // the wait queue outlives its waiters as explained above and in `PollQueue`.
        unsafe { bindings::poll_wait(file.as_ptr(), queue.wq.as_ptr(), self.table) };
        kernel::sync::barrier::smp_mb();
    }
}

#[allow(
    improper_ctypes,
    reason = "only pointers cross the boundary; the lint trips over zero-sized bindgen fields"
)]
extern "C" {
    fn rust_bus1_waitq_new(
        name: *const kernel::ffi::c_char,
        key: *mut bindings::lock_class_key,
    ) -> *mut bindings::wait_queue_head;
    fn rust_bus1_waitq_free(wq: *mut bindings::wait_queue_head);
    fn rust_bus1_waitq_has_sleeper(wq: *mut bindings::wait_queue_head) -> bool;
    fn rust_bus1_waitq_wait(
        wq: *mut bindings::wait_queue_head,
        cond: unsafe extern "C" fn(data: *mut c_void) -> bool,
        data: *mut c_void,
        timeout: *mut kernel::ffi::c_long,
    ) -> kernel::ffi::c_int;
    fn rust_bus1_timeout_jiffies(ns: u64) -> kernel::ffi::c_long;
}

/// What is left of a relative timeout of a [`PollQueue::wait_until`], counted down across
/// several waits.
pub(crate) struct WaitTimeout {
    /// Jiffies left; `MAX_SCHEDULE_TIMEOUT` for none.
    jiffies: kernel::ffi::c_long,
}

impl WaitTimeout {
    /// A timeout of `ns` nanoseconds from now, rounded up to whole scheduler ticks, plus the tick
    /// under way, so that a wait never ends before `ns` passed; `0` is none.
    pub(crate) fn from_ns(ns: u64) -> Self {
        // No timeout, the common case: answered here rather than in a call (the helper converts
        // only a timeout there is).
        if ns == 0 {
            return WaitTimeout {
                jiffies: kernel::task::MAX_SCHEDULE_TIMEOUT,
            };
        }
        // SAFETY: A pure conversion without preconditions.
        let jiffies = unsafe { rust_bus1_timeout_jiffies(ns) };
        WaitTimeout { jiffies }
    }
}

/// Calls the condition closure of [`PollQueue::wait_until`].
///
/// # Safety
///
/// `data` must point to a live `F` that nothing else accesses during the call.
unsafe extern "C" fn wait_cond<F: FnMut() -> bool>(data: *mut c_void) -> bool {
    // SAFETY: The caller guarantees that `data` is an exclusively borrowed, live `F`.
    let f = unsafe { &mut *data.cast::<F>() };
    f()
}

/// A wait queue that `poll` can register on, and that is cheap to drop.
///
/// [`kernel::sync::poll::PollCondVar`] waits for an RCU grace period in its destructor
/// (`synchronize_rcu()`), because epoll may still look at a wait queue that announced `POLLFREE`
/// until one has passed. That costs milliseconds per object, which adds up for objects that
/// come and go with files (closing 10,000 peers took over two minutes). This queue lives in an
/// allocation of its own instead, which the destructor hands to `kfree_rcu()` after
/// `wake_up_pollfree()`: the same guarantee for epoll, without the wait.
///
/// # Invariants
///
/// `wq` points to an initialised `wait_queue_head` allocated by `rust_bus1_waitq_new()`, owned
/// by this object, and freed by `rust_bus1_waitq_free()` no earlier than an RCU grace period
/// after the destructor ran.
pub(crate) struct PollQueue {
    wq: NonNull<bindings::wait_queue_head>,
}

// SAFETY: A `wait_queue_head` may be used from any thread; it has its own lock.
unsafe impl Send for PollQueue {}
// SAFETY: As above: every operation on it is safe to run concurrently.
unsafe impl Sync for PollQueue {}

impl PollQueue {
    /// Allocates a wait queue named `name`, with the lock class `key` for its lock.
    pub(crate) fn new(name: &'static CStr, key: Pin<&'static LockClassKey>) -> Result<Self> {
        // SAFETY: `name` and `key` are static, as `__init_waitqueue_head()` needs.
        let wq = unsafe { rust_bus1_waitq_new(name.as_char_ptr(), key.as_ptr()) };
        // INVARIANTS: A non-null result is an initialised wait queue, now owned here.
        Ok(PollQueue {
            wq: NonNull::new(wq).ok_or(ENOMEM)?,
        })
    }

    /// Whether anyone waits on the queue: a poller registered on it or a task in
    /// [`Self::wait_until`].
    ///
    /// A waker calls this after it made a condition true, and calls [`Self::wake_sync`] only if
    /// it returns true, so a wake-up that nobody waits for does not take the wait queue lock.
    /// This is `wq_has_sleeper()`: a full memory barrier orders the caller's earlier stores (the
    /// condition) before the read of the queue, and pairs with the barrier every waiter issues
    /// between adding itself to the queue and checking its condition ([`PollTable::register`]
    /// and [`Self::wait_until`]). Either the waker sees the waiter and wakes it, or the waiter
    /// sees the condition and does not sleep.
    pub(crate) fn has_sleeper(&self) -> bool {
        // SAFETY: `wq` is a valid, initialised wait queue by the invariants.
        unsafe { rust_bus1_waitq_has_sleeper(self.wq.as_ptr()) }
    }

    /// Wakes every waiter, with the sync hint: the caller usually goes on to wait itself, so the
    /// woken task may run on this CPU.
    pub(crate) fn wake_sync(&self) {
        // SAFETY: `wq` is a valid, initialised wait queue by the invariants.
        unsafe { bindings::__wake_up_sync(self.wq.as_ptr(), bindings::TASK_NORMAL) };
    }
}

impl PollQueue {
    /// Sleeps interruptibly until `cond` returns true or `timeout` runs out, whichever is first.
    ///
    /// `cond` runs in process context with no lock held and may sleep (take mutexes): it is
    /// checked before every sleep, and a [`Self::wake_sync`] between a check and the sleep
    /// is not lost, also for a waker that checks [`Self::has_sleeper`] first. Fails with
    /// `EINTR` when a signal is pending (the caller does not restart, like `epoll_wait()`) and
    /// with `ETIMEDOUT` when the timeout ran out; `timeout` keeps what is left for a following
    /// wait.
    pub(crate) fn wait_until<F: FnMut() -> bool>(
        &self,
        mut cond: F,
        timeout: &mut WaitTimeout,
    ) -> Result {
        let data = core::ptr::from_mut(&mut cond).cast::<c_void>();
        // SAFETY: `wq` is a valid, initialised wait queue by the invariants. `data` points to
        // `cond`, which is live and borrowed by nothing else for the whole call, and
        // `wait_cond::<F>` is the matching trampoline; `timeout.jiffies` is a valid `long`.
        let r = unsafe {
            rust_bus1_waitq_wait(self.wq.as_ptr(), wait_cond::<F>, data, &mut timeout.jiffies)
        };
        // The condition came true, the common answer: no call into the errno mapping.
        if r == 0 {
            return Ok(());
        }
        kernel::error::to_result(r)
    }
}

impl Drop for PollQueue {
    fn drop(&mut self) {
        // SAFETY: `wq` came from `rust_bus1_waitq_new()` and is freed only here, once.
        unsafe { rust_bus1_waitq_free(self.wq.as_ptr()) };
    }
}

#[kunit_tests(bus1_poll)]
mod tests {
    use super::*;
    use kernel::time::{
        msecs_to_jiffies,
        NSEC_PER_SEC, //
    };

    #[test]
    fn a_timeout_outlasts_the_tick_under_way() {
        // Ticks per second.
        // CAST: `HZ`, a small positive number.
        let hz = msecs_to_jiffies(1000) as u64;
        // CAST: A positive constant.
        let sec = NSEC_PER_SEC as u64;
        let tick = sec / hz;
        for ns in [1, tick - 1, tick, tick + 1, 50_000_000, 3 * tick, sec] {
            let t = WaitTimeout::from_ns(ns);
            // CAST: A timeout in jiffies is positive.
            let j = t.jiffies as u64;
            // A wait of `j` jiffies ends at the `j`-th tick from the one under way, which may be
            // about to end: only `j - 1` whole ticks are certain, and they must cover `ns`.
            assert!(j >= 1 && (j - 1) * sec >= ns * hz);
            // And no tick more than that takes.
            assert!(j < 2 || (j - 2) * sec < ns * hz);
        }
        // No timeout is none.
        assert_eq!(
            WaitTimeout::from_ns(0).jiffies,
            kernel::task::MAX_SCHEDULE_TIMEOUT
        );
    }
}
