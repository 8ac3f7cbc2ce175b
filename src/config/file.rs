//! `--config-file`: etcd 3.4's YAML configuration (the keys of `etcd.conf.yml.sample`, read as
//! etcd's `embed.configYAML` reads them), turned into the same flags the command line gives, so
//! the flag table in `config.rs` stays the one source of names and defaults.
//!
//! As in etcd: a key named like a flag sets that flag; TLS settings come only from the nested
//! `client-transport-security` and `peer-transport-security` blocks (five keys each); a null value
//! (`data-dir:`) keeps the default; unknown keys are ignored; a value of the wrong YAML type is
//! refused with Go's unmarshalling error. Durations are what Go's `time.Duration` takes from
//! JSON: integer nanoseconds (a Go duration string such as `100ms` is also taken, which etcd
//! refuses).

use serde_yaml_ng::Value;

use super::{Kind, FLAGS};

/// Flags etcd 3.4's file does not read at the top level: the TLS ones live in the nested blocks,
/// the rest have no key in `embed.configYAML`.
const NOT_IN_FILE: &[&str] = &[
    "config-file",
    "cert-file",
    "key-file",
    "client-cert-auth",
    "trusted-ca-file",
    "auto-tls",
    "peer-cert-file",
    "peer-key-file",
    "peer-client-cert-auth",
    "peer-trusted-ca-file",
    "peer-auto-tls",
    "client-crl-file",
    "client-cert-allowed-hostname",
    "peer-crl-file",
    "peer-cert-allowed-cn",
    "peer-cert-allowed-hostname",
    "experimental-peer-skip-client-san-verification",
];

/// The keys of etcd's `securityConfig`, each block's flags: (key, client flag, peer flag).
const SECURITY_KEYS: &[(&str, &str, &str)] = &[
    ("cert-file", "cert-file", "peer-cert-file"),
    ("key-file", "key-file", "peer-key-file"),
    ("client-cert-auth", "client-cert-auth", "peer-client-cert-auth"),
    ("trusted-ca-file", "trusted-ca-file", "peer-trusted-ca-file"),
    ("auto-tls", "auto-tls", "peer-auto-tls"),
];

/// The flags whose file value is a `time.Duration` (JSON: integer nanoseconds).
const DURATIONS: &[&str] = &[
    "backend-batch-interval",
    "grpc-keepalive-min-time",
    "grpc-keepalive-interval",
    "grpc-keepalive-timeout",
    "experimental-corrupt-check-time",
    "experimental-watch-progress-notify-interval",
    "experimental-warning-apply-duration",
];

/// The flags whose file value is a list of strings.
const LISTS: &[&str] = &["cipher-suites", "log-outputs"];

/// The Go type a key unmarshals into, as etcd's error names it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum GoType {
    String,
    Number,
    Bool,
    Duration,
    List,
}

impl GoType {
    fn of(name: &str, kind: Kind, default: &str) -> Self {
        if kind == Kind::Bool {
            GoType::Bool
        } else if DURATIONS.contains(&name) {
            GoType::Duration
        } else if LISTS.contains(&name) {
            GoType::List
        } else if name != "auto-compaction-retention" && default.parse::<i64>().is_ok() {
            GoType::Number
        } else {
            GoType::String
        }
    }

    fn go_name(self) -> &'static str {
        match self {
            GoType::String => "string",
            GoType::Number => "uint64",
            GoType::Bool => "bool",
            GoType::Duration => "time.Duration",
            GoType::List => "[]string",
        }
    }
}

/// The command-line arguments (`--flag=value`, after the program name) that the YAML text
/// `yaml` stands for; the error is etcd's wording.
pub fn to_args(yaml: &str) -> Result<Vec<String>, String> {
    let doc: Value = serde_yaml_ng::from_str(yaml).map_err(|e| format!("error converting YAML to JSON: yaml: {e}"))?;
    let map = match doc {
        Value::Null => return Ok(Vec::new()),
        Value::Mapping(m) => m,
        other => {
            return Err(format!(
                "error unmarshaling JSON: while decoding JSON: json: cannot unmarshal {} into Go value of type embed.configYAML",
                json_kind(&other)
            ))
        }
    };
    let mut args = Vec::new();
    for (key, value) in &map {
        let Some(key) = key.as_str() else { continue };
        match key {
            "client-transport-security" | "peer-transport-security" => {
                let peer = key.starts_with("peer");
                let block = match value {
                    Value::Null => continue,
                    Value::Mapping(m) => m,
                    other => return Err(mismatch(other, key, "embed.securityConfig")),
                };
                for (inner, value) in block {
                    let Some(inner) = inner.as_str() else { continue };
                    if let Some((_, client_flag, peer_flag)) = SECURITY_KEYS.iter().find(|(k, _, _)| *k == inner) {
                        push(&mut args, if peer { peer_flag } else { client_flag }, &format!("{key}.{inner}"), value)?;
                    }
                }
            }
            _ if NOT_IN_FILE.contains(&key) => {}
            _ if FLAGS.iter().any(|(name, _, _, _)| *name == key) => push(&mut args, key, key, value)?,
            _ => {} // etcd ignores keys it does not know
        }
    }
    Ok(args)
}

/// Appends `--flag=value` for one file entry (`field` names it in errors); null keeps the default.
fn push(args: &mut Vec<String>, flag: &str, field: &str, value: &Value) -> Result<(), String> {
    let (_, kind, default, _) = FLAGS.iter().find(|(name, _, _, _)| *name == flag).expect("a flag of the table");
    let ty = GoType::of(flag, *kind, default);
    let text = match (ty, value) {
        (_, Value::Null) => return Ok(()),
        (GoType::String, Value::String(s)) => s.clone(),
        (GoType::Bool, Value::Bool(b)) => b.to_string(),
        (GoType::Number, Value::Number(n)) if n.is_i64() || n.is_u64() => n.to_string(),
        (GoType::Duration, Value::Number(n)) if n.is_u64() || n.is_i64() => {
            let nanos = n.as_i64().unwrap_or(i64::MAX).max(0) as u64;
            crate::go_duration::format(std::time::Duration::from_nanos(nanos))
        }
        (GoType::Duration, Value::String(s)) if crate::go_duration::parse(s).is_some() => s.clone(),
        (GoType::List, Value::Sequence(items)) => {
            let mut parts = Vec::new();
            for item in items {
                match item {
                    Value::String(s) => parts.push(s.clone()),
                    other => return Err(mismatch(other, field, "string")),
                }
            }
            parts.join(",")
        }
        (ty, other) => return Err(mismatch(other, field, ty.go_name())),
    };
    args.push(format!("--{flag}={text}"));
    Ok(())
}

fn mismatch(value: &Value, field: &str, go_type: &str) -> String {
    format!(
        "error unmarshaling JSON: while decoding JSON: json: cannot unmarshal {} into Go struct field configYAML.{field} of type {go_type}",
        json_kind(value)
    )
}

/// How Go's JSON decoder names the kind of a value it could not take.
fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Sequence(_) => "array",
        Value::Mapping(_) | Value::Tagged(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_become_flags_and_tls_comes_from_the_blocks() {
        let yaml = "name: 'n1'\ndata-dir:\nsnapshot-count: 10000\nstrict-reconfig-check: false\n\
                    cert-file: /ignored\ncipher-suites: [A, B]\nunknown-key: 1\n\
                    grpc-keepalive-interval: 3000000000\n\
                    grpc-keepalive-min-time: 2000000000\n\
                    client-transport-security:\n  cert-file: c.pem\n  client-cert-auth: true\n\
                    peer-transport-security:\n  auto-tls: true\n  trusted-ca-file:\n";
        let args = to_args(yaml).expect("valid file");
        assert_eq!(
            args,
            [
                "--name=n1",
                "--snapshot-count=10000",
                "--strict-reconfig-check=false",
                "--cipher-suites=A,B",
                "--grpc-keepalive-interval=3s",
                "--grpc-keepalive-min-time=2s",
                "--cert-file=c.pem",
                "--client-cert-auth=true",
                "--peer-auto-tls=true",
            ]
        );
    }

    #[test]
    fn wrong_types_and_bad_yaml_get_etcds_errors() {
        let e = to_args("snapshot-count: abc\n").expect_err("a string for a number");
        assert_eq!(
            e,
            "error unmarshaling JSON: while decoding JSON: json: cannot unmarshal string into Go struct field configYAML.snapshot-count of type uint64"
        );
        assert!(to_args("name: [x\n").expect_err("bad yaml").starts_with("error converting YAML to JSON: yaml: "));
        assert!(to_args("name: 5\n").is_err());
        assert!(to_args("just a string").is_err());
        assert_eq!(to_args("").expect("empty file"), Vec::<String>::new());
    }
}
