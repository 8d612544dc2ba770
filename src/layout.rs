//! Byte layout of a ring segment. Everything is addressed by offset from the start of the
//! mapping (never by pointer), so unrelated processes can map it anywhere.
//!
//! ```text
//! [header 4 KiB][cells cap*slot_size][leases lease_count*64][chunk table chunk_count*8][arena chunk_count*chunk_size]
//! ```

pub const MAGIC: u64 = u64::from_le_bytes(*b"PTMPROC\x01");
/// Bump whenever any offset or encoding below changes.
pub const LAYOUT_VERSION: u32 = 1;
pub const HEADER_LEN: usize = 4096;
pub const PAGE: usize = 4096;

// Header fields (byte offsets). Hot words each get their own cache line.
pub const H_MAGIC: usize = 0;
pub const H_VERSION: usize = 8;
pub const H_CAP: usize = 12;
pub const H_SLOT_SIZE: usize = 16;
pub const H_LEASES: usize = 20;
pub const H_CHUNK_SIZE: usize = 24;
pub const H_CHUNKS: usize = 28;
pub const H_TOTAL_LEN: usize = 32;
pub const H_CREATOR: usize = 40;
pub const H_ENQ: usize = 64;
pub const H_DEQ: usize = 128;
pub const H_NOT_EMPTY_EPOCH: usize = 192;
pub const H_NOT_EMPTY_WAITERS: usize = 196;
pub const H_NOT_FULL_EPOCH: usize = 256;
pub const H_NOT_FULL_WAITERS: usize = 260;
pub const H_FLAGS: usize = 320;
pub const H_ARENA_HINT: usize = 384;
/// Free words for the layers above (the engine's run-wide failure count for -x, the bridge's "ready" flag).
pub const H_USER: usize = 448;
pub const USER_WORDS: usize = 8;

pub const FLAG_CLOSED: u32 = 1;
pub const FLAG_ABORTED: u32 = 2;

// Cell: state word, then the payload's length and kind, then the inline payload.
pub const CELL_STATE: usize = 0;
pub const CELL_LEN: usize = 8;
pub const CELL_KIND: usize = 12;
pub const CELL_PAYLOAD: usize = 16;
pub const KIND_INLINE: u32 = 0;
pub const KIND_BLOB: u32 = 1;
pub const KIND_TOMBSTONE: u32 = 2;

// Lease entry: who holds it, what it runs since when, and a copy of the item it popped but
// has not acknowledged yet (so an item is never lost between "popped" and "recorded").
pub const LEASE_PID: usize = 0;
pub const LEASE_HELD_LEN: usize = 4;
pub const LEASE_KEY: usize = 8;
pub const LEASE_STARTED: usize = 16;
pub const LEASE_HELD_POS: usize = 24;
pub const LEASE_HELD_KIND: usize = 32;
pub const LEASE_HELD: usize = 40;
pub const HELD_NONE: u32 = u32::MAX;

/// Header at the start of a blob's first chunk: length, chunk count, and the ring position the
/// blob was published at (tells a live reference from a stale one during healing).
pub const RUN_HEADER: usize = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub cap: u32,
    pub slot_size: u32,
    pub leases: u32,
    pub chunk_size: u32,
    pub chunks: u32,
}

fn align(x: usize, to: usize) -> usize {
    x.div_ceil(to) * to
}

impl Geometry {
    pub fn validate(&self) -> Result<(), String> {
        if self.cap < 2 || !self.cap.is_power_of_two() {
            return Err(format!("capacity {} must be a power of two >= 2", self.cap));
        }
        if self.slot_size < 64 || !self.slot_size.is_multiple_of(64) {
            return Err(format!("slot size {} must be a multiple of 64", self.slot_size));
        }
        if self.leases == 0 {
            return Err("at least one lease slot is needed".into());
        }
        if self.chunk_size < 256 || !self.chunk_size.is_power_of_two() {
            return Err(format!("chunk size {} must be a power of two >= 256", self.chunk_size));
        }
        Ok(())
    }
    pub fn cells_off(&self) -> usize {
        HEADER_LEN
    }
    pub fn leases_off(&self) -> usize {
        align(self.cells_off() + self.cap as usize * self.slot_size as usize, 64)
    }
    pub fn table_off(&self) -> usize {
        align(self.leases_off() + self.leases as usize * self.lease_len(), 64)
    }
    pub fn arena_off(&self) -> usize {
        align(self.table_off() + self.chunks as usize * 8, PAGE)
    }
    pub fn total_len(&self) -> usize {
        align(self.arena_off() + self.chunks as usize * self.chunk_size as usize, PAGE)
    }
    /// A lease entry can hold any inline item, so it is as large as a cell's payload plus its header.
    pub fn lease_len(&self) -> usize {
        align(LEASE_HELD + self.inline_max(), 64)
    }
    pub fn inline_max(&self) -> usize {
        self.slot_size as usize - CELL_PAYLOAD
    }
}
