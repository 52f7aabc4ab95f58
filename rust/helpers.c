// SPDX-License-Identifier: GPL-2.0
/*
 * C glue for bus1's Rust abstractions (rust/): kernel APIs that are static
 * inline, or whose headers are not part of the 7.2 Rust bindings. Each
 * function is a thin, non-inline wrapper; the Rust side documents the
 * safety contract.
 */
#include <linux/anon_inodes.h>
#include <linux/err.h>
#include <linux/falloc.h>
#include <linux/folio_batch.h>
#include <linux/fs.h>
#include <linux/highmem.h>
#include <linux/kernel.h>
#include <linux/magic.h>
#include <linux/memcontrol.h>
#include <linux/mm.h>
#include <linux/mman.h>
#include <linux/pagemap.h>
#include <linux/rcupdate.h>
#include <linux/slab.h>
#include <linux/sched/mm.h>
#include <linux/shmem_fs.h>
#include <linux/uaccess.h>
#include <linux/wait.h>
#include <linux/jiffies.h>
#include <linux/sched/signal.h>
#include <kunit/test.h>

#include "helpers.h"

/*
 * Receive pools (rust/shmem.rs). The page helpers rely on shmem's swap and
 * hole handling; the tiny-kernel ramfs stand-in does not punch holes.
 */
#ifndef CONFIG_SHMEM
#error "bus1 needs CONFIG_SHMEM"
#endif

/*
 * An unlinked kernel-internal shmem file: S_PRIVATE skips the LSM inode
 * checks, as the pool is only ever reached through the bus1 file, which is
 * where access is checked. VM_NORESERVE commits memory page by page as the
 * kernel writes, not for the whole (large, mostly empty) size up front.
 */
struct file *rust_bus1_shmem_setup(const char *name, loff_t size)
{
	return shmem_kernel_file_setup(name, size,
				       mk_vma_flags(VMA_NORESERVE_BIT));
}

/*
 * Memory cgroups (rust/memcg.rs).
 *
 * NULL if memcg is disabled at boot. A task without an mm (a kernel thread)
 * gets the memcg it is charging to, or the root memcg, which is not
 * refcounted, so putting it is fine. Without CONFIG_MEMCG, memcontrol.h and
 * sched/mm.h provide stubs (NULL, no-op put, no-op set_active_memcg()), so
 * only the helpers that look into struct mem_cgroup need an #ifdef.
 */
struct mem_cgroup *rust_bus1_memcg_get_current(void)
{
	return get_mem_cgroup_from_mm(current->mm);
}

void rust_bus1_memcg_get(struct mem_cgroup *memcg)
{
#ifdef CONFIG_MEMCG
	css_get(&memcg->css);
#endif
}

void rust_bus1_memcg_put(struct mem_cgroup *memcg)
{
	mem_cgroup_put(memcg);
}

/* Makes @memcg the current task's active memcg; returns the previous one. */
struct mem_cgroup *rust_bus1_set_active_memcg(struct mem_cgroup *memcg)
{
	return set_active_memcg(memcg);
}

/*
 * Whether @memcg (or one of its ancestors) is within a charge batch of its
 * memory limit, so that a failed charge there means the cgroup is full rather
 * than that memory is short. False without memcg.
 */
bool rust_bus1_memcg_full(struct mem_cgroup *memcg)
{
#ifdef CONFIG_MEMCG
	for (; memcg; memcg = parent_mem_cgroup(memcg))
		if (page_counter_read(&memcg->memory) + MEMCG_CHARGE_BATCH >
		    READ_ONCE(memcg->memory.max))
			return true;
#endif
	return false;
}

/*
 * Returns the page at @index with a reference on its folio, allocating a
 * zeroed one charged to @memcg (if not NULL) for a hole, or an ERR_PTR.
 * The folio is not locked, so writers of different pages (or of the same
 * page) do not serialise on the inode or on each other.
 *
 * The allocation and the charge do not retry after reclaim and never invoke
 * the OOM killer (__GFP_NORETRY): a sender writing into a receiver's pool
 * must not be able to kill tasks in the receiver's memory cgroup when it is
 * full. The write fails with -ENOMEM instead.
 */
struct page *rust_bus1_shmem_get_page(struct file *file, pgoff_t index,
				      struct mem_cgroup *memcg)
{
	struct address_space *mapping = file->f_mapping;
	struct mem_cgroup *old;
	struct folio *folio;
	struct page *page;

	/*
	 * A page that is in the page cache and up to date (every page shmem
	 * allocated for us; a swapped-out page is a swap entry there, not a
	 * folio) is taken with one RCU lookup and a reference, without the
	 * folio lock or the memory cgroup switch that allocating needs: a
	 * large slice is written page after page into pages the pool keeps
	 * resident. Anything else takes shmem's path below.
	 */
	folio = filemap_get_folio(mapping, index);
	if (!IS_ERR(folio)) {
		if (folio_test_uptodate(folio)) {
			page = folio_file_page(folio, index);
			if (!PageHWPoison(page))
				return page;
		}
		folio_put(folio);
	}

	old = set_active_memcg(memcg);
	page = shmem_read_mapping_page_gfp(mapping, index,
					   mapping_gfp_mask(mapping) |
					   __GFP_NORETRY | __GFP_NOWARN);
	set_active_memcg(old);
	return page;
}

/*
 * Like rust_bus1_shmem_get_page(), but returns NULL for a hole instead of
 * allocating (swapped-out pages are read back in).
 */
struct page *rust_bus1_shmem_find_page(struct file *file, pgoff_t index)
{
	struct folio *folio;
	struct page *page;
	int err;

	err = shmem_get_folio(file_inode(file), index, 0, &folio, SGP_READ);
	if (err)
		return ERR_PTR(err);
	if (!folio)
		return NULL;
	folio_unlock(folio);
	page = folio_file_page(folio, index);
	if (PageHWPoison(page)) {
		folio_put(folio);
		return ERR_PTR(-EIO);
	}
	return page;
}

/*
 * Drops the reference taken by the two functions above. A written folio is
 * marked dirty before the reference goes, so reclaim (which cannot free it
 * while the reference is held) swaps it out instead of dropping it.
 */
void rust_bus1_shmem_put_page(struct page *page, bool dirty)
{
	struct folio *folio = page_folio(page);

	if (dirty) {
		flush_dcache_folio(folio);
		folio_mark_dirty(folio);
	}
	folio_put(folio);
}

/* Returns the number of bytes not copied, like copy_from_user(). */
size_t rust_bus1_page_copy_from_user(struct page *page, size_t offset,
				     const void __user *src, size_t len)
{
	char *kaddr = kmap_local_page(page);
	size_t left = copy_from_user(kaddr + offset, src, len);

	kunmap_local(kaddr);
	return left;
}

/*
 * Marks @folio dirty after a write into it. A folio that is dirty already
 * needs no second mark, as in unpin_user_pages_dirty_lock(): only writeback
 * cleans it, and the test comes after the write, so a folio cleaned before it
 * is marked again. It spares the address space operation's indirect call per
 * copy.
 */
static void folio_dirtied(struct folio *folio)
{
	flush_dcache_folio(folio);
	if (!folio_test_dirty(folio))
		folio_mark_dirty(folio);
}

/*
 * Copies @len bytes from user memory at @src into @file at byte @pos, with
 * the effect of rust_bus1_shmem_get_page(), rust_bus1_page_copy_from_user()
 * and rust_bus1_shmem_put_page(page, true) for each page in turn, but with
 * the pages that are in the page cache found in one walk of the mapping per
 * batch of them (filemap_get_folios_contig()), not one lookup per page: a
 * large slice is written into pages the pool keeps resident. A hole, a
 * swapped-out page, a folio that is not up to date and a poisoned page take
 * shmem's path, one page at a time. Returns 0, -EFAULT if the user memory
 * cannot be read (the range may then be partly written), or the error of a
 * page that cannot be had.
 */
int rust_bus1_shmem_write_user(struct file *file, loff_t pos,
			       const void __user *src, size_t len,
			       struct mem_cgroup *memcg)
{
	struct address_space *mapping = file->f_mapping;
	struct folio_batch fbatch;

	folio_batch_init(&fbatch);
	while (len) {
		pgoff_t index = pos >> PAGE_SHIFT;
		pgoff_t first = index, next = index;
		unsigned int i, nr;
		struct page *page;
		size_t off, n, left = 0;

		nr = filemap_get_folios_contig(mapping, &next,
					       (pos + len - 1) >> PAGE_SHIFT,
					       &fbatch);
		for (i = 0; i < nr && len && !left; i++) {
			struct folio *folio = fbatch.folios[i];
			bool written = false;

			if (!folio_test_uptodate(folio))
				break;
			while (len && folio_contains(folio, index)) {
				page = folio_file_page(folio, index);
				if (PageHWPoison(page))
					break;
				off = offset_in_page(pos);
				n = min_t(size_t, PAGE_SIZE - off, len);
				left = rust_bus1_page_copy_from_user(page, off, src, n);
				/* Even a failed copy may have written part of the page. */
				written = true;
				if (left)
					break;
				pos += n;
				src += n;
				len -= n;
				index++;
			}
			if (written)
				folio_dirtied(folio);
			if (folio_contains(folio, index))
				break;
		}
		folio_batch_release(&fbatch);
		if (left)
			return -EFAULT;
		if (!len || index != first)
			continue;

		/* No page of the cache at @index could be written: shmem's path. */
		page = rust_bus1_shmem_get_page(file, index, memcg);
		if (IS_ERR(page))
			return PTR_ERR(page);
		off = offset_in_page(pos);
		n = min_t(size_t, PAGE_SIZE - off, len);
		left = rust_bus1_page_copy_from_user(page, off, src, n);
		rust_bus1_shmem_put_page(page, true);
		if (left)
			return -EFAULT;
		pos += n;
		src += n;
		len -= n;
	}
	return 0;
}

void rust_bus1_page_write(struct page *page, size_t offset, const void *src,
			  size_t len)
{
	memcpy_to_page(page, offset, src, len);
}

/*
 * Marks a page that was written through a long-held folio reference dirty,
 * after each write: reclaim may have written it to swap and cleaned it
 * meanwhile (it cannot free it while the reference is held), and a clean
 * copy would be dropped instead of written again.
 */
void rust_bus1_page_dirtied(struct page *page)
{
	folio_dirtied(page_folio(page));
}

void rust_bus1_page_read(struct page *page, size_t offset, void *dst,
			 size_t len)
{
	memcpy_from_page(dst, page, offset, len);
}

/* Also zaps the range from every user mapping of the file. */
int rust_bus1_shmem_punch_hole(struct file *file, loff_t offset, loff_t len)
{
	return vfs_fallocate(file, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			     offset, len);
}

unsigned long rust_bus1_shmem_resident_pages(struct file *file)
{
	return READ_ONCE(file->f_mapping->nrpages);
}

/*
 * Makes @vma, in the .mmap hook of another file, a mapping of @file. shmem
 * only has .mmap_prepare in 7.2; vfs_mmap() runs it on a descriptor made from
 * @vma and applies the result (vm_ops) back. The flags the caller set on
 * @vma are kept.
 */
int rust_bus1_shmem_mmap(struct file *file, struct vm_area_struct *vma)
{
	vma_set_file(vma, file);
	return vfs_mmap(file, vma);
}

/*
 * One integer read from user space (rust/uaccess_ext.rs): get_user() is a
 * macro. Where unaligned loads are not efficient, an unaligned address is
 * copied with copy_from_user() instead, which takes any alignment, so the
 * Rust side accepts any address on every architecture.
 */
int rust_bus1_get_user_u8(u8 *dst, const void __user *src)
{
	return get_user(*dst, (const u8 __user *)src);
}

int rust_bus1_get_user_u64(u64 *dst, const void __user *src)
{
#ifndef CONFIG_HAVE_EFFICIENT_UNALIGNED_ACCESS
	if (!IS_ALIGNED((unsigned long)src, sizeof(*dst)))
		return copy_from_user(dst, src, sizeof(*dst)) ? -EFAULT : 0;
#endif
	return get_user(*dst, (const u64 __user *)src);
}

/*
 * A small ioctl argument copied a 64-bit word at a time (rust/uaccess_ext.rs),
 * as kernel/rseq.c reads its user structure: copy_from_user() and
 * copy_to_user() are out-of-line string copies whose start-up costs more than
 * the few words of an argument. Where unaligned loads are not efficient, an
 * unaligned user address takes the string copy instead. A fault returns
 * -EFAULT with the destination partly written; the caller discards it.
 *
 * A read takes the first @words of an argument of @len bytes (at least the
 * words' bytes, at most a page) and, in the same scope, reads its last byte:
 * the argument spans at most two pages, on which its first and last bytes
 * lie, so one that cannot be read in full fails here, not after its output
 * was produced.
 *
 * Both move four words per round, then the rest one at a time: an argument
 * is up to 32 words, and each round ends with a taken branch (TRANSACT reads
 * 16 words and writes 11 per call). The write's rounds are tested at the
 * bottom, as the compiler lays out the read's but not the write's by itself.
 */
int rust_bus1_read_user_words(u64 *dst, const void __user *src, size_t words,
			      size_t len)
{
	const u64 __user *s = src;
	size_t i;
	u8 last __maybe_unused;

#ifndef CONFIG_HAVE_EFFICIENT_UNALIGNED_ACCESS
	if (!IS_ALIGNED((unsigned long)src, sizeof(u64)))
		return copy_from_user(dst, src, words * sizeof(u64)) ||
		       get_user(last, (const u8 __user *)src + len - 1) ?
		       -EFAULT : 0;
#endif
	scoped_user_read_access_size(s, len, efault) {
		for (i = 0; i + 4 <= words; i += 4) {
			unsafe_get_user(dst[i], &s[i], efault);
			unsafe_get_user(dst[i + 1], &s[i + 1], efault);
			unsafe_get_user(dst[i + 2], &s[i + 2], efault);
			unsafe_get_user(dst[i + 3], &s[i + 3], efault);
		}
		for (; i < words; i++)
			unsafe_get_user(dst[i], &s[i], efault);
		if (len > words * sizeof(u64))
			unsafe_get_user(last, (const u8 __user *)s + len - 1,
					efault);
	}
	return 0;
efault:
	return -EFAULT;
}

int rust_bus1_write_user_words(void __user *dst, const u64 *src, size_t words)
{
	u64 __user *d = dst;
	size_t i;

#ifndef CONFIG_HAVE_EFFICIENT_UNALIGNED_ACCESS
	if (!IS_ALIGNED((unsigned long)dst, sizeof(u64)))
		return copy_to_user(dst, src, words * sizeof(u64)) ? -EFAULT : 0;
#endif
	scoped_user_write_access_size(d, words * sizeof(u64), efault) {
		i = 0;
		if (words >= 4) {
			do {
				unsafe_put_user(src[i], &d[i], efault);
				unsafe_put_user(src[i + 1], &d[i + 1], efault);
				unsafe_put_user(src[i + 2], &d[i + 2], efault);
				unsafe_put_user(src[i + 3], &d[i + 3], efault);
				i += 4;
			} while (i + 4 <= words);
		}
		for (; i < words; i++)
			unsafe_put_user(src[i], &d[i], efault);
	}
	return 0;
efault:
	return -EFAULT;
}

/*
 * Whether @file is an io_uring instance (rust/file_ext.rs).
 * io_is_uring_fops(), which SCM_RIGHTS uses, is not exported to modules.
 * io_uring_get_file() creates every ring file on the anon_inode filesystem
 * under the name "[io_uring]"; names there are chosen by the kernel code that
 * creates the file, never by user space, and no other user of that name
 * exists. An O_PATH file of a ring has empty file operations and can carry
 * nothing, so it is not one.
 */
bool rust_bus1_file_is_io_uring(struct file *file)
{
	if (file->f_mode & FMODE_PATH)
		return false;
	return file_inode(file)->i_sb->s_magic == ANON_INODE_FS_MAGIC &&
	       !strcmp(file->f_path.dentry->d_name.name, "[io_uring]");
}

/*
 * A wait queue for poll() in an allocation of its own, so that dropping it
 * does not have to wait for an RCU grace period: epoll may still look at a
 * wait queue that announced POLLFREE until a grace period has passed, so the
 * memory is freed with kfree_rcu() instead of after synchronize_rcu().
 */
struct rust_bus1_waitq {
	struct wait_queue_head wq;
	struct rcu_head rcu;
};

struct wait_queue_head *rust_bus1_waitq_new(const char *name,
					    struct lock_class_key *key)
{
	struct rust_bus1_waitq *q = kmalloc(sizeof(*q), GFP_KERNEL_ACCOUNT);

	if (!q)
		return NULL;
	__init_waitqueue_head(&q->wq, name, key);
	return &q->wq;
}

void rust_bus1_waitq_free(struct wait_queue_head *wq)
{
	struct rust_bus1_waitq *q = container_of(wq, struct rust_bus1_waitq, wq);

	/* Detaches every poll waiter (POLLFREE); epoll drops its entry under RCU. */
	wake_up_pollfree(wq);
	kfree_rcu(q, rcu);
}

/*
 * Whether anyone waits on @wq, for a waker that skips the wake-up otherwise:
 * the full barrier of wq_has_sleeper() pairs with the one each waiter issues
 * after adding itself and before checking its condition (the smp_mb() in
 * rust_bus1_waitq_wait() and in PollTable::register in rust/poll.rs).
 */
bool rust_bus1_waitq_has_sleeper(struct wait_queue_head *wq)
{
	return wq_has_sleeper(wq);
}

/*
 * woken_wake_function() that also unlinks the entry of a waiter it woke from
 * its sleep, as autoremove_wake_function() does, and as there last: once the
 * waiter sees its entry unlinked (list_empty_careful() in finish_wait()), the
 * waker no longer touches it, and the waiter may leave without the queue's
 * lock. An entry whose task was running stays linked, with WQ_FLAG_WOKEN set
 * for wait_woken().
 */
static int rust_bus1_woken_unlink(struct wait_queue_entry *wq_entry,
				  unsigned int mode, int sync, void *key)
{
	int ret = woken_wake_function(wq_entry, mode, sync, key);

	if (ret)
		list_del_init_careful(&wq_entry->entry);
	return ret;
}

/*
 * Waits on @wq until @cond(@data) holds, for RECV with BUS1_RECV_FLAG_WAIT.
 * @cond runs in TASK_RUNNING and may sleep (take a mutex): the
 * wait_woken() pattern keeps a wake-up that comes between the check and the
 * sleep (WQ_FLAG_WOKEN). *@timeout is in jiffies (MAX_SCHEDULE_TIMEOUT: none)
 * and is updated to what is left. Returns 0, -EINTR on a signal (never
 * restarted, like epoll_wait()) or -ETIMEDOUT.
 *
 * Wakers skip the wake-up when wq_has_sleeper() finds nobody: the barrier
 * after the entry is linked (add_wait_queue()'s spin_unlock() orders only
 * what comes before it) makes the entry visible before the next check reads
 * the condition.
 *
 * A wake-up from the sleep unlinks the entry (rust_bus1_woken_unlink()): a
 * waiter whose condition then holds, the common case, leaves without taking
 * the queue's lock. One that finds nothing (another waiter took the message)
 * links its entry again before it checks once more and sleeps. That happens
 * under the queue's lock, which a waker holds for its whole wake-up: without
 * it, the waiter could see its entry still linked by a waker that woke it but
 * has not unlinked it yet, and sleep unlinked.
 */
int rust_bus1_waitq_wait(struct wait_queue_head *wq,
			 bool (*cond)(void *data), void *data, long *timeout)
{
	/*
	 * DEFINE_WAIT_FUNC(), in one cache line of its own: the waker, usually
	 * on another CPU, writes the entry, and each line of it moves there and
	 * back per wake-up.
	 */
	struct wait_queue_entry wait __aligned(SMP_CACHE_BYTES) = {
		.private = current,
		.func = rust_bus1_woken_unlink,
		.entry = LIST_HEAD_INIT(wait.entry),
	};
	bool slept = false;
	unsigned long flags;
	int ret = 0;

	add_wait_queue(wq, &wait);
	smp_mb(); /* pairs with wq_has_sleeper() in rust_bus1_waitq_has_sleeper() */
	while (!cond(data)) {
		if (slept) {
			spin_lock_irqsave(&wq->lock, flags);
			if (list_empty(&wait.entry))
				__add_wait_queue(wq, &wait);
			spin_unlock_irqrestore(&wq->lock, flags);
			smp_mb(); /* as above */
			slept = false;
			continue;
		}
		if (signal_pending(current)) {
			ret = -EINTR;
			break;
		}
		if (*timeout <= 0) {
			ret = -ETIMEDOUT;
			break;
		}
		*timeout = wait_woken(&wait, TASK_INTERRUPTIBLE, *timeout);
		slept = true;
	}
	/* Takes the queue's lock only if the entry is still linked. */
	finish_wait(wq, &wait);
	return ret;
}

/*
 * Jiffies for a relative timeout of @ns > 0 ns: rounded up, plus one for the
 * tick under way. A wait of j jiffies ends at the j-th tick from the current
 * one, which may be about to end, so only j - 1 whole ticks are certain, and
 * they must cover @ns (as the kernel's own msecs_to_jiffies() + 1 idiom). No
 * timeout (0 ns) is MAX_SCHEDULE_TIMEOUT, which WaitTimeout::from_ns() in
 * rust/poll.rs sets without a call.
 */
long rust_bus1_timeout_jiffies(u64 ns)
{
	u64 j = nsecs_to_jiffies64(ns);

	if (jiffies_to_nsecs(j) < ns)
		j++;
	j++;
	return j >= MAX_SCHEDULE_TIMEOUT ? MAX_SCHEDULE_TIMEOUT - 1 : (long)j;
}

#if IS_BUILTIN(CONFIG_KUNIT)
struct file *rust_bus1_test_anon_file(const struct file_operations *fops,
				      void *priv)
{
	return anon_inode_getfile("[bus1-test]", fops, priv, O_RDWR);
}

/*
 * Maps @file (anonymous memory if NULL) into the current task, giving a
 * KUnit kernel thread an mm of its own first; the mm goes away with the
 * thread.
 */
int rust_bus1_test_vm_mmap(struct file *file, size_t len, bool writable,
			   bool shared, unsigned long *addr)
{
	unsigned long prot = PROT_READ | (writable ? PROT_WRITE : 0);
	unsigned long flags = shared ? MAP_SHARED : MAP_PRIVATE;
	unsigned long ret;
	int err;

	err = kunit_attach_mm();
	if (err)
		return err;
	if (!file)
		flags |= MAP_ANONYMOUS;
	ret = vm_mmap(file, 0, len, prot, flags, 0);
	if (IS_ERR_VALUE(ret))
		return (int)ret;
	*addr = ret;
	return 0;
}

/*
 * Drops a file reference and waits until every file that kernel threads
 * have put so far is released: fput() from a kernel thread is deferred to a
 * work item, and a test's file (whose file_operations live in this module)
 * must be gone before the test returns.
 */
void rust_bus1_test_fput_sync(struct file *file)
{
	fput(file);
	flush_delayed_fput();
}
#endif
