//! Where the metadata layers keep their keys. Everything sits under one root prefix `R`
//! (default `/metastore/`); every table's data sits under one prefix so a cascading drop is a
//! single range delete:
//!
//! ```text
//! R settings                                  Settings (max_tables, default config)
//! R tables/<T>                                TableRecord (created_at, created_by)
//! R data/<T>/config                           ConfigVersion (current)
//! R data/<T>/config-history/<version:020>     ConfigVersion (every version, append-only)
//! R data/<T>/stats                            TableStats
//! R data/<T>/index/id/<id>/<day>/<path>       DataFile   (id -> day ordering)
//! R data/<T>/index/day/<day>/<id>/<path>      DataFile   (day -> id ordering, same txn)
//! R data/<T>/buffer/<id>/<day>/<segment>      Segment
//! R data/<T>/claim/<id>/<day>                 Claim, attached to the flusher's lease
//! ```
//!
//! Table names match `^[a-zA-Z][a-zA-Z0-9_]{0,63}$`; ids and days are non-empty and contain no
//! `/`; a path may contain `/` (it is the last component).

use crate::error::{Error, Result};

/// The key layout under one root prefix.
#[derive(Debug, Clone)]
pub struct Layout {
    root: String,
}

impl Default for Layout {
    fn default() -> Self {
        Layout::new(crate::DEFAULT_ROOT)
    }
}

impl Layout {
    /// A layout under `root`; a trailing `/` is added if missing.
    pub fn new(root: &str) -> Layout {
        let mut root = root.to_string();
        if !root.ends_with('/') {
            root.push('/');
        }
        Layout { root }
    }

    pub fn root(&self) -> &str {
        &self.root
    }

    pub fn settings(&self) -> String {
        format!("{}settings", self.root)
    }

    pub fn tables(&self) -> String {
        format!("{}tables/", self.root)
    }

    pub fn table(&self, t: &str) -> String {
        format!("{}tables/{t}", self.root)
    }

    pub fn data(&self, t: &str) -> String {
        format!("{}data/{t}/", self.root)
    }

    pub fn config(&self, t: &str) -> String {
        format!("{}data/{t}/config", self.root)
    }

    pub fn config_history(&self, t: &str) -> String {
        format!("{}data/{t}/config-history/", self.root)
    }

    pub fn config_version(&self, t: &str, v: u64) -> String {
        format!("{}data/{t}/config-history/{v:020}", self.root)
    }

    pub fn stats(&self, t: &str) -> String {
        format!("{}data/{t}/stats", self.root)
    }

    /// `…/index/id/` followed by `<id>/<day>/<path>`.
    pub fn index_by_id(&self, t: &str) -> String {
        format!("{}data/{t}/index/id/", self.root)
    }

    /// `…/index/day/` followed by `<day>/<id>/<path>`.
    pub fn index_by_day(&self, t: &str) -> String {
        format!("{}data/{t}/index/day/", self.root)
    }

    pub fn index(&self, t: &str) -> String {
        format!("{}data/{t}/index/", self.root)
    }

    pub fn buffers(&self, t: &str) -> String {
        format!("{}data/{t}/buffer/", self.root)
    }

    pub fn buffer(&self, t: &str, id: &str, day: &str) -> String {
        format!("{}data/{t}/buffer/{id}/{day}/", self.root)
    }

    pub fn claims(&self, t: &str) -> String {
        format!("{}data/{t}/claim/", self.root)
    }

    pub fn claim(&self, t: &str, id: &str, day: &str) -> String {
        format!("{}data/{t}/claim/{id}/{day}", self.root)
    }
}

/// Checks a table name against `^[a-zA-Z][a-zA-Z0-9_]{0,63}$`.
pub fn validate_table_name(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && name.len() <= 64
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!("table name {name:?} must match ^[a-zA-Z][a-zA-Z0-9_]{{0,63}}$")))
    }
}

/// Glob match with `*` (any run) and `?` (one character), for listing tables by pattern.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    fn go(p: &[char], n: &[char]) -> bool {
        match p.split_first() {
            None => n.is_empty(),
            Some(('*', rest)) => (0..=n.len()).any(|i| go(rest, &n[i..])),
            Some(('?', rest)) => !n.is_empty() && go(rest, &n[1..]),
            Some((c, rest)) => n.first() == Some(c) && go(rest, &n[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    go(&p, &n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names() {
        for ok in ["a", "events", "T_1", &format!("a{}", "b".repeat(63))] {
            assert!(validate_table_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "1a", "_a", "a-b", "a/b", "é", &format!("a{}", "b".repeat(64))] {
            assert!(validate_table_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn globs() {
        assert!(glob_match("ev*", "events"));
        assert!(glob_match("*", ""));
        assert!(glob_match("e?ents", "events"));
        assert!(!glob_match("ev", "events"));
        assert!(glob_match("*_log", "app_log"));
        assert!(!glob_match("*_log", "app_logs"));
    }
}
