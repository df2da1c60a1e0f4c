//! Units of the thin pool, so a byte count never mixes with a sector count:
//! sizes the kernel takes in 512-byte sectors are [`Sectors`], thin device
//! ids (24 bits) are [`ThinDevId`], both from the devicemapper crate and
//! stored as plain numbers. Byte counts stay `u64`s named `*size`/`*bytes`.

pub use devicemapper::{Sectors, ThinDevId};

use crate::error::{DmError, Result};

/// Bytes in a sector.
const SECTOR: u64 = 512;

/// The whole sectors in `bytes` (rounded down).
pub fn sectors(bytes: u64) -> Sectors {
    Sectors(bytes / SECTOR)
}

/// The sectors that hold `bytes` (rounded up).
pub fn sectors_ceil(bytes: u64) -> Sectors {
    Sectors(bytes.div_ceil(SECTOR))
}

/// The bytes in `sectors`.
pub fn bytes(sectors: Sectors) -> u64 {
    sectors.0.saturating_mul(SECTOR)
}

/// Thin id `value`, or [`DmError::IdRange`] when it needs more than 24 bits.
pub fn thin_dev_id(value: u64) -> Result<ThinDevId> {
    ThinDevId::new_u64(value).map_err(|_| DmError::IdRange(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_and_sectors_convert_both_ways() {
        assert_eq!(sectors(1023), Sectors(1));
        assert_eq!(sectors_ceil(1023), Sectors(2));
        assert_eq!(sectors_ceil(1024), Sectors(2));
        assert_eq!(bytes(Sectors(3)), 1536);
        assert_eq!(bytes(Sectors(u64::MAX)), u64::MAX);
    }

    #[test]
    fn thin_ids_are_24_bits() {
        assert_eq!(
            u32::from(thin_dev_id((1 << 24) - 1).unwrap()),
            (1 << 24) - 1
        );
        assert!(matches!(thin_dev_id(1 << 24), Err(DmError::IdRange(v)) if v == 1 << 24));
    }
}
