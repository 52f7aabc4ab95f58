// SPDX-License-Identifier: GPL-2.0

//! Sender identity: who sent a message, as seen by whoever receives it.
//!
//! A sender's ids are what the sending task has when it sends, shown in the namespaces of the
//! receiving peer's opener ([`Viewer`], fixed when the peer was opened): the sender translates
//! them, per receiver, as it sends ([`Viewer::current_sender`]), and the message keeps the
//! numbers ([`SenderIds`]). As the view cannot change and a `struct pid` keeps its numbers for
//! its whole life, that is the answer translating at `RECV` would give (the split
//! `SCM_CREDENTIALS` and `SO_PEERCRED` use), without a reference to the sender's `struct pid`
//! in every queued message.
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
    sync::aref::ARef,
    task::{
        Kuid,
        Task, //
    }, //
};

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

/// The sender of a message as its receiver is shown it: the real UID and GID the sending task
/// had when it sent, its thread group (process) ID and its thread ID, in the namespaces of the
/// receiving peer's opener ([`Viewer::current_sender`]).
///
/// Plain numbers: later credential changes of the sender do not affect them, and they stay
/// readable after the sender has exited, as with `SO_PEERCRED`. An ID the view has no mapping
/// for is the overflow UID or GID, a pid it cannot see is 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SenderIds {
    /// Real UID.
    pub(crate) uid: u32,
    /// Real GID.
    pub(crate) gid: u32,
    /// Thread group (process) ID.
    pub(crate) pid: u32,
    /// Thread ID.
    pub(crate) tid: u32,
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

    /// Whether the view is the initial pid namespace's, where a task's number is its global
    /// pid.
    fn in_init_pid_ns(&self) -> bool {
        core::ptr::eq(self.pid_ns.as_ptr(), &raw const bindings::init_pid_ns)
    }

    /// Whether `other` shows every task and every ID as this view does: the same user namespace
    /// and the same pid namespace.
    pub(crate) fn same_view(&self, other: &Viewer) -> bool {
        core::ptr::eq(self.user_ns(), other.user_ns())
            && core::ptr::eq(self.pid_ns.as_ptr(), other.pid_ns.as_ptr())
    }

    /// Returns the global UID `kuid` in this view, or the overflow UID if it has no mapping
    /// there.
    fn uid_of(&self, kuid: Kuid) -> u32 {
        let kuid = kuid.into_raw();
        // The initial namespace maps every valid ID to itself (`from_kuid()` walking its one
        // extent), and `(uid_t)-1` is no valid ID: spared per message, the common case.
        if self.in_init_user_ns() && kuid.val != u32::MAX {
            return kuid.val;
        }
        // SAFETY: The credentials hold a reference to their user namespace, so the pointer is
        // valid for as long as `self`.
        unsafe { bindings::from_kuid_munged(self.user_ns(), kuid) }
    }

    /// Returns the global GID `kgid` in this view, or the overflow GID if it has no mapping
    /// there.
    fn gid_of(&self, kgid: bindings::kgid_t) -> u32 {
        // As in `uid_of`.
        if self.in_init_user_ns() && kgid.val != u32::MAX {
            return kgid.val;
        }
        // SAFETY: As in `uid_of`.
        unsafe { bindings::from_kgid_munged(self.user_ns(), kgid) }
    }

    /// Returns the number of `task`'s pid of type `kind` (`PIDTYPE_TGID` for its thread group,
    /// `PIDTYPE_PID` for the thread) in this view, or 0 if it is not visible there or the task
    /// is already detached from it (exiting).
    fn task_nr(&self, task: &Task, kind: bindings::pid_type) -> u32 {
        // SAFETY: `task` is valid by the type invariants of `Task`, and `pid_ns` by those of
        // `ARef`; `__task_pid_nr_ns()` reads the task's pid under RCU itself.
        let nr = unsafe { bindings::__task_pid_nr_ns(task.as_ptr(), kind, self.pid_ns.as_ptr()) };
        // A pid number is never negative; 0 is already the "not visible" answer.
        u32::try_from(nr).unwrap_or(0)
    }

    /// Returns the current task, the sender of a message to a peer of this view, as the peer is
    /// shown it.
    ///
    /// The real UID and GID come from the subjective credentials (`current_cred()`), as for
    /// `SCM_CREDENTIALS`; they differ from the objective ones only while the kernel acts on a
    /// task's behalf with overridden credentials, which an ioctl from user space never does.
    // Inlined: on every message's path, where a call would cost about as much as the body.
    #[inline]
    pub(crate) fn current_sender(&self) -> SenderIds {
        let (uid, gid) = current_real_ids();
        let task = kernel::current!();
        let (pid, tid) = if self.in_init_pid_ns() {
            // The initial namespace numbers every task by its global pid, which the task and its
            // group leader hold themselves: no lookup of the task's pid structures, which
            // answers the same for a task that is running (it is attached to them until it has
            // exited), the common case, per message.
            // CAST: Pid numbers are positive.
            (task.group_leader().pid() as u32, task.pid() as u32)
        } else {
            let pid = self.task_nr(task, bindings::pid_type_PIDTYPE_TGID);
            // Most senders lead their thread group: their thread is the group, looked up once.
            let tid = if task.pid() == task.group_leader().pid() {
                pid
            } else {
                self.task_nr(task, bindings::pid_type_PIDTYPE_PID)
            };
            (pid, tid)
        };
        SenderIds {
            uid: self.uid_of(uid),
            gid: self.gid_of(gid),
            pid,
            tid,
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
    fn a_view_is_its_namespaces() -> Result {
        // Two captures of one task's view are the same view: the same namespaces, though
        // distinct objects.
        let a = Viewer::current()?;
        let b = Viewer::current()?;
        assert!(a.same_view(&b));
        assert!(b.same_view(&a));
        assert!(a.same_view(&a));
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
        let first = viewer.current_sender();
        assert_eq!((first.uid, first.gid), (1234, 5678));
        // In the initial user namespace, the principal is the real UID.
        assert_eq!(viewer.principal(), 1234);

        // Later credential changes affect neither the captured sender nor the pinned viewer.
        set_real_ids(4321, 8765)?;
        let second = viewer.current_sender();
        assert_eq!((first.uid, first.gid), (1234, 5678));
        assert_eq!((second.uid, second.gid), (4321, 8765));
        assert_eq!(viewer.principal(), 1234);
        assert_eq!(Viewer::current()?.principal(), 4321);

        set_real_ids(0, 0)
    }

    #[test]
    fn pids_match_the_task() -> Result {
        let viewer = Viewer::current()?;
        let sender = viewer.current_sender();
        let task = current!();
        // A KUnit case runs in a kthread, which leads its own thread group, so tid and tgid are
        // equal here; only a multi-threaded sender (a selftest) tells them apart.
        // CAST: Pid numbers are positive.
        let tid = task.pid() as u32;
        let tgid = task.group_leader().pid() as u32;
        assert_ne!(tid, 0);
        assert_eq!(sender.tid, tid);
        assert_eq!(sender.pid, tgid);
        assert_eq!(Ok(sender.pid), u32::try_from(task.tgid_nr_ns(None)));
        Ok(())
    }

    #[test]
    fn unmapped_ids_are_munged() -> Result {
        // `INVALID_UID`/`INVALID_GID` are the only ids without a mapping in the initial user
        // namespace, the only one a KUnit case can reach.
        set_real_ids(u32::MAX, u32::MAX)?;
        let viewer = Viewer::current()?;
        let sender = viewer.current_sender();
        // SAFETY: The overflow ids are statics that live forever; sysctl may write them
        // concurrently, hence volatile reads (C `READ_ONCE()`).
        let (overflowuid, overflowgid) = unsafe {
            (
                core::ptr::read_volatile(&raw const bindings::overflowuid),
                core::ptr::read_volatile(&raw const bindings::overflowgid),
            )
        };
        // CAST: The overflow ids are limited to 0..=65534 by their sysctl.
        assert_eq!(sender.uid, overflowuid as u32);
        assert_eq!(sender.gid, overflowgid as u32);
        assert_ne!(sender.uid, u32::MAX);
        set_real_ids(0, 0)
    }
}
