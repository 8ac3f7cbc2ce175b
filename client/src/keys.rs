//! Byte-key helpers shared by the layers: prefix ends and JSON records.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{corrupt, Result};

/// The smallest key greater than every key starting with `prefix` (etcd's `GetPrefixRangeEnd`);
/// `"\0"` (all keys) for an empty or all-0xff prefix.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("records serialize")
}

pub(crate) fn decode<T: DeserializeOwned>(key: &[u8], value: &[u8]) -> Result<T> {
    serde_json::from_slice(value).map_err(|e| corrupt(key, e))
}

/// Rejects a path component that would break the key layout (empty, or containing `/`).
pub(crate) fn component(what: &str, s: &str) -> Result<()> {
    if s.is_empty() || s.contains('/') {
        return Err(crate::Error::InvalidArgument(format!("{what} {s:?} must be non-empty and contain no '/'")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn prefix_end_increments_last_byte_below_ff() {
        assert_eq!(prefix_end(b"a/"), b"a0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
        assert_eq!(prefix_end(b""), vec![0]);
    }
}
