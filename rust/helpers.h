/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Prototypes of bus1's C glue (rust/helpers.c). The Rust side declares the
 * same functions in the abstraction that uses them.
 */
#ifndef BUS1_RUST_HELPERS_H
#define BUS1_RUST_HELPERS_H

int rust_bus1_helper_probe(void);

#endif /* BUS1_RUST_HELPERS_H */
