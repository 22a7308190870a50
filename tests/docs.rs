//! The docs hold together (issue #32): every relative link and anchor in the book, the
//! README and the other Markdown files resolves; every page of `docs/src` is in the book's
//! SUMMARY; the README stays a front door; the version the docs name is Cargo.toml's.
//! (`mdbook build docs` itself runs in `scripts/test.sh`; the configuration reference's
//! keys are compared with the schema in `tests/config_reference.rs`.)

use pulldown_cmark::{Event, HeadingLevel, Options, Parser, Tag, TagEnd};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The Markdown a reader follows links in: the book's sources and the repository's own pages.
fn markdown_files() -> Vec<PathBuf> {
    let root = Path::new(ROOT);
    let mut files: Vec<PathBuf> = [
        "README.md",
        "CHANGELOG.md",
        "SECURITY.md",
        "deploy/kubernetes/README.md",
    ]
    .iter()
    .map(|f| root.join(f))
    .collect();
    let mut dirs = vec![root.join("docs/src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|e| e == "md") {
                files.push(p);
            }
        }
    }
    files.sort();
    files
}

fn options() -> Options {
    Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_FOOTNOTES
}

/// mdBook's heading ids (`normalize_id`): the heading's text, lowercased, spaces to `-`,
/// anything but alphanumerics, `_` and `-` dropped; a repeated id gets `-1`, `-2`, ...
/// GitHub's are the same for the headings these files use.
fn heading_ids(text: &str) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut current: Option<String> = None;
    for event in Parser::new_ext(text, options()) {
        match event {
            Event::Start(Tag::Heading { .. }) => current = Some(String::new()),
            Event::Text(t) | Event::Code(t) => {
                if let Some(h) = current.as_mut() {
                    h.push_str(&t);
                }
            }
            Event::End(TagEnd::Heading(_)) => {
                let h = current.take().unwrap();
                let id: String = h
                    .chars()
                    .filter_map(|c| {
                        if c.is_alphanumeric() || c == '_' || c == '-' {
                            Some(c.to_ascii_lowercase())
                        } else if c.is_whitespace() {
                            Some('-')
                        } else {
                            None
                        }
                    })
                    .collect();
                let n = seen.entry(id.clone()).or_insert(0);
                ids.insert(if *n == 0 {
                    id.clone()
                } else {
                    format!("{id}-{n}")
                });
                *n += 1;
            }
            _ => {}
        }
    }
    ids
}

/// Every link and image target in a Markdown text, and mdBook's `{{#include FILE}}`s.
fn targets(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for event in Parser::new_ext(text, options()) {
        if let Event::Start(Tag::Link { dest_url, .. } | Tag::Image { dest_url, .. }) = event {
            out.push(dest_url.to_string());
        }
    }
    for line in text.lines() {
        if let Some(rest) = line.trim().strip_prefix("{{#include ") {
            out.push(rest.trim_end_matches("}}").trim().to_string());
        }
    }
    out
}

#[test]
fn every_relative_link_and_anchor_resolves() {
    let files = markdown_files();
    assert!(
        files.len() >= 20,
        "only {} Markdown files found",
        files.len()
    );
    let mut broken = Vec::new();
    let mut checked = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let dir = file.parent().unwrap();
        for target in targets(&text) {
            if target.is_empty()
                || target.starts_with("http://")
                || target.starts_with("https://")
                || target.starts_with("mailto:")
            {
                continue;
            }
            checked += 1;
            let (path, anchor) = match target.split_once('#') {
                Some((p, a)) => (p, Some(a)),
                None => (target.as_str(), None),
            };
            let resolved = if path.is_empty() {
                file.clone()
            } else {
                dir.join(path)
            };
            let name = file.strip_prefix(ROOT).unwrap().display();
            if !resolved.exists() {
                broken.push(format!("{name}: {target}: no such file"));
                continue;
            }
            if let Some(anchor) = anchor {
                let ids = heading_ids(&std::fs::read_to_string(&resolved).unwrap_or_default());
                if !ids.contains(anchor) {
                    broken.push(format!(
                        "{name}: {target}: no heading with that id ({ids:?})"
                    ));
                }
            }
        }
    }
    assert!(checked >= 50, "only {checked} relative links checked");
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn every_page_is_in_the_summary() {
    let src = Path::new(ROOT).join("docs/src");
    let summary = std::fs::read_to_string(src.join("SUMMARY.md")).unwrap();
    let listed: BTreeSet<PathBuf> = targets(&summary)
        .into_iter()
        .filter(|t| !t.is_empty())
        .map(|t| src.join(t))
        .collect();
    let pages: BTreeSet<PathBuf> = markdown_files()
        .into_iter()
        .filter(|p| p.starts_with(&src) && !p.ends_with("SUMMARY.md"))
        .collect();
    let missing: Vec<_> = pages.difference(&listed).collect();
    assert!(missing.is_empty(), "pages no chapter links: {missing:?}");
}

#[test]
fn the_readme_is_a_front_door() {
    let readme = std::fs::read_to_string(Path::new(ROOT).join("README.md")).unwrap();
    let lines = readme.lines().count();
    assert!(
        lines < 200,
        "README.md has {lines} lines: move reference text into docs/"
    );
    // The two set-up commands come first, and the five steps' curl lines are there.
    let first_block = readme.split("```sh").nth(1).unwrap();
    assert!(first_block.contains("./scripts/setup.sh && cargo run -- demo"));
    assert!(first_block.contains("./scripts/setup.sh && ./scripts/test.sh"));
    assert!(readme.contains("curl -i http://127.0.0.1:8080/ords/hr/example/employees/"));
    let top_sections = readme.lines().filter(|l| l.starts_with("## ")).count();
    assert!(top_sections <= 6, "{top_sections} sections in the README");
    // Headings of level 3 and below belong in the book.
    let deep = Parser::new_ext(&readme, options())
        .filter(
            |e| matches!(e, Event::Start(Tag::Heading { level, .. }) if *level > HeadingLevel::H2),
        )
        .count();
    assert_eq!(deep, 0);
}

#[test]
fn the_docs_name_cargo_tomls_version() {
    let version = env!("CARGO_PKG_VERSION");
    let changelog = std::fs::read_to_string(Path::new(ROOT).join("CHANGELOG.md")).unwrap();
    let released: Vec<&str> = changelog
        .lines()
        .filter_map(|l| l.strip_prefix("## ["))
        .filter_map(|l| l.split(']').next())
        .filter(|v| *v != "Unreleased")
        .collect();
    assert_eq!(
        released.first().copied(),
        Some(version),
        "CHANGELOG.md's newest release is not Cargo.toml's version"
    );
    // Every `ords-guard X.Y.Z (rev ...)` sample in the docs is this version.
    let sample = regex_free_versions(&markdown_files());
    for (file, v) in &sample {
        assert_eq!(v, version, "{file} shows `ords-guard {v} (rev ...)`");
    }
    assert!(
        !sample.is_empty(),
        "no `ords-guard X.Y.Z (rev` sample in the docs"
    );
}

/// The versions in `ords-guard X.Y.Z (rev` samples, by file.
fn regex_free_versions(files: &[PathBuf]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f).unwrap();
        for (i, _) in text.match_indices("ords-guard ") {
            let rest = &text[i + "ords-guard ".len()..];
            let Some((v, after)) = rest.split_once(' ') else {
                continue;
            };
            if after.starts_with("(rev ") && v.split('.').all(|p| p.parse::<u32>().is_ok()) {
                out.push((
                    f.strip_prefix(ROOT).unwrap().display().to_string(),
                    v.into(),
                ));
            }
        }
    }
    out
}
