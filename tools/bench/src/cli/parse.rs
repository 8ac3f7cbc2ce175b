//! Parsers for option values that clap has no type for: durations (`1.5s`, `500ms`), the
//! k8s request mix (`get=20,list=10,put-lease=20,cas=50`) and credentials (`NAME:PASSWORD`).

use std::time::Duration;

/// One kind of request in the Kubernetes-like mix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum K8sOp {
    Get,
    List,
    PutLease,
    Cas,
}

impl K8sOp {
    pub fn name(self) -> &'static str {
        match self {
            K8sOp::Get => "get",
            K8sOp::List => "list",
            K8sOp::PutLease => "put-lease",
            K8sOp::Cas => "cas",
        }
    }
}

/// Weighted request mix, e.g. `get=20,list=10,put-lease=20,cas=50`.
#[derive(Clone, Debug, PartialEq)]
pub struct Mix(pub Vec<(K8sOp, u32)>);

impl Mix {
    /// Picks an op for a uniform number `r` in `[0, total weight)`.
    pub fn pick(&self, mut r: u32) -> K8sOp {
        for &(op, w) in &self.0 {
            if r < w {
                return op;
            }
            r -= w;
        }
        self.0.last().expect("mix is never empty").0
    }

    pub fn total_weight(&self) -> u32 {
        self.0.iter().map(|(_, w)| w).sum()
    }
}

pub fn parse_mix(s: &str) -> Result<Mix, String> {
    let mut ops = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, weight) = part.split_once('=').ok_or_else(|| format!("`{part}`: expected name=weight"))?;
        let op = match name.trim() {
            "get" => K8sOp::Get,
            "list" => K8sOp::List,
            "put-lease" => K8sOp::PutLease,
            "cas" => K8sOp::Cas,
            other => return Err(format!("unknown op `{other}` (get, list, put-lease, cas)")),
        };
        let weight: u32 = weight.trim().parse().map_err(|_| format!("`{part}`: weight must be an integer"))?;
        if ops.iter().any(|(o, _)| *o == op) {
            return Err(format!("`{name}` given twice"));
        }
        if weight > 0 {
            ops.push((op, weight));
        }
    }
    if ops.is_empty() {
        return Err("the mix needs at least one op with a positive weight".into());
    }
    Ok(Mix(ops))
}

/// A user's name and password (`--user NAME:PASSWORD`, etcdctl's form). Debug output hides the
/// password, so a report or a panic never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub password: String,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User").field("name", &self.name).finish_non_exhaustive()
    }
}

/// Splits `NAME:PASSWORD` at the first colon (a password may contain colons, a name may not).
pub fn parse_user(s: &str) -> Result<User, String> {
    match s.split_once(':') {
        Some((name, password)) if !name.is_empty() => Ok(User { name: name.into(), password: password.into() }),
        _ => Err("expected NAME:PASSWORD".into()),
    }
}

/// Parses `1.5s`, `500ms`, `2m`, `100us` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("invalid duration `{s}`"))?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1e3,
        "us" | "µs" => n / 1e6,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        other => return Err(format!("invalid duration unit `{other}` (us, ms, s, m, h)")),
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("invalid duration `{s}`"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("100us").unwrap(), Duration::from_micros(100));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn users() {
        let u = parse_user("bench:pw:with:colons").unwrap();
        assert_eq!((u.name.as_str(), u.password.as_str()), ("bench", "pw:with:colons"));
        assert_eq!(parse_user("root:").unwrap().password, "");
        assert!(parse_user("nopassword").is_err());
        assert!(parse_user(":pw").is_err());
        assert!(!format!("{u:?}").contains("colons"), "Debug hides the password");
    }

    #[test]
    fn mixes() {
        let m = parse_mix("get=1, cas=3").unwrap();
        assert_eq!(m.total_weight(), 4);
        assert_eq!(m.pick(0), K8sOp::Get);
        assert_eq!(m.pick(1), K8sOp::Cas);
        assert_eq!(m.pick(3), K8sOp::Cas);
        assert_eq!(parse_mix("list=0,get=2").unwrap().0, vec![(K8sOp::Get, 2)]);
        assert!(parse_mix("get=1,get=2").is_err());
        assert!(parse_mix("fly=1").is_err());
        assert!(parse_mix("get").is_err());
        assert!(parse_mix("get=0").is_err());
    }
}
