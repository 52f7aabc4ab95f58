// SPDX-License-Identifier: GPL-2.0

//! Allocation flags that [`kernel::alloc::flags`] does not define in Linux 7.2.
//!
//! They are meant to be or'd with the flags defined there, for example
//! `GFP_KERNEL_ACCOUNT | __GFP_NORETRY`.
//!
//! C header: [`include/linux/gfp_types.h`](srctree/include/linux/gfp_types.h).

use kernel::{
    alloc::Flags,
    bindings,
    prelude::*, //
};

/// Returns the flags whose raw value is `bits`.
///
/// `kernel::alloc::Flags` can only be built inside the `kernel` crate; this is what its own
/// `Flags(bits)` does.
const fn from_raw(bits: u32) -> Flags {
    // SAFETY: `Flags` is a struct whose only field is a `u32`, and `transmute` checks at compile
    // time that both types have the same size, so that field occupies all four bytes of the
    // struct and the result is `Flags(bits)`. `Flags` has no invariant on its bits: its `!`
    // operator already produces every bit pattern.
    unsafe { core::mem::transmute::<u32, Flags>(bits) }
}

/// The flag with bit `bit` set, `bit` being one of the `___GFP_*_BIT` values.
const fn bit(bit: bindings::_bindgen_ty_5) -> Flags {
    from_raw(1u32 << bit)
}

/// The allocation is accounted to the memory cgroup: the current task's, or the one made active
/// with [`MemCgroup::charge_to`](super::memcg::MemCgroup::charge_to).
///
/// [`kernel::alloc::flags::GFP_KERNEL_ACCOUNT`] is `GFP_KERNEL | __GFP_ACCOUNT`.
pub(crate) const __GFP_ACCOUNT: Flags = bit(bindings::___GFP_ACCOUNT_BIT);

/// The allocator tries only light direct reclaim and gives up instead of retrying; it never
/// invokes the OOM killer. This holds for the memory cgroup charge of an accounted allocation
/// as well: a cgroup at its limit is reclaimed once, and then the allocation fails.
///
/// For allocations made on behalf of someone else, whose memory cgroup must not lose tasks to
/// the OOM killer because of them. The caller has to handle failure.
pub(crate) const __GFP_NORETRY: Flags = bit(bindings::___GFP_NORETRY_BIT);

#[kunit_tests(bus1_gfp)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_the_kernel_bits() {
        // `GFP_KERNEL_ACCOUNT` is `GFP_KERNEL | __GFP_ACCOUNT` in `gfp_types.h`.
        assert!(GFP_KERNEL | __GFP_ACCOUNT == GFP_KERNEL_ACCOUNT);
        assert!(!GFP_KERNEL.contains(__GFP_ACCOUNT));
        assert!(!GFP_KERNEL_ACCOUNT.contains(__GFP_NORETRY));
        assert!((GFP_KERNEL | __GFP_NORETRY).contains(__GFP_NORETRY));
        assert!(__GFP_NORETRY & __GFP_ACCOUNT != __GFP_NORETRY);
    }
}
