//! Key and value generation.
//!
//! A key is `prefix` followed by its index in decimal, zero-padded so the whole key is
//! `key_size` bytes (longer only when the index does not fit). Readable keys keep prefix
//! ranges meaningful: with 16-byte keys and prefix `s/`, `s/00000000123` covers exactly the
//! 1,000 keys 123000..=123999. Values are random bytes drawn once per run and reused by every
//! request (as etcd's tool does), so neither server gains from compressing them.

use rand::{Rng, SeedableRng};

use crate::cli::KeyArgs;

/// `prefix` + zero-padded `index`, `size` bytes long when the index fits.
pub fn key(prefix: &str, index: u64, size: usize) -> Vec<u8> {
    let width = size.saturating_sub(prefix.len());
    format!("{prefix}{index:0width$}").into_bytes()
}

/// `len` random bytes, the same for the same seed.
pub fn value(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..len).map(|_| rng.gen()).collect()
}

/// Chooses the key index of each request: `seq % space` in sequential mode, uniform otherwise.
#[derive(Clone, Debug)]
pub struct KeyPicker {
    pub prefix: String,
    pub size: usize,
    pub space: u64,
    pub sequential: bool,
}

impl KeyPicker {
    pub fn new(args: &KeyArgs) -> Self {
        Self {
            prefix: args.key_prefix.clone(),
            size: args.key_size,
            space: args.key_space_size.max(1),
            sequential: args.sequential_keys,
        }
    }

    pub fn index(&self, seq: u64, rng: &mut impl Rng) -> u64 {
        if self.sequential {
            seq % self.space
        } else {
            rng.gen_range(0..self.space)
        }
    }

    pub fn pick(&self, seq: u64, rng: &mut impl Rng) -> Vec<u8> {
        key(&self.prefix, self.index(seq, rng), self.size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_padded_to_size() {
        assert_eq!(key("", 42, 8), b"00000042");
        assert_eq!(key("s/", 123_456, 16), b"s/00000000123456");
        assert_eq!(key("s/", 7, 16).len(), 16);
        // Too small a size: the key grows instead of being cut.
        assert_eq!(key("prefix/", 12345, 4), b"prefix/12345");
    }

    #[test]
    fn a_prefix_of_the_padded_form_covers_a_block_of_keys() {
        let p = b"s/00000000123";
        let covered = (0..1_000_000u64).filter(|&i| key("s/", i, 16).starts_with(p)).count();
        assert_eq!(covered, 1000);
    }

    #[test]
    fn values_are_deterministic_per_seed() {
        assert_eq!(value(256, 1), value(256, 1));
        assert_ne!(value(256, 1), value(256, 2));
        assert_eq!(value(0, 1).len(), 0);
    }

    #[test]
    fn picker_modes() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let seq = KeyPicker { prefix: "k".into(), size: 4, space: 3, sequential: true };
        let got: Vec<u64> = (0..5).map(|s| seq.index(s, &mut rng)).collect();
        assert_eq!(got, vec![0, 1, 2, 0, 1]);
        assert_eq!(seq.pick(4, &mut rng), b"k001");
        let random = KeyPicker { sequential: false, space: 10, ..seq };
        assert!((0..1000).all(|s| random.index(s, &mut rng) < 10));
    }
}
