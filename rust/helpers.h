/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Prototypes of bus1's C glue (rust/helpers.c). The Rust side declares the
 * same functions in the abstraction that uses them.
 */
#ifndef BUS1_RUST_HELPERS_H
#define BUS1_RUST_HELPERS_H

#include <linux/types.h>

struct file;
struct file_operations;
struct mem_cgroup;
struct page;
struct vm_area_struct;
struct wait_queue_head;
struct lock_class_key;

/* rust/shmem.rs */
struct file *rust_bus1_shmem_setup(const char *name, loff_t size);
struct page *rust_bus1_shmem_get_page(struct file *file, pgoff_t index,
				      struct mem_cgroup *memcg);
struct page *rust_bus1_shmem_find_page(struct file *file, pgoff_t index);
void rust_bus1_shmem_put_page(struct page *page, bool dirty);
void rust_bus1_page_dirtied(struct page *page);
size_t rust_bus1_page_copy_from_user(struct page *page, size_t offset,
				     const void __user *src, size_t len);
int rust_bus1_shmem_write_user(struct file *file, loff_t pos,
			       const void __user *src, size_t len,
			       struct mem_cgroup *memcg);
void rust_bus1_page_write(struct page *page, size_t offset, const void *src,
			  size_t len);
void rust_bus1_page_read(struct page *page, size_t offset, void *dst,
			 size_t len);
int rust_bus1_shmem_punch_hole(struct file *file, loff_t offset, loff_t len);
unsigned long rust_bus1_shmem_resident_pages(struct file *file);
int rust_bus1_shmem_mmap(struct file *file, struct vm_area_struct *vma);

/* rust/memcg.rs */
struct mem_cgroup *rust_bus1_memcg_get_current(void);
void rust_bus1_memcg_get(struct mem_cgroup *memcg);
void rust_bus1_memcg_put(struct mem_cgroup *memcg);
bool rust_bus1_memcg_full(struct mem_cgroup *memcg);
struct mem_cgroup *rust_bus1_set_active_memcg(struct mem_cgroup *memcg);

/* rust/file_ext.rs */
bool rust_bus1_file_is_io_uring(struct file *file);

/* rust/uaccess_ext.rs */
int rust_bus1_get_user_u8(u8 *dst, const void __user *src);
int rust_bus1_get_user_u64(u64 *dst, const void __user *src);
int rust_bus1_read_user_words(u64 *dst, const void __user *src, size_t words,
			      size_t len);
int rust_bus1_write_user_words(void __user *dst, const u64 *src, size_t words);

/* rust/poll.rs */
struct wait_queue_head *rust_bus1_waitq_new(const char *name,
					    struct lock_class_key *key);
void rust_bus1_waitq_free(struct wait_queue_head *wq);
bool rust_bus1_waitq_has_sleeper(struct wait_queue_head *wq);
int rust_bus1_waitq_wait(struct wait_queue_head *wq,
			 bool (*cond)(void *data), void *data, long *timeout);
long rust_bus1_timeout_jiffies(u64 ns);

/* Test support for rust/shmem.rs and rust/uaccess_ext.rs, only built with built-in KUnit. */
struct file *rust_bus1_test_anon_file(const struct file_operations *fops,
				      void *priv);
int rust_bus1_test_vm_mmap(struct file *file, size_t len, bool writable,
			   bool shared, unsigned long *addr);
void rust_bus1_test_fput_sync(struct file *file);

#endif /* BUS1_RUST_HELPERS_H */
