//! Failpoints for fault tests, in the spirit of etcd's gofail: named places in the code that fail
//! on purpose a given number of times ([`hit`]) or from the (N+1)th call on ([`after`]), armed only by the `METASTORE_FAILPOINTS` environment
//! variable (`name=count,name2=count`) at start. Unarmed, a failpoint costs one map lookup in an
//! empty map; production never sets the variable.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

fn armed() -> &'static Mutex<HashMap<String, u64>> {
    static ARMED: OnceLock<Mutex<HashMap<String, u64>>> = OnceLock::new();
    ARMED.get_or_init(|| Mutex::new(parse(&std::env::var("METASTORE_FAILPOINTS").unwrap_or_default())))
}

fn parse(spec: &str) -> HashMap<String, u64> {
    spec.split(',')
        .filter_map(|item| {
            let (name, count) = item.split_once('=')?;
            Some((name.trim().to_string(), count.trim().parse().ok()?))
        })
        .collect()
}

/// Whether failpoint `name` fires now (each firing uses up one of its armed count).
pub fn hit(name: &str) -> bool {
    let mut armed = armed().lock().expect("failpoints lock");
    match armed.get_mut(name) {
        Some(left) if *left > 0 => {
            *left -= 1;
            tracing::warn!(failpoint = name, left = *left, "failpoint fired");
            true
        }
        _ => false,
    }
}

/// Whether failpoint `name`, armed with N, has been passed N times already: the first N calls
/// pass, every later one fires (a fault that, once there, stays — a broken disk).
pub fn after(name: &str) -> bool {
    let mut armed = armed().lock().expect("failpoints lock");
    match armed.get_mut(name) {
        Some(left) if *left > 0 => {
            *left -= 1;
            false
        }
        Some(_) => {
            tracing::warn!(failpoint = name, "failpoint fired");
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_counts() {
        let fp = parse("a=2, b=1,bad,c=x");
        assert_eq!(fp.get("a"), Some(&2));
        assert_eq!(fp.get("b"), Some(&1));
        assert_eq!(fp.len(), 2);
    }
}
