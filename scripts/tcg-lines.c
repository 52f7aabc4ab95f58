// SPDX-License-Identifier: GPL-2.0
/*
 * A QEMU TCG plugin for `make profile` (scripts/profile.sh): counts the
 * cache lines that move between CPUs, per instruction, in a guest of
 * several vCPUs, and writes them out each time the guest executes the
 * marker instruction of scripts/tcg-insns.c (nopl 0x31737562(%rax,%rax,1)).
 *
 * Every load and store of the guest (the kernel's and user space's, by
 * physical address, so that the kernel's and a process's mapping of one page
 * are one line) goes through a model of coherent caches of unlimited size,
 * one per vCPU, with 64-byte lines: a line is held by a set of CPUs, and is
 * modified in at most one of them. An access by CPU c is a *transfer* when
 * the line is held by another CPU and c needs it from there:
 *
 *   - a load of a line c does not hold that another CPU holds (it is
 *     fetched from that CPU's cache; a modified copy becomes shared);
 *   - a store to a line another CPU holds (its copies are invalidated and c
 *     owns the line).
 *
 * A line that no CPU held yet comes from memory and is no transfer; as the
 * caches never evict, every transfer counted is one that sharing data between
 * CPUs causes (a coherence miss), which is what a round trip across two CPUs
 * pays beyond the same round trip on one CPU.
 *
 * The output file, given as `-plugin tcg-lines.so,out=FILE`, holds per marker
 * the line "mark K" (K = 1, 2, ...), then "total loads stores" (the transfers
 * since the previous marker by loads and by stores), then one line
 * "pc loads stores" per instruction that caused a transfer since the previous
 * marker; user-space instructions are counted together as pc 1.
 *
 * The callbacks run in the order the vCPUs execute: scripts/profile.sh runs
 * the guest with -icount, which makes TCG run every vCPU in one thread, one
 * after the other; the plugin refuses a guest that runs them in parallel
 * (it cannot tell, so it trusts the command line and checks the vCPU count
 * only).
 *
 * Built by scripts/profile.sh with gcc -shared, like scripts/tcg-insns.c
 * (API generation 3: QEMU 9.1 and later); built once more with
 * -DTCG_LINES_TEST, it runs the cache model on known access sequences
 * (test_tcg_lines in scripts/lib.sh).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- QEMU's plugin API: the shared part, then what this plugin uses besides --- */
#include "tcg-plugin.h"
typedef uint32_t qemu_plugin_meminfo_t;
struct qemu_plugin_hwaddr;
typedef void (*qemu_plugin_vcpu_simple_cb_t)(qemu_plugin_id_t id, unsigned int vcpu_index);
typedef void (*qemu_plugin_vcpu_mem_cb_t)(unsigned int vcpu_index, qemu_plugin_meminfo_t info, uint64_t vaddr,
					  void *userdata);
void qemu_plugin_register_vcpu_mem_cb(struct qemu_plugin_insn *insn, qemu_plugin_vcpu_mem_cb_t cb,
				      enum qemu_plugin_cb_flags flags, enum qemu_plugin_mem_rw rw, void *userdata);
void qemu_plugin_register_vcpu_tb_exec_cb(struct qemu_plugin_tb *tb, qemu_plugin_vcpu_udata_cb_t cb,
					  enum qemu_plugin_cb_flags flags, void *userdata);
void qemu_plugin_register_vcpu_init_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_simple_cb_t cb);
struct qemu_plugin_register;
typedef struct {
	struct qemu_plugin_register *handle;
	const char *name;
	const char *feature;
} qemu_plugin_reg_descriptor;
/* GLib's GArray and GByteArray, as far as their layout goes. */
typedef struct {
	char *data;
	unsigned int len;
} GArray;
typedef struct {
	uint8_t *data;
	unsigned int len;
} GByteArray;
GArray *qemu_plugin_get_registers(void);
int qemu_plugin_read_register(struct qemu_plugin_register *handle, GByteArray *buf);
GByteArray *g_byte_array_new(void);
GByteArray *g_byte_array_set_size(GByteArray *array, unsigned int length);
size_t qemu_plugin_insn_data(const struct qemu_plugin_insn *insn, void *dest, size_t len);
unsigned int qemu_plugin_mem_size_shift(qemu_plugin_meminfo_t info);
bool qemu_plugin_mem_is_store(qemu_plugin_meminfo_t info);
struct qemu_plugin_hwaddr *qemu_plugin_get_hwaddr(qemu_plugin_meminfo_t info, uint64_t vaddr);
bool qemu_plugin_hwaddr_is_io(const struct qemu_plugin_hwaddr *haddr);
uint64_t qemu_plugin_hwaddr_phys_addr(const struct qemu_plugin_hwaddr *haddr);
QEMU_PLUGIN_EXPORT int qemu_plugin_version = 3;
/* --- end of the API --- */

/* x86-64: the kernel half of the address space. */
#define KERNEL_START 0xffff800000000000ull
#define LINE_SHIFT 6
/* The model covers the first 16 GiB of guest physical memory, a byte per line. */
#define LINES (1ull << (34 - LINE_SHIFT))
/* A line's byte: bits 0-6 the CPUs that hold it, bit 7 set if modified (held by one). */
#define MODIFIED 0x80u
#define MAX_CPUS 7

/* The transfers one instruction caused, and their counts at the previous marker. */
struct insn {
	uint64_t pc;
	uint64_t loads, stores;
	uint64_t last_loads, last_stores;
};

static uint8_t *lines;
static uint64_t loads, stores;

/* One access by @cpu to line @l; counts a transfer in @e. */
static void touch(unsigned int cpu, uint64_t l, bool store, struct insn *e)
{
	uint8_t me = 1u << cpu, s;

	if (l >= LINES)
		return;
	s = lines[l];
	if (store) {
		if (s & ~me & ~MODIFIED) {
			e->stores++;
			stores++;
		}
		lines[l] = me | MODIFIED;
	} else if (!(s & me)) {
		if (s & ~MODIFIED) {
			e->loads++;
			loads++;
		}
		lines[l] = (s & ~MODIFIED) | me;
	}
}

#ifndef TCG_LINES_TEST
#define SLOTS (1u << 20)
static struct insn *table;
static size_t used;
static uint64_t last_loads, last_stores;
static FILE *out;
static unsigned long marks;

static const uint8_t marker[] = { 0x0f, 0x1f, 0x84, 0x00, 0x62, 0x75, 0x73, 0x31 };

static struct insn *lookup(uint64_t pc)
{
	size_t i = (size_t)((pc * 0x9e3779b97f4a7c15ull) >> 44);

	for (;; i++) {
		struct insn *e = &table[i & (SLOTS - 1)];

		if (e->pc == pc)
			return e;
		if (!e->pc) {
			if (++used > SLOTS / 4 * 3) {
				fprintf(stderr, "tcg-lines: more than %u instructions\n", SLOTS / 4 * 3);
				exit(1);
			}
			e->pc = pc;
			return e;
		}
	}
}

/*
 * Which CPU runs: the vCPU whose translation block started last, told apart
 * by its kernel GS base (the CPU's per-CPU area, read at the start of every
 * block), as the index QEMU 10 passes to the callbacks does not follow the
 * vCPU that runs under -icount: the accesses of one instruction to its CPU's
 * preempt count came under one index for the per-CPU areas of both CPUs.
 */
static struct qemu_plugin_register *gs_base, *k_gs_base;
static GByteArray *regbuf;
static uint64_t cpu_bases[MAX_CPUS];
static unsigned int n_cpus, cur_cpu = MAX_CPUS;

static uint64_t read_reg(struct qemu_plugin_register *reg)
{
	uint64_t v = 0;

	g_byte_array_set_size(regbuf, 0);
	if (qemu_plugin_read_register(reg, regbuf) == 8)
		memcpy(&v, regbuf->data, 8);
	return v;
}

static void on_vcpu_init(qemu_plugin_id_t id, unsigned int vcpu)
{
	GArray *regs = qemu_plugin_get_registers();
	qemu_plugin_reg_descriptor *d = (qemu_plugin_reg_descriptor *)regs->data;

	for (unsigned int i = 0; i < regs->len; i++) {
		if (!strcmp(d[i].name, "gs_base"))
			gs_base = d[i].handle;
		else if (!strcmp(d[i].name, "k_gs_base"))
			k_gs_base = d[i].handle;
	}
	if (!gs_base || !k_gs_base) {
		fprintf(stderr, "tcg-lines: the vCPU has no registers gs_base and k_gs_base\n");
		exit(1);
	}
}

static void on_tb(unsigned int vcpu, void *udata)
{
	uint64_t base = read_reg(gs_base);
	unsigned int i;

	/* In user space the kernel's GS base is the swapped-out one. */
	if (base < KERNEL_START)
		base = read_reg(k_gs_base);
	if (base < KERNEL_START) {
		/* Early boot, before the per-CPU areas. */
		cur_cpu = MAX_CPUS;
		return;
	}
	for (i = 0; i < n_cpus && cpu_bases[i] != base; i++)
		;
	if (i == n_cpus) {
		if (n_cpus == MAX_CPUS) {
			cur_cpu = MAX_CPUS;
			return;
		}
		cpu_bases[n_cpus++] = base;
	}
	cur_cpu = i;
}

static void on_mem(unsigned int vcpu, qemu_plugin_meminfo_t info, uint64_t vaddr, void *udata)
{
	struct qemu_plugin_hwaddr *hw = qemu_plugin_get_hwaddr(info, vaddr);
	uint64_t pa, size = 1ull << qemu_plugin_mem_size_shift(info);
	bool store = qemu_plugin_mem_is_store(info);
	unsigned int cpu = cur_cpu;

	if (!hw || qemu_plugin_hwaddr_is_io(hw) || cpu >= MAX_CPUS)
		return;
	pa = qemu_plugin_hwaddr_phys_addr(hw);
	touch(cpu, pa >> LINE_SHIFT, store, udata);
	/* An access across a line boundary (within its page) touches both lines. */
	if ((pa >> LINE_SHIFT) != ((pa + size - 1) >> LINE_SHIFT))
		touch(cpu, (pa + size - 1) >> LINE_SHIFT, store, udata);
}

static void on_marker(unsigned int vcpu, void *udata)
{
	fprintf(out, "mark %lu\n", ++marks);
	fprintf(out, "total %llu %llu\n", (unsigned long long)(loads - last_loads),
		(unsigned long long)(stores - last_stores));
	last_loads = loads;
	last_stores = stores;
	for (size_t i = 0; i < SLOTS; i++) {
		struct insn *e = &table[i];

		if (e->loads != e->last_loads || e->stores != e->last_stores) {
			fprintf(out, "%llx %llu %llu\n", (unsigned long long)e->pc,
				(unsigned long long)(e->loads - e->last_loads),
				(unsigned long long)(e->stores - e->last_stores));
			e->last_loads = e->loads;
			e->last_stores = e->stores;
		}
	}
	fflush(out);
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
	size_t n = qemu_plugin_tb_n_insns(tb);

	qemu_plugin_register_vcpu_tb_exec_cb(tb, on_tb, QEMU_PLUGIN_CB_R_REGS, NULL);
	for (size_t i = 0; i < n; i++) {
		struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
		uint64_t pc = qemu_plugin_insn_vaddr(insn);
		uint8_t bytes[sizeof(marker)];

		if (pc < KERNEL_START && qemu_plugin_insn_size(insn) == sizeof(marker) &&
		    qemu_plugin_insn_data(insn, bytes, sizeof(bytes)) == sizeof(bytes) &&
		    !memcmp(bytes, marker, sizeof(marker)))
			qemu_plugin_register_vcpu_insn_exec_cb(insn, on_marker, QEMU_PLUGIN_CB_NO_REGS, NULL);
		qemu_plugin_register_vcpu_mem_cb(insn, on_mem, QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_MEM_RW,
						 lookup(pc >= KERNEL_START ? pc : 1));
	}
}

static void on_qemu_exit(qemu_plugin_id_t id, void *udata)
{
	fclose(out);
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv)
{
	const char *path = NULL;

	for (int i = 0; i < argc; i++)
		if (!strncmp(argv[i], "out=", 4))
			path = argv[i] + 4;
	if (!path) {
		fprintf(stderr, "tcg-lines: usage: -plugin tcg-lines.so,out=FILE\n");
		return -1;
	}
	if (!info->system_emulation || info->system.max_vcpus < 2 || info->system.max_vcpus > MAX_CPUS) {
		fprintf(stderr, "tcg-lines: needs system emulation with 2 to %d vCPUs\n", MAX_CPUS);
		return -1;
	}
	table = calloc(SLOTS, sizeof(*table));
	lines = calloc(LINES, 1);
	regbuf = g_byte_array_new();
	out = fopen(path, "w");
	if (!table || !lines || !out) {
		perror("tcg-lines");
		return -1;
	}
	qemu_plugin_register_vcpu_init_cb(id, on_vcpu_init);
	qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
	qemu_plugin_register_atexit_cb(id, on_qemu_exit, NULL);
	return 0;
}
#endif /* !TCG_LINES_TEST */

#ifdef TCG_LINES_TEST
/*
 * The cache model on sequences of accesses to one line, each with the
 * transfers it must count (loads, stores).
 */
static const struct {
	const char *what;
	unsigned int cpu;
	bool store;
	uint64_t loads, stores;
} seq[] = {
	{ "CPU 1 loads a line nobody holds (from memory)", 1, false, 0, 0 },
	{ "CPU 0 loads it too: held by CPU 1, a transfer", 0, false, 1, 0 },
	{ "CPU 0 stores to it: CPU 1's copy goes", 0, true, 1, 1 },
	{ "CPU 0 stores again: its own modified line", 0, true, 1, 1 },
	{ "CPU 0 loads it: its own", 0, false, 1, 1 },
	{ "CPU 1 loads it: from CPU 0's cache", 1, false, 2, 1 },
	{ "CPU 1 loads again: it holds it", 1, false, 2, 1 },
	{ "CPU 0 loads: shared, still held", 0, false, 2, 1 },
	{ "CPU 1 stores: CPU 0's copy goes", 1, true, 2, 2 },
	{ "CPU 0 stores: from CPU 1", 0, true, 2, 3 },
	{ "CPU 1 stores: from CPU 0", 1, true, 2, 4 },
	{ "CPU 2 loads: from CPU 1", 2, false, 3, 4 },
	{ "CPU 0 loads: held by 1 and 2", 0, false, 4, 4 },
	{ "CPU 2 stores: CPUs 0 and 1 lose it, one transfer", 2, true, 4, 5 },
};

int main(void)
{
	struct insn e = { 0 };
	int bad = 0;

	lines = calloc(LINES, 1);
	if (!lines)
		return 1;
	for (size_t i = 0; i < sizeof(seq) / sizeof(seq[0]); i++) {
		touch(seq[i].cpu, 12345, seq[i].store, &e);
		if (e.loads != seq[i].loads || e.stores != seq[i].stores || loads != e.loads || stores != e.stores) {
			fprintf(stderr, "tcg-lines test: %s: %llu loads and %llu stores counted, expected %llu and %llu\n",
				seq[i].what, (unsigned long long)e.loads, (unsigned long long)e.stores,
				(unsigned long long)seq[i].loads, (unsigned long long)seq[i].stores);
			bad = 1;
		}
	}
	/* A line beyond the model is ignored. */
	touch(0, LINES, true, &e);
	touch(1, LINES, true, &e);
	if (e.stores != 5) {
		fprintf(stderr, "tcg-lines test: a line beyond the model counted\n");
		bad = 1;
	}
	return bad;
}
#endif
