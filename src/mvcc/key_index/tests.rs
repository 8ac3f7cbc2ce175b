//! Data-driven key index traces. `testdata/key_index.txt` holds commands and, under each, its
//! expected output prefixed with `> `. Regenerate with `UPDATE_GOLDEN=1 cargo test` and review the
//! diff.

use std::collections::{BTreeSet, HashSet};

use super::*;

fn parse_rev(s: &str) -> Revision {
    let (main, sub) = s.split_once('.').unwrap_or((s, "0"));
    Revision::new(main.parse().expect("main revision"), sub.parse().expect("sub revision"))
}

fn render(ki: &KeyIndex) -> String {
    let last = ki.generations.len() - 1;
    let gens: Vec<String> = ki
        .generations
        .iter()
        .enumerate()
        .rev()
        .map(|(i, g)| {
            if g.is_empty() {
                return "{empty}".to_string();
            }
            let revs: Vec<String> = g
                .revs
                .iter()
                .enumerate()
                .map(|(j, r)| if i != last && j == g.revs.len() - 1 { format!("{r}(t)") } else { r.to_string() })
                .collect();
            format!("{{{}}} ver={} created={}", revs.join(", "), g.ver, g.created)
        })
        .collect();
    gens.join(" | ")
}

fn run(ki: &mut KeyIndex, line: &str) -> String {
    let mut words = line.split_whitespace();
    let cmd = words.next().expect("command");
    let arg = words.next().unwrap_or("0");
    match cmd {
        "new" => {
            *ki = KeyIndex::default();
            String::new()
        }
        "put" => {
            ki.put(parse_rev(arg));
            render(ki)
        }
        "tombstone" => {
            let ok = ki.tombstone(parse_rev(arg));
            format!("{} {}", if ok { "ok" } else { "not-found" }, render(ki))
        }
        "get" => match ki.get(arg.parse().unwrap()) {
            Some(f) => format!("modified={} created={} version={}", f.modified, f.created, f.version),
            None => "not-found".to_string(),
        },
        "since" => {
            let revs: Vec<String> = ki.since(arg.parse().unwrap()).iter().map(|r| r.to_string()).collect();
            format!("[{}]", revs.join(", "))
        }
        "compact" => {
            let mut keep = HashSet::new();
            ki.compact(arg.parse().unwrap(), &mut keep);
            let keep: BTreeSet<Revision> = keep.into_iter().collect();
            let keep: Vec<String> = keep.iter().map(|r| r.to_string()).collect();
            format!("keep=[{}] {}{}", keep.join(", "), render(ki), if ki.is_empty() { " (remove key)" } else { "" })
        }
        other => panic!("unknown command {other}"),
    }
}

#[test]
fn key_index_traces() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/src/mvcc/testdata/key_index.txt");
    let text = std::fs::read_to_string(path).expect("golden file");
    let mut out = String::new();
    let mut ki = KeyIndex::default();
    for line in text.lines().filter(|l| !l.starts_with("> ")) {
        out.push_str(line);
        out.push('\n');
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let result = run(&mut ki, trimmed);
        if !result.is_empty() {
            out.push_str(&format!("> {result}\n"));
        }
    }
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(path, &out).expect("write golden");
    }
    assert_eq!(text, out, "key index traces differ; rerun with UPDATE_GOLDEN=1 and review the diff");
}
