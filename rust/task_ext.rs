// SPDX-License-Identifier: GPL-2.0

//! Sender identity: who sent a message, as seen by whoever receives it.
//!
//! A sender's ids are captured when it sends ([`SenderIds`]) and translated when the message is
//! received, into the namespaces of the receiving peer's opener ([`Viewer`]). This is the split
//! `SCM_CREDENTIALS` and `SO_PEERCRED` use as well: ids are global kernel values until the
//! moment they are shown to someone, and only the receiver knows which namespaces to show them
//! in.
//!
//! The sender's LSM security context ([`current_secctx`]) is the one exception: it is a string
//! the security module chose, the same in every namespace, and it is captured only when a
//! receiver asked for it.
//!
//! C headers: [`include/linux/cred.h`](srctree/include/linux/cred.h),
//! [`include/linux/uidgid.h`](srctree/include/linux/uidgid.h),
//! [`include/linux/pid.h`](srctree/include/linux/pid.h) and
//! [`include/linux/security.h`](srctree/include/linux/security.h).

// Without user namespaces, `from_kuid_munged()` and `from_kgid_munged()` are `static inline`
// and therefore missing from the bindings; the build would fail with an unresolved name. Say
// why instead.
#[cfg(not(CONFIG_USER_NS))]
compile_error!("bus1 needs CONFIG_USER_NS=y: from_k[ug]id_munged() are not exported without it");

use super::errno::EOPNOTSUPP;
use kernel::{
    bindings,
    cred::Credential,
    pid_namespace::PidNamespace,
    prelude::*,
    security::SecurityCtx,
    sync::aref::{
        ARef,
        AlwaysRefCounted, //
    },
    task::{
        Kuid,
        Task, //
    },
    types::Opaque, //
};

/// Wraps the kernel's `struct pid`: the identity of a task or thread group in every pid
/// namespace it is visible in.
///
/// A reference keeps the numbers readable after the task has exited and been reaped; by then
/// they may have been reused for a new task (which gets a new `struct pid`).
///
/// Not to be confused with [`kernel::task::Pid`], which is a plain number (`pid_t`).
///
/// # Invariants
///
/// Instances are always reference-counted: `get_pid()` (or `get_task_pid()`) keeps the
/// allocation valid until the matching `put_pid()`.
#[repr(transparent)]
struct Pid(Opaque<bindings::pid>);

// SAFETY: `put_pid()` may be called from any thread, so ownership of a reference may move
// between threads.
unsafe impl Send for Pid {}

// SAFETY: Through a shared reference only `level` and `numbers` are read, which never change
// after the `struct pid` is allocated, and the reference count is changed, which is atomic.
unsafe impl Sync for Pid {}

impl Pid {
    /// Returns the `struct pid` of `task` for `kind` (`PIDTYPE_PID` for the thread,
    /// `PIDTYPE_TGID` for its thread group), or `None` if the task has already been detached
    /// from it because it is exiting.
    fn of_task(task: &Task, kind: bindings::pid_type) -> Option<ARef<Self>> {
        // SAFETY: `task` is valid by the type invariants of `Task`; `get_task_pid()` reads the
        // pid under RCU and returns it with a new reference, or NULL.
        let pid = unsafe { bindings::get_task_pid(task.as_ptr(), kind) };
        // INVARIANT: `get_task_pid()` took the reference that the `ARef` now owns.
        // SAFETY: `pid` is non-null (checked by `NonNull::new`) and carries a reference we own;
        // `Pid` is a transparent wrapper of `struct pid`.
        core::ptr::NonNull::new(pid).map(|pid| unsafe { ARef::from_raw(pid.cast()) })
    }

    /// Returns the number of this pid in `ns`, or 0 if it is not visible there.
    fn nr_ns(&self, ns: &PidNamespace) -> u32 {
        // SAFETY: Both pointers are valid by the type invariants; `pid_nr_ns()` only reads
        // fields that never change and compares, without dereferencing, the namespace pointers
        // stored in the pid.
        let nr = unsafe { bindings::pid_nr_ns(self.0.get(), ns.as_ptr()) };
        // A pid number is never negative; 0 is already the "not visible" answer.
        u32::try_from(nr).unwrap_or(0)
    }
}

// SAFETY: The type invariants guarantee that `Pid` is always reference-counted.
unsafe impl AlwaysRefCounted for Pid {
    #[inline]
    fn inc_ref(&self) {
        // SAFETY: The existence of a shared reference means the count is non-zero; this is
        // `get_pid()`, which is `static inline` and thus not in the bindings.
        unsafe { bindings::refcount_inc(&raw mut (*self.0.get()).count) };
    }

    #[inline]
    unsafe fn dec_ref(obj: core::ptr::NonNull<Self>) {
        // SAFETY: The caller owns a reference; `Pid` is a transparent wrapper of `struct pid`.
        unsafe { bindings::put_pid(obj.cast().as_ptr()) };
    }
}

/// Returns the real UID and GID from the current task's subjective credentials (C
/// `current_uid()` and `current_gid()`).
fn current_real_ids() -> (Kuid, bindings::kgid_t) {
    // SAFETY: `current` is always a valid task. Only the current task replaces its own `cred`
    // pointer, so reading it here does not race, and the credentials stay valid until current
    // replaces them, which it cannot do during this block. Committed credentials never change.
    let (uid, gid) = unsafe {
        let cred = (*Task::current_raw()).cred;
        ((*cred).uid, (*cred).gid)
    };
    (Kuid::from_raw(uid), gid)
}

/// Returns the global UID value `kuid` as the current task sees it, in its user namespace, or
/// the overflow UID if it has no mapping there: for what bus1 shows the reader of a file such as
/// fdinfo or debugfs.
pub(crate) fn uid_for_current(kuid: u32) -> u32 {
    // SAFETY: As in `current_real_ids`, current's credentials stay valid during this block, and
    // they hold a reference to their user namespace; `from_kuid_munged()` only reads the
    // namespace's mapping.
    unsafe {
        let ns = (*(*Task::current_raw()).cred).user_ns;
        bindings::from_kuid_munged(ns, bindings::kuid_t { val: kuid })
    }
}

/// Returns a new reference to the current task's subjective credentials (C
/// `get_current_cred()`).
fn get_current_cred() -> ARef<Credential> {
    // SAFETY: As in `current_real_ids`, current's `cred` stays valid until current replaces it,
    // which cannot happen before `ARef::from` below has taken a reference of its own.
    let cred = unsafe { Credential::from_ptr((*Task::current_raw()).cred) };
    ARef::from(cred)
}

/// Returns the LSM security context of the current task's subjective credentials (C
/// `security_cred_getsecid(current_cred())` and `security_secid_to_secctx()`), as Rust Binder
/// captures the sender's context of a transaction.
///
/// The bytes are exactly what the security module returns: Smack gives the label without a
/// terminating NUL, SELinux includes one in the length. `Ok(None)` means that no active security
/// module provides contexts (`EOPNOTSUPP`, also what a kernel without `CONFIG_SECURITY`
/// answers); any other failure, such as `ENOMEM`, is returned.
///
/// The context is a snapshot: later credential changes of the task do not affect it.
pub(crate) fn current_secctx() -> Result<Option<SecurityCtx>> {
    let cred = get_current_cred();
    match SecurityCtx::from_secid(cred.get_secid()) {
        Ok(ctx) => Ok(Some(ctx)),
        Err(e) if e == EOPNOTSUPP() => Ok(None),
        Err(e) => Err(e),
    }
}

/// What a receiver needs to describe the sender of a message: its real UID and GID, and its
/// thread group and thread.
///
/// Captured on every SEND, so it is cheap: two ids copied and two references taken, no
/// allocation. Cloning (one copy per destination of a multicast) takes two more references.
///
/// The ids are those the sending task had at the time of capture; later credential changes of
/// the sender do not affect them. The pids stay readable after the sender has exited, as with
/// `SO_PEERCRED`.
///
/// # Invariants
///
/// `uid` and `gid` are global (init user namespace) values; `tgid` is the thread group of the
/// task that had them, `None` only if that task was already exiting; `tid` is its thread, or
/// `None` if the task led its thread group (its thread is `tgid`, and most senders are
/// single-threaded, so one reference is taken and dropped per message instead of two) or was
/// already exiting.
#[derive(Clone)]
pub(crate) struct SenderIds {
    uid: Kuid,
    gid: bindings::kgid_t,
    tgid: Option<ARef<Pid>>,
    tid: Option<ARef<Pid>>,
}

impl SenderIds {
    /// Captures the identity of the current task.
    ///
    /// The real UID and GID come from the subjective credentials (`current_cred()`), as for
    /// `SCM_CREDENTIALS`; they differ from the objective ones only while the kernel acts on a
    /// task's behalf with overridden credentials, which an ioctl from user space never does.
    pub(crate) fn current() -> Self {
        let (uid, gid) = current_real_ids();
        let task = kernel::current!();
        let leader = task.pid() == task.group_leader().pid();
        Self {
            uid,
            gid,
            tgid: Pid::of_task(task, bindings::pid_type_PIDTYPE_TGID),
            tid: if leader {
                None
            } else {
                Pid::of_task(task, bindings::pid_type_PIDTYPE_PID)
            },
        }
    }
}

/// The receiving peer's view of senders: the user namespace and pid namespace of whoever opened
/// it.
///
/// Created at open time by the opener, so that what a peer reports does not depend on which task
/// happens to call RECV, and that passing the peer's fd to another namespace does not reveal
/// more than its opener could see.
///
/// # Invariants
///
/// `cred` and `pid_ns` are the subjective credentials and the active pid namespace of the same
/// task at the same time.
pub(crate) struct Viewer {
    cred: ARef<Credential>,
    pid_ns: ARef<PidNamespace>,
}

impl Viewer {
    /// Captures the current task's view: its credentials and its active pid namespace.
    ///
    /// This reads the current task rather than taking the peer's `File`: the active pid
    /// namespace only exists for the current task anyway, and the credentials are the ones
    /// `open(2)` stores in the file's `f_cred`.
    ///
    /// Fails with `ESRCH` only if the current task has no pid namespace any more, which happens
    /// during its final exit, never in a system call.
    pub(crate) fn current() -> Result<Self> {
        let task = kernel::current!();
        let pid_ns = ARef::from(task.active_pid_ns().ok_or(ESRCH)?);
        Ok(Self {
            cred: get_current_cred(),
            pid_ns,
        })
    }

    /// Returns the user namespace of the pinned credentials.
    fn user_ns(&self) -> *mut bindings::user_namespace {
        // SAFETY: `cred` is valid by its type invariants, and committed credentials never
        // change.
        unsafe { (*self.cred.as_ptr()).user_ns }
    }

    /// Whether the view is the initial user namespace's, whose mapping of kernel IDs is the
    /// identity for every valid ID.
    fn in_init_user_ns(&self) -> bool {
        core::ptr::eq(self.user_ns(), &raw const bindings::init_user_ns)
    }

    /// Returns the sender's real UID in this view, or the overflow UID if it has no mapping
    /// there.
    pub(crate) fn uid(&self, sender: &SenderIds) -> u32 {
        let kuid = sender.uid.into_raw();
        // The initial namespace maps every valid ID to itself (`from_kuid()` walking its one
        // extent), and `(uid_t)-1` is no valid ID: spared per message, the common case.
        if self.in_init_user_ns() && kuid.val != u32::MAX {
            return kuid.val;
        }
        // SAFETY: The credentials hold a reference to their user namespace, so the pointer is
        // valid for as long as `self`.
        unsafe { bindings::from_kuid_munged(self.user_ns(), kuid) }
    }

    /// Returns the sender's real GID in this view, or the overflow GID if it has no mapping
    /// there.
    pub(crate) fn gid(&self, sender: &SenderIds) -> u32 {
        // As in `uid`.
        if self.in_init_user_ns() && sender.gid.val != u32::MAX {
            return sender.gid.val;
        }
        // SAFETY: As in `uid`.
        unsafe { bindings::from_kgid_munged(self.user_ns(), sender.gid) }
    }

    /// Returns the sender's thread-group id (process id) in this view, or 0 if it is not
    /// visible there.
    pub(crate) fn pid(&self, sender: &SenderIds) -> u32 {
        sender.tgid.as_ref().map_or(0, |p| p.nr_ns(&self.pid_ns))
    }

    /// Returns the sender's thread id in this view, or 0 if it is not visible there.
    pub(crate) fn tid(&self, sender: &SenderIds) -> u32 {
        self.pid_tid(sender).1
    }

    /// Returns [`Self::pid`] and [`Self::tid`] together: for a sender that leads its thread
    /// group (no thread pid of its own) the number is looked up once.
    pub(crate) fn pid_tid(&self, sender: &SenderIds) -> (u32, u32) {
        let pid = self.pid(sender);
        match &sender.tid {
            Some(p) => (pid, p.nr_ns(&self.pid_ns)),
            None => (pid, pid),
        }
    }

    /// Returns the opener's accounting principal, a global (init user namespace) UID value.
    ///
    /// That is its real UID if its credentials belong to the initial user namespace. Otherwise
    /// it is the owner of the outermost user namespace below the initial one that the
    /// credentials belong to (directly or through nested namespaces): every UID mapped in a
    /// user namespace counts as the account that created it, as the kernel's own per-user
    /// limits (`RLIMIT_NPROC`, `RLIMIT_MSGQUEUE`, ...) count it in the initial namespace
    /// through `ucounts`. One account with a range of subordinate UIDs is one principal.
    pub(crate) fn principal(&self) -> u32 {
        // SAFETY: `cred` is valid by its type invariants and holds a reference to its user
        // namespace, which holds one to its parent, and so on up to `init_user_ns`, which is
        // static; `parent` and `owner` never change after a namespace is created.
        unsafe {
            let init = &raw const bindings::init_user_ns;
            let mut ns = (*self.cred.as_ptr()).user_ns;
            if ns.is_null() || core::ptr::eq(ns.cast_const(), init) {
                return (*self.cred.as_ptr()).uid.val;
            }
            loop {
                let parent = (*ns).parent;
                if parent.is_null() || core::ptr::eq(parent.cast_const(), init) {
                    return (*ns).owner.val;
                }
                ns = parent;
            }
        }
    }
}

#[kunit_tests(bus1_task_ext)]
mod tests {
    use super::*;

    /// Replaces the real UID and GID of the current task, keeping everything else (notably the
    /// effective ids).
    ///
    /// Each KUnit case runs in a kthread of its own that exits after the case, so the change
    /// cannot leak into other tests or tasks.
    fn set_real_ids(uid: u32, gid: u32) -> Result {
        // SAFETY: `prepare_creds()` has no preconditions; it returns a private copy of the
        // current credentials with one reference, or NULL.
        let new = unsafe { bindings::prepare_creds() };
        if new.is_null() {
            return Err(ENOMEM);
        }
        // SAFETY: `new` is not yet committed, so nobody else can see it and it may be written.
        unsafe {
            (*new).uid = bindings::kuid_t { val: uid };
            (*new).gid = bindings::kgid_t { val: gid };
        }
        // SAFETY: `new` came from `prepare_creds()` and its reference is handed over. Nothing in
        // this kthread overrides its credentials, so `cred == real_cred` as required.
        unsafe { bindings::commit_creds(new) };
        Ok(())
    }

    #[test]
    fn real_ids_captured_at_send() -> Result {
        set_real_ids(1234, 5678)?;
        // The case runs as root; the effective UID must stay different from the real one so
        // that picking the wrong one fails.
        assert_eq!(current!().uid().into_raw().val, 1234);
        assert!(Kuid::current_euid() != current!().uid());

        let viewer = Viewer::current()?;
        let first = SenderIds::current();
        assert_eq!(viewer.uid(&first), 1234);
        assert_eq!(viewer.gid(&first), 5678);
        // In the initial user namespace, the principal is the real UID.
        assert_eq!(viewer.principal(), 1234);

        // Later credential changes affect neither the captured sender nor the pinned viewer.
        set_real_ids(4321, 8765)?;
        let second = SenderIds::current();
        assert_eq!(viewer.uid(&first), 1234);
        assert_eq!(viewer.gid(&first), 5678);
        assert_eq!(viewer.uid(&second), 4321);
        assert_eq!(viewer.gid(&second), 8765);
        assert_eq!(viewer.principal(), 1234);
        assert_eq!(Viewer::current()?.principal(), 4321);

        set_real_ids(0, 0)
    }

    #[test]
    fn pids_match_the_task() -> Result {
        let viewer = Viewer::current()?;
        let sender = SenderIds::current();
        let task = current!();
        // A KUnit case runs in a kthread, which leads its own thread group, so tid and tgid are
        // equal here; only a multi-threaded sender (a selftest) tells them apart.
        // CAST: Pid numbers are positive.
        let tid = task.pid() as u32;
        let tgid = task.group_leader().pid() as u32;
        assert_ne!(tid, 0);
        assert_eq!(viewer.tid(&sender), tid);
        assert_eq!(viewer.pid(&sender), tgid);
        assert_eq!(
            Ok(viewer.pid(&sender)),
            u32::try_from(task.tgid_nr_ns(None))
        );

        // A clone holds references of its own.
        let clone = sender.clone();
        drop(sender);
        assert_eq!(viewer.tid(&clone), tid);
        assert_eq!(viewer.pid(&clone), tgid);
        Ok(())
    }

    #[test]
    fn unmapped_ids_are_munged() -> Result {
        // `INVALID_UID`/`INVALID_GID` are the only ids without a mapping in the initial user
        // namespace, the only one a KUnit case can reach; a sender whose thread had already
        // exited has no pids.
        let sender = SenderIds {
            uid: Kuid::from_raw(bindings::kuid_t { val: u32::MAX }),
            gid: bindings::kgid_t { val: u32::MAX },
            tgid: None,
            tid: None,
        };
        let viewer = Viewer::current()?;
        // SAFETY: The overflow ids are statics that live forever; sysctl may write them
        // concurrently, hence volatile reads (C `READ_ONCE()`).
        let (overflowuid, overflowgid) = unsafe {
            (
                core::ptr::read_volatile(&raw const bindings::overflowuid),
                core::ptr::read_volatile(&raw const bindings::overflowgid),
            )
        };
        // CAST: The overflow ids are limited to 0..=65534 by their sysctl.
        assert_eq!(viewer.uid(&sender), overflowuid as u32);
        assert_eq!(viewer.gid(&sender), overflowgid as u32);
        assert_ne!(viewer.uid(&sender), u32::MAX);
        assert_eq!(viewer.pid(&sender), 0);
        assert_eq!(viewer.tid(&sender), 0);
        Ok(())
    }
}
