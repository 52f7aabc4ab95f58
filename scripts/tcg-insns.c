// SPDX-License-Identifier: GPL-2.0
/*
 * A QEMU TCG plugin for `make profile` (scripts/profile.sh): counts the guest
 * kernel instructions executed, per translation block, and writes them out
 * each time the guest executes the marker instruction
 *
 *	nopl 0x31737562(%rax,%rax,1)		0f 1f 84 00 62 75 73 31
 *
 * (a no-op; the displacement spells "bus1") in user space. The output file,
 * given as `-plugin tcg-insns.so,out=FILE`, holds per marker the line
 * "mark K" (K = 1, 2, ...) followed by one line
 * "pc executions insns locked accesses" per kernel translation block (start
 * address pc, length insns, of which locked are locked instructions, see
 * is_locked()) that ran since the previous marker, executions the number of
 * times it ran, accesses the guest memory accesses its executions made (each
 * load and each store, of data, the stack included, as QEMU's soft MMU serves
 * them; a `rep movsb` repetition is a load and a store). The instructions of
 * the segment are then the sum of executions * insns, its locked ones the sum
 * of executions * locked, its memory accesses the sum of accesses; the
 * block's start address names the function it belongs to.
 *
 * With `wake=ADDR,switch=ADDR` (the kernel's try_to_wake_up() and
 * __switch_to_asm(), where they run), each "mark K" line is followed by
 * "phase serial tail wakes switches serial_blocks tail_blocks": the kernel
 * instructions so far from a switch into a task until that task calls
 * try_to_wake_up() (serial), and from that call until the next switch
 * (tail), how many calls and switches there were, and the translation
 * blocks executed in each phase. In a round trip of two processes on two
 * CPUs, the serial parts of the two sides run one after the other, while a
 * tail (the rest of the waker's call after its wake-up, its way to sleep)
 * overlaps with the woken side. With the split and API 3, each block line
 * has a sixth column: how many of its executions began in the serial part
 * (a conditional callback on the phase, so the split is by block, as the
 * totals are).
 *
 * Counting is inline (a 64-bit add per block and per memory access, not
 * atomic), so the plugin
 * insists on one vCPU; scripts/profile.sh also runs the guest with -icount,
 * whose virtual clock counts instructions, so timer interrupts fall at the
 * same instructions in every run and the counts do not depend on the host.
 *
 * Built by scripts/profile.sh with gcc -shared. Debian ships no
 * qemu-plugin.h, so the declarations below (and in tcg-plugin.h) are the
 * subset of QEMU's stable plugin C API this file uses, in the generation the
 * installed QEMU speaks,
 * which profile.sh passes as TCG_INSNS_API: 1 for QEMU 4.2 to 8.2 (a plain
 * pointer as the inline counter, instruction bytes by pointer), 3 for QEMU
 * 9.1 and later (counters in a scoreboard, instruction bytes copied out;
 * include/qemu/qemu-plugin.h of QEMU 10).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef TCG_INSNS_API
#define TCG_INSNS_API 1
#endif

/* --- QEMU's plugin API: the shared part, then this plugin's generations --- */
#include "tcg-plugin.h"
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
#if TCG_INSNS_API >= 3
struct qemu_plugin_scoreboard;
typedef struct {
	struct qemu_plugin_scoreboard *score;
	size_t offset;
} qemu_plugin_u64;
struct qemu_plugin_scoreboard *qemu_plugin_scoreboard_new(size_t element_size);
void *qemu_plugin_scoreboard_find(struct qemu_plugin_scoreboard *score, unsigned int vcpu_index);
void qemu_plugin_register_vcpu_tb_exec_inline_per_vcpu(struct qemu_plugin_tb *tb, enum qemu_plugin_op op,
						       qemu_plugin_u64 entry, uint64_t imm);
void qemu_plugin_register_vcpu_mem_inline_per_vcpu(struct qemu_plugin_insn *insn, enum qemu_plugin_mem_rw rw,
						   enum qemu_plugin_op op, qemu_plugin_u64 entry, uint64_t imm);
enum qemu_plugin_cond {
	QEMU_PLUGIN_COND_NEVER,
	QEMU_PLUGIN_COND_ALWAYS,
	QEMU_PLUGIN_COND_EQ,
	QEMU_PLUGIN_COND_NE,
	QEMU_PLUGIN_COND_LT,
	QEMU_PLUGIN_COND_LE,
	QEMU_PLUGIN_COND_GT,
	QEMU_PLUGIN_COND_GE,
};
void qemu_plugin_register_vcpu_tb_exec_cond_cb(struct qemu_plugin_tb *tb, qemu_plugin_vcpu_udata_cb_t cb,
					       enum qemu_plugin_cb_flags flags, enum qemu_plugin_cond cond,
					       qemu_plugin_u64 entry, uint64_t imm, void *userdata);
size_t qemu_plugin_insn_data(const struct qemu_plugin_insn *insn, void *dest, size_t len);
#else
void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *tb, enum qemu_plugin_op op,
					      void *ptr, uint64_t imm);
void qemu_plugin_register_vcpu_mem_inline(struct qemu_plugin_insn *insn, enum qemu_plugin_mem_rw rw,
					  enum qemu_plugin_op op, void *ptr, uint64_t imm);
const void *qemu_plugin_insn_data(const struct qemu_plugin_insn *insn);
#endif
QEMU_PLUGIN_EXPORT int qemu_plugin_version = TCG_INSNS_API;
/* --- end of the API --- */

/*
 * Whether the x86-64 instruction @b (@len bytes) is locked: an atomic
 * read-modify-write of memory (or a full barrier, `lock addl $0,(%rsp)`).
 * That is an instruction with a LOCK prefix; XCHG with a memory operand,
 * which is locked without one; or one of the instructions LOCK applies to,
 * with a memory operand, whose LOCK prefix a kernel on one CPU patched into
 * a DS segment override (alternatives_smp_unlock(), which the guest's single
 * vCPU triggers): a kernel on several CPUs executes it locked. In 64-bit
 * code a DS override does nothing else; the one other use of 0x3e, the
 * NOTRACK of an indirect call or jump (FF /2, /4), is not among them.
 */
static bool is_locked(const uint8_t *b, size_t len)
{
	bool lock = false, ds = false;
	size_t i = 0;
	uint8_t op, modrm;
	unsigned int reg;

	for (; i < len; i++) {
		switch (b[i]) {
		case 0xf0:
			lock = true;
			continue;
		case 0x3e:
			ds = true;
			continue;
		case 0xf2: case 0xf3: case 0x2e: case 0x36: case 0x26:
		case 0x64: case 0x65: case 0x66: case 0x67:
			continue;
		}
		break;
	}
	if (lock)
		return true;
	if (i < len && (b[i] & 0xf0) == 0x40)	/* REX */
		i++;
	if (i + 1 >= len)
		return false;
	op = b[i];
	if (op == 0x0f) {
		if (i + 2 >= len)
			return false;
		op = b[i + 1];
		modrm = b[i + 2];
		reg = (modrm >> 3) & 7;
		if (!ds || modrm >> 6 == 3)
			return false;
		/* BTS, BTR, BTC, CMPXCHG, XADD; BT* imm8; CMPXCHG8B/16B. */
		return op == 0xab || op == 0xb3 || op == 0xbb || op == 0xb0 || op == 0xb1 ||
		       op == 0xc0 || op == 0xc1 || (op == 0xba && reg >= 5) || (op == 0xc7 && reg == 1);
	}
	modrm = b[i + 1];
	reg = (modrm >> 3) & 7;
	if (modrm >> 6 == 3)
		return false;
	if (op == 0x86 || op == 0x87)	/* XCHG */
		return true;
	if (!ds)
		return false;
	/* ADD, OR, ADC, SBB, AND, SUB, XOR to memory (not CMP). */
	if (op < 0x38 && (op & 7) <= 1)
		return true;
	/* Their immediate forms (group 1, not CMP); NOT, NEG; INC, DEC. */
	return ((op == 0x80 || op == 0x81 || op == 0x83) && reg != 7) ||
	       ((op == 0xf6 || op == 0xf7) && (reg == 2 || reg == 3)) ||
	       ((op == 0xfe || op == 0xff) && reg <= 1);
}

#ifndef TCG_INSNS_TEST
/* x86-64: the kernel half of the address space. */
#define KERNEL_START 0xffff800000000000ull

static const uint8_t marker[] = { 0x0f, 0x1f, 0x84, 0x00, 0x62, 0x75, 0x73, 0x31 };

/*
 * One entry per (start, length) of a kernel translation block: a block can
 * be translated again with another length (icount cuts blocks short).
 */
struct block {
	uint64_t pc;
	uint64_t insns;
	uint64_t locked;	/* how many of them are locked (is_locked()) */
	uint64_t last;	/* its counter at the previous marker */
	uint64_t last_accesses;	/* its memory access counter at the previous marker */
	uint64_t last_serial;	/* its serial-part executions at the previous marker */
};

#define SLOTS (1u << 21)
static struct block *table;
/*
 * Executions so far of the block in the same slot of table, and the memory
 * accesses of those executions, added to by the translated code: plain
 * arrays, or (API 3) the one vCPU's entry of a scoreboard that holds all of
 * them (the executions first, then the accesses).
 */
#if TCG_INSNS_API >= 3
static struct qemu_plugin_scoreboard *score;
#define COUNTS ((uint64_t *)qemu_plugin_scoreboard_find(score, 0))
#define ACCESSES (COUNTS + SLOTS)
#else
static uint64_t *counts, *accesses;
#define COUNTS counts
#define ACCESSES accesses
#endif
static size_t used;
static FILE *out;
static unsigned long marks;

/*
 * The phase split (see the top of this file): the kernel instructions run so
 * far, added to by the translated code (TOTAL), and what of them went to
 * each phase up to the last phase change (phase_insns; the rest, since
 * phase_mark, goes to the current phase).
 */
#if TCG_INSNS_API >= 3
#define TOTAL (COUNTS[2 * SLOTS])
#define TOTAL_BLOCKS (COUNTS[2 * SLOTS + 1])
/* The current phase, which the serial executions' callbacks are conditional on. */
#define PHASE (COUNTS[2 * SLOTS + 2])
#define PHASE_OFFSET ((2 * SLOTS + 2) * sizeof(uint64_t))
#else
static uint64_t total, total_blocks;
#define TOTAL total
#define TOTAL_BLOCKS total_blocks
#endif
static uint64_t wake_pc, switch_pc;
static int phase;
static uint64_t phase_insns[2], phase_blocks[2], phase_mark, phase_mark_blocks, wakes, switches;

/* Executions of each block that began in the serial part (API 3). */
static uint64_t *serial;

static void phase_to(int p)
{
	uint64_t now = TOTAL, now_blocks = TOTAL_BLOCKS;

	phase_insns[phase] += now - phase_mark;
	phase_blocks[phase] += now_blocks - phase_mark_blocks;
	phase_mark = now;
	phase_mark_blocks = now_blocks;
	phase = p;
#if TCG_INSNS_API >= 3
	PHASE = (uint64_t)p;
#endif
}

#if TCG_INSNS_API >= 3
static void on_serial_block(unsigned int vcpu, void *udata)
{
	serial[(uintptr_t)udata]++;
}
#endif

static void on_wake(unsigned int vcpu, void *udata)
{
	wakes++;
	phase_to(1);
}

static void on_switch(unsigned int vcpu, void *udata)
{
	switches++;
	phase_to(0);
}

static struct block *lookup(uint64_t pc, uint64_t insns)
{
	size_t i = (size_t)((pc * 0x9e3779b97f4a7c15ull) >> 43);

	for (;; i++) {
		struct block *b = &table[i & (SLOTS - 1)];

		if (b->pc == pc && b->insns == insns)
			return b;
		if (!b->pc) {
			/* Full at three quarters: the probe sequences stay short. */
			if (++used > SLOTS / 4 * 3) {
				fprintf(stderr, "tcg-insns: more than %u translation blocks\n", SLOTS / 4 * 3);
				exit(1);
			}
			b->pc = pc;
			b->insns = insns;
			return b;
		}
	}
}

static void on_marker(unsigned int vcpu, void *udata)
{
	uint64_t *n = COUNTS, *a = ACCESSES;

	fprintf(out, "mark %lu\n", ++marks);
	if (wake_pc && switch_pc) {
		phase_to(phase);
		fprintf(out, "phase %llu %llu %llu %llu %llu %llu\n",
			(unsigned long long)phase_insns[0], (unsigned long long)phase_insns[1],
			(unsigned long long)wakes, (unsigned long long)switches,
			(unsigned long long)phase_blocks[0], (unsigned long long)phase_blocks[1]);
	}
	for (size_t i = 0; i < SLOTS; i++) {
		struct block *b = &table[i];

		if (n[i] != b->last) {
			fprintf(out, "%llx %llu %llu %llu %llu", (unsigned long long)b->pc,
				(unsigned long long)(n[i] - b->last), (unsigned long long)b->insns,
				(unsigned long long)b->locked, (unsigned long long)(a[i] - b->last_accesses));
			if (serial) {
				fprintf(out, " %llu", (unsigned long long)(serial[i] - b->last_serial));
				b->last_serial = serial[i];
			}
			fputc('\n', out);
			b->last = n[i];
			b->last_accesses = a[i];
		}
	}
	fflush(out);
}

/* The bytes of @insn (at most @len) in @buf; returns how many. */
static size_t insn_bytes(struct qemu_plugin_insn *insn, uint8_t *buf, size_t len)
{
#if TCG_INSNS_API >= 3
	return qemu_plugin_insn_data(insn, buf, len);
#else
	size_t n = qemu_plugin_insn_size(insn);

	if (n > len)
		n = len;
	memcpy(buf, qemu_plugin_insn_data(insn), n);
	return n;
#endif
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
	uint64_t pc = qemu_plugin_tb_vaddr(tb);
	size_t n = qemu_plugin_tb_n_insns(tb);

	if (pc >= KERNEL_START) {
		struct block *b = lookup(pc, n);
		size_t slot = (size_t)(b - table);
		uint64_t locked = 0;

#if TCG_INSNS_API >= 3
		qemu_plugin_u64 entry = { score, slot * sizeof(uint64_t) };
		qemu_plugin_u64 acc = { score, (SLOTS + slot) * sizeof(uint64_t) };
#endif
		for (size_t i = 0; i < n; i++) {
			struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
			uint8_t bytes[16];
			size_t len = insn_bytes(insn, bytes, sizeof(bytes));
			uint64_t va = qemu_plugin_insn_vaddr(insn);

			/*
			 * Each block's instructions were added at its start: a phase that
			 * changes within a block gets the block's rest too (a few).
			 */
			if (va && va == wake_pc)
				qemu_plugin_register_vcpu_insn_exec_cb(insn, on_wake, QEMU_PLUGIN_CB_NO_REGS, NULL);
			if (va && va == switch_pc)
				qemu_plugin_register_vcpu_insn_exec_cb(insn, on_switch, QEMU_PLUGIN_CB_NO_REGS, NULL);

			locked += is_locked(bytes, len);
			/* Called for each load and store the instruction makes, none if it makes none. */
#if TCG_INSNS_API >= 3
			qemu_plugin_register_vcpu_mem_inline_per_vcpu(insn, QEMU_PLUGIN_MEM_RW,
								      QEMU_PLUGIN_INLINE_ADD_U64, acc, 1);
#else
			qemu_plugin_register_vcpu_mem_inline(insn, QEMU_PLUGIN_MEM_RW, QEMU_PLUGIN_INLINE_ADD_U64,
							     &accesses[slot], 1);
#endif
		}
		/* A block translated again has the same instructions. */
		b->locked = locked;

#if TCG_INSNS_API >= 3
		qemu_plugin_register_vcpu_tb_exec_inline_per_vcpu(tb, QEMU_PLUGIN_INLINE_ADD_U64, entry, 1);
		if (wake_pc && switch_pc) {
			qemu_plugin_u64 all = { score, 2 * SLOTS * sizeof(uint64_t) };
			qemu_plugin_u64 blocks = { score, (2 * SLOTS + 1) * sizeof(uint64_t) };

			qemu_plugin_u64 now = { score, PHASE_OFFSET };

			qemu_plugin_register_vcpu_tb_exec_inline_per_vcpu(tb, QEMU_PLUGIN_INLINE_ADD_U64, all, n);
			qemu_plugin_register_vcpu_tb_exec_inline_per_vcpu(tb, QEMU_PLUGIN_INLINE_ADD_U64, blocks, 1);
			/* Counted only when the block begins in the serial part (phase 0). */
			qemu_plugin_register_vcpu_tb_exec_cond_cb(tb, on_serial_block, QEMU_PLUGIN_CB_NO_REGS,
								  QEMU_PLUGIN_COND_EQ, now, 0, (void *)(uintptr_t)slot);
		}
#else
		qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &counts[slot], 1);
		if (wake_pc && switch_pc) {
			qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &total, n);
			qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &total_blocks, 1);
		}
#endif
		return;
	}
	for (size_t i = 0; i < n; i++) {
		struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);

		if (qemu_plugin_insn_size(insn) != sizeof(marker))
			continue;
#if TCG_INSNS_API >= 3
		uint8_t bytes[sizeof(marker)];

		if (qemu_plugin_insn_data(insn, bytes, sizeof(bytes)) != sizeof(bytes) ||
		    memcmp(bytes, marker, sizeof(marker)))
			continue;
#else
		if (memcmp(qemu_plugin_insn_data(insn), marker, sizeof(marker)))
			continue;
#endif
		qemu_plugin_register_vcpu_insn_exec_cb(insn, on_marker, QEMU_PLUGIN_CB_NO_REGS, NULL);
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
		else if (!strncmp(argv[i], "wake=", 5))
			wake_pc = strtoull(argv[i] + 5, NULL, 16);
		else if (!strncmp(argv[i], "switch=", 7))
			switch_pc = strtoull(argv[i] + 7, NULL, 16);
	if (!path) {
		fprintf(stderr, "tcg-insns: usage: -plugin tcg-insns.so,out=FILE[,wake=ADDR,switch=ADDR]\n");
		return -1;
	}
	if (!info->system_emulation || info->system.max_vcpus != 1) {
		fprintf(stderr, "tcg-insns: needs system emulation with one vCPU (-smp 1)\n");
		return -1;
	}
	table = calloc(SLOTS, sizeof(*table));
#if TCG_INSNS_API >= 3
	/* One entry per vCPU, each all of the counters, the totals and the phase (zeroed by QEMU). */
	score = qemu_plugin_scoreboard_new((2 * SLOTS + 3) * sizeof(uint64_t));
	bool have_counts = score != NULL;
	if (wake_pc && switch_pc) {
		serial = calloc(SLOTS, sizeof(*serial));
		have_counts = have_counts && serial != NULL;
	}
#else
	counts = calloc(SLOTS, sizeof(*counts));
	accesses = calloc(SLOTS, sizeof(*accesses));
	bool have_counts = counts != NULL && accesses != NULL;
#endif
	out = fopen(path, "w");
	if (!table || !have_counts || !out) {
		perror("tcg-insns");
		return -1;
	}
	qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
	qemu_plugin_register_atexit_cb(id, on_qemu_exit, NULL);
	return 0;
}
#endif /* !TCG_INSNS_TEST */

#ifdef TCG_INSNS_TEST
/*
 * scripts/profile.sh builds this file once more with -DTCG_INSNS_TEST and
 * runs it before the guest: is_locked() on instructions as the compilers
 * and the kernel's alternatives lay them out.
 */
static const struct {
	const char *what;
	uint8_t len, locked, b[15];
} cases[] = {
	{ "lock cmpxchg %rdx,(%rdi)", 5, 1, { 0xf0, 0x48, 0x0f, 0xb1, 0x17 } },
	{ "the same, LOCK patched to DS", 5, 1, { 0x3e, 0x48, 0x0f, 0xb1, 0x17 } },
	{ "cmpxchg %rdx,(%rdi), no prefix", 4, 0, { 0x48, 0x0f, 0xb1, 0x17 } },
	{ "lock xadd %eax,(%rdi) after an operand-size prefix", 5, 1, { 0x66, 0xf0, 0x0f, 0xc1, 0x07 } },
	{ "lock addl $0,(%rsp) (smp_mb)", 5, 1, { 0xf0, 0x83, 0x04, 0x24, 0x00 } },
	{ "ds incl (%rdi) (patched LOCK)", 3, 1, { 0x3e, 0xff, 0x07 } },
	{ "notrack call *(%rdi)", 3, 0, { 0x3e, 0xff, 0x17 } },
	{ "xchg %eax,(%rdi)", 2, 1, { 0x87, 0x07 } },
	{ "xchg %eax,%eax", 2, 0, { 0x87, 0xc0 } },
	{ "ds add %rax,(%rdi) (patched LOCK)", 4, 1, { 0x3e, 0x48, 0x01, 0x07 } },
	{ "ds add (%rdi),%rax (to a register)", 4, 0, { 0x3e, 0x48, 0x03, 0x07 } },
	{ "ds cmpl $0,(%rdi)", 4, 0, { 0x3e, 0x83, 0x3f, 0x00 } },
	{ "ds btsl $3,(%rdi) (patched LOCK)", 5, 1, { 0x3e, 0x0f, 0xba, 0x2f, 0x03 } },
	{ "ds btl $3,(%rdi)", 5, 0, { 0x3e, 0x0f, 0xba, 0x27, 0x03 } },
	{ "ds decl %eax (a register)", 3, 0, { 0x3e, 0xff, 0xc8 } },
	{ "mov (%rdi),%rax", 3, 0, { 0x48, 0x8b, 0x07 } },
	{ "the profile marker (nopl)", 8, 0, { 0x0f, 0x1f, 0x84, 0x00, 0x62, 0x75, 0x73, 0x31 } },
	{ "a lone prefix", 1, 0, { 0x3e } },
};

int main(void)
{
	int bad = 0;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (is_locked(cases[i].b, cases[i].len) != cases[i].locked) {
			fprintf(stderr, "tcg-insns test: %s: %s, expected %s\n", cases[i].what,
				cases[i].locked ? "not locked" : "locked",
				cases[i].locked ? "locked" : "not locked");
			bad = 1;
		}
	}
	return bad;
}
#endif
