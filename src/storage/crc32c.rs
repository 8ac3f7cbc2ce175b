//! CRC-32C (Castagnoli), the checksum etcd's `Hash` and `HashKV` use (Go's
//! `crc32.MakeTable(crc32.Castagnoli)`): table-driven, reflected polynomial `0x82F63B78`.

const POLY: u32 = 0x82F6_3B78;

const TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ POLY } else { crc >> 1 };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

/// A running CRC-32C over everything written to it.
#[derive(Debug, Clone, Copy)]
pub struct Crc32c(u32);

impl Default for Crc32c {
    fn default() -> Self {
        Self(!0)
    }
}

impl Crc32c {
    pub fn update(&mut self, bytes: &[u8]) {
        let mut crc = self.0;
        for &b in bytes {
            crc = TABLE[((crc ^ b as u32) & 0xff) as usize] ^ (crc >> 8);
        }
        self.0 = crc;
    }

    pub fn sum(&self) -> u32 {
        !self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn castagnoli_check_values() {
        let mut c = Crc32c::default();
        c.update(b"123456789");
        assert_eq!(c.sum(), 0xE306_9283);
        let mut split = Crc32c::default();
        split.update(b"1234");
        split.update(b"56789");
        assert_eq!(split.sum(), 0xE306_9283);
        assert_eq!(Crc32c::default().sum(), 0);
    }
}
