// SPDX-License-Identifier: GPL-2.0
/*
 * C glue for bus1's Rust abstractions (rust/): kernel APIs that are static
 * inline, or whose headers are not part of the 7.2 Rust bindings. Each
 * function is a thin, non-inline wrapper; the Rust side documents the
 * safety contract.
 */
#include <linux/kernel.h>

#include "helpers.h"

int rust_bus1_helper_probe(void)
{
	return 0;
}
