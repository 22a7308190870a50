//! The top-level modules of `src/` are layers: each file's `crate::` references point down,
//! never round in a circle (issue #32). This reads every file under `src/`, attributes it
//! to its top-level module (`src/foo.rs` and `src/foo/**` are `foo`; `lib.rs` and `main.rs`
//! are nobody's), collects the `crate::NAME` it names — `use crate::{a, b::{c, d}}` names
//! `a` and `b` — and fails on a circle between modules, printing it with a `file:line` for
//! each of its edges. Comment lines do not count. std only.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// An edge `from -> to`, with one place that makes it.
type Edges = BTreeMap<(String, String), String>;

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level module a file under `src/` belongs to; `None` for the crate root files.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).unwrap();
    let mut parts = rel.components().map(|c| c.as_os_str().to_string_lossy());
    let first = parts.next()?.into_owned();
    if parts.next().is_some() {
        return Some(first);
    }
    match first.strip_suffix(".rs")? {
        "lib" | "main" => None,
        name => Some(name.to_string()),
    }
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// The top-level names after each `crate::` in `text`, with their 1-based line. A group
/// (`crate::{a, b::c, d::{e, f}}`, over several lines too) names the first segment of each
/// of its items. Lines whose first non-blank characters are `//` are skipped.
fn crate_refs(text: &str) -> Vec<(String, usize)> {
    // Comment lines blanked, so line numbers still count every line.
    let code: String = text
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("//") {
                ""
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let b = code.as_bytes();
    let line_at = |i: usize| 1 + b[..i].iter().filter(|&&c| c == b'\n').count();
    let mut refs = Vec::new();
    let mut from = 0;
    while let Some(found) = code[from..].find("crate::") {
        let start = from + found;
        from = start + "crate::".len();
        // `$crate::` and `foo_crate::` are not ours.
        if start > 0 && (is_ident(b[start - 1]) || b[start - 1] == b'$') {
            continue;
        }
        let mut i = from;
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if b.get(i) == Some(&b'{') {
            group(b, i, &line_at, &mut refs);
        } else {
            let end = (i..b.len()).find(|&j| !is_ident(b[j])).unwrap_or(b.len());
            if end > i {
                refs.push((code[i..end].to_string(), line_at(i)));
            }
        }
    }
    refs
}

/// The first segment of each item of the group whose `{` is at `open`.
fn group(b: &[u8], open: usize, line_at: &dyn Fn(usize) -> usize, refs: &mut Vec<(String, usize)>) {
    let (mut depth, mut item_start) = (0usize, true);
    let mut i = open;
    while i < b.len() {
        match b[i] {
            b'{' => {
                depth += 1;
                item_start = depth == 1;
            }
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return;
                }
            }
            b',' if depth == 1 => item_start = true,
            c if item_start && is_ident(c) => {
                let end = (i..b.len()).find(|&j| !is_ident(b[j])).unwrap_or(b.len());
                let name = String::from_utf8_lossy(&b[i..end]).into_owned();
                if name != "self" {
                    refs.push((name, line_at(i)));
                }
                item_start = false;
                i = end;
                continue;
            }
            c if !c.is_ascii_whitespace() => item_start = false,
            _ => {}
        }
        i += 1;
    }
}

/// The graph between top-level modules: every module with a file, and each edge with the
/// first place (in file order) that makes it.
fn graph(root: &Path) -> (BTreeSet<String>, Edges) {
    let src = root.join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut modules = BTreeSet::new();
    let mut edges = Edges::new();
    for file in files {
        let Some(from) = module_of(&src, &file) else {
            continue;
        };
        modules.insert(from.clone());
        let text = std::fs::read_to_string(&file).unwrap();
        let shown = file.strip_prefix(root).unwrap().display().to_string();
        for (to, line) in crate_refs(&text) {
            if to != from {
                edges
                    .entry((from.clone(), to))
                    .or_insert_with(|| format!("{shown}:{line}"));
            }
        }
    }
    (modules, edges)
}

/// Each strongly connected part of the graph with more than one module: its modules, and
/// its shortest circle through the first of them (which is repeated at the end).
fn circles(modules: &BTreeSet<String>, edges: &Edges) -> Vec<(Vec<String>, Vec<String>)> {
    let next = |m: &str| -> Vec<&String> {
        edges
            .keys()
            .filter(|(f, _)| f == m)
            .map(|(_, t)| t)
            .collect()
    };
    let reach = |from: &str| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.to_string()];
        while let Some(m) = todo.pop() {
            for t in next(&m) {
                if seen.insert(t.clone()) {
                    todo.push(t.clone());
                }
            }
        }
        seen
    };
    let reached: BTreeMap<&String, BTreeSet<String>> =
        modules.iter().map(|m| (m, reach(m))).collect();
    let mut done = BTreeSet::new();
    let mut found = Vec::new();
    for m in modules {
        if done.contains(m) || !reached[m].contains(m) {
            continue;
        }
        // m's part: every module m reaches that reaches m back.
        let part: BTreeSet<&String> = reached[m]
            .iter()
            .filter(|o| reached.get(o).is_some_and(|r| r.contains(m)))
            .collect();
        done.extend(part.iter().map(|s| s.to_string()));
        // The shortest way round from m, breadth first within the part.
        let mut came_from: BTreeMap<String, String> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([m.clone()]);
        'search: while let Some(at) = queue.pop_front() {
            for t in next(&at) {
                if !part.contains(t) {
                    continue;
                }
                if t == m {
                    let mut circle = vec![m.clone()];
                    let mut back = at.clone();
                    while back != *m {
                        circle.push(back.clone());
                        back = came_from[&back].clone();
                    }
                    circle.push(m.clone());
                    circle.reverse();
                    found.push((part.iter().map(|s| s.to_string()).collect(), circle));
                    break 'search;
                }
                if !came_from.contains_key(t) {
                    came_from.insert(t.clone(), at.clone());
                    queue.push_back(t.clone());
                }
            }
        }
    }
    found
}

#[test]
fn the_top_level_modules_form_no_circle() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (modules, edges) = graph(root);
    // Not vacuous: the modules lib.rs declares were all found, and they use one another.
    let lib = std::fs::read_to_string(root.join("src/lib.rs")).unwrap();
    let declared: BTreeSet<String> = lib
        .lines()
        .filter_map(|l| {
            let (vis, name) = l.trim().split_once("mod ")?;
            ["", "pub ", "pub(crate) "]
                .contains(&vis)
                .then(|| name.trim_end_matches(';').trim().to_string())
        })
        .collect();
    assert_eq!(modules, declared, "src/ and the `mod` lines of src/lib.rs");
    assert!(
        modules.len() >= 15,
        "only {} modules: {modules:?}",
        modules.len()
    );
    assert!(edges.len() >= 40, "only {} edges: {edges:?}", edges.len());
    for must in [
        ("registry", "config"),
        ("serve", "registry"),
        ("cli", "serve"),
    ] {
        assert!(
            edges.contains_key(&(must.0.to_string(), must.1.to_string())),
            "no edge {} -> {}: the references were not read",
            must.0,
            must.1
        );
    }
    let found = circles(&modules, &edges);
    let report: Vec<String> = found
        .iter()
        .map(|(part, c)| {
            let places: Vec<String> = c
                .windows(2)
                .map(|w| {
                    let at = &edges[&(w[0].clone(), w[1].clone())];
                    format!("    {} -> {}: {at}", w[0], w[1])
                })
                .collect();
            format!(
                "{} (each of {} reaches the others)\n{}",
                c.join(" -> "),
                part.join(", "),
                places.join("\n")
            )
        })
        .collect();
    assert!(
        found.is_empty(),
        "the top-level modules import one another in a circle: make one of these references point down (move what it names below both)\n{}",
        report.join("\n")
    );
}

#[test]
fn grouped_and_nested_uses_are_read() {
    let text = "use crate::{a, b::c, d::{e, f::{g}}, self};\n// use crate::commented;\nuse crate::{\n    h::i,\n    j,\n};\nlet x = crate::k::l(1);\nlet y = foo_crate::m; $crate::n;\n";
    let refs = crate_refs(text);
    assert_eq!(
        refs,
        [
            ("a".to_string(), 1),
            ("b".to_string(), 1),
            ("d".to_string(), 1),
            ("h".to_string(), 4),
            ("j".to_string(), 5),
            ("k".to_string(), 7),
        ]
    );
}

#[test]
fn a_circle_is_found_and_named() {
    let modules: BTreeSet<String> = ["a", "b", "c", "d"].map(String::from).into();
    let mut edges = Edges::new();
    for (f, t) in [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")] {
        edges.insert((f.into(), t.into()), format!("src/{f}.rs:1"));
    }
    let found = circles(&modules, &edges);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].0, ["a", "b", "c"]);
    assert_eq!(found[0].1, ["a", "b", "c", "a"]);
    edges.remove(&("c".to_string(), "a".to_string()));
    assert!(circles(&modules, &edges).is_empty());
}
