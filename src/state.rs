//! Encoding of a ring cell's state word.
//!
//! One 64-bit word holds both the cell's sequence number (40 bits) and the pid of the process
//! that has claimed it (24 bits; Linux pids are < 2^22). Claiming and releasing are therefore
//! single atomic operations, so a process killed at any instruction leaves a cell either
//! unclaimed or claimed *under its own pid*, which `heal(pid)` can find and undo. A plain
//! Vyukov ring keeps the claim in a shared position counter instead, and one dead consumer
//! then stalls the whole ring.

pub const OWNER_BITS: u32 = 24;
pub const OWNER_MASK: u64 = (1 << OWNER_BITS) - 1;
pub const SEQ_BITS: u32 = 40;
pub const SEQ_MASK: u64 = (1 << SEQ_BITS) - 1;

#[inline]
pub fn pack(seq: u64, owner: u32) -> u64 {
    ((seq & SEQ_MASK) << OWNER_BITS) | (owner as u64 & OWNER_MASK)
}

#[inline]
pub fn seq(state: u64) -> u64 {
    state >> OWNER_BITS
}

#[inline]
pub fn owner(state: u64) -> u32 {
    (state & OWNER_MASK) as u32
}

/// `seq - pos` in the 40-bit sequence space, as a signed distance.
#[inline]
pub fn rel(seq: u64, pos: u64) -> i64 {
    let d = seq.wrapping_sub(pos) & SEQ_MASK;
    if d >= 1 << (SEQ_BITS - 1) {
        d as i64 - (1i64 << SEQ_BITS)
    } else {
        d as i64
    }
}

/// A pid fits the owner field. Pid 0 means "nobody".
#[inline]
pub fn owner_id(pid: u32) -> u32 {
    debug_assert!(pid != 0 && (pid as u64) <= OWNER_MASK, "pid {pid} out of range");
    pid & OWNER_MASK as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_roundtrip() {
        let s = pack(123_456_789, 4_000_000);
        assert_eq!(seq(s), 123_456_789);
        assert_eq!(owner(s), 4_000_000);
    }

    #[test]
    fn rel_wraps() {
        assert_eq!(rel(5, 4), 1);
        assert_eq!(rel(4, 5), -1);
        assert_eq!(rel(0, SEQ_MASK), 1);
        assert_eq!(rel(SEQ_MASK, 0), -1);
        assert_eq!(rel(pack(7, 1) >> OWNER_BITS, 7), 0);
    }
}
