//! Privilege patterns (ORDS `CREATE_PRIVILEGE_MAPPING`) and their matcher (SPEC §3).
//!
//! Patterns compile into two hash maps, exact and wildcard, keyed by the literal path without
//! its trailing `/`. A lookup costs one probe per path segment, whatever the number of
//! patterns: the exact map first (an exact pattern beats any wildcard), then the wildcard map
//! from the longest prefix to the root, so the first hit is the most specific.

use std::collections::HashMap;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `/x`: the path itself, with or without one trailing `/`.
    Exact,
    /// `/x/*`: `/x`, `/x/` and everything below.
    Wildcard,
}

/// A parsed pattern: its kind and its key (literal path without trailing `/`; `""` is root).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Pattern {
    pub kind: Kind,
    pub key: String,
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            Kind::Exact if self.key.is_empty() => f.write_str("/"),
            Kind::Exact => f.write_str(&self.key),
            Kind::Wildcard => write!(f, "{}/*", self.key),
        }
    }
}

impl Pattern {
    pub fn parse(s: &str) -> Result<Pattern, String> {
        if s.is_empty() {
            return Err("the pattern is empty; write an absolute path such as `/example/*`".into());
        }
        if !s.starts_with('/') {
            return Err(format!(
                "the pattern `{s}` must start with `/` (it is relative to base_path)"
            ));
        }
        if s.contains(['?', '#']) {
            return Err(format!(
                "the pattern `{s}` contains `?` or `#`; patterns match paths only"
            ));
        }
        let (literal, kind) = match s.find('*') {
            None => (s, Kind::Exact),
            Some(i) if i == s.len() - 1 && s.ends_with("/*") => (&s[..s.len() - 1], Kind::Wildcard),
            Some(_) => {
                return Err(format!("the pattern `{s}` is malformed: `*` may only stand as the whole last segment, as in `/x/*`"))
            }
        };
        let norm = crate::patterns::path::normalise_path(literal.as_bytes())
            .map_err(|e| format!("the pattern `{s}` is malformed: {e}"))?;
        if norm != literal {
            return Err(format!(
                "the pattern `{s}` is not in normal form; write it as `{norm}{}`",
                if kind == Kind::Wildcard { "*" } else { "" }
            ));
        }
        Ok(Pattern {
            kind,
            key: norm.trim_end_matches('/').to_string(),
        })
    }
}

/// A set of HTTP methods; `ALL` covers every method, including unknown ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Methods(u16);

const METHOD_NAMES: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT",
];
const OTHER: u16 = 1 << 9;

impl Methods {
    pub const ALL: Methods = Methods(u16::MAX);

    pub fn parse(names: &[String]) -> Result<Methods, String> {
        if names.is_empty() {
            return Err("`methods` is empty; omit it to cover all methods".into());
        }
        let mut bits = 0;
        for n in names {
            match METHOD_NAMES.iter().position(|m| m == n) {
                Some(i) => bits |= 1 << i,
                None => {
                    return Err(format!(
                        "unknown method `{n}`: use {}",
                        METHOD_NAMES.join(", ")
                    ))
                }
            }
        }
        Ok(Methods(bits))
    }

    pub fn bit(method: &str) -> u16 {
        METHOD_NAMES
            .iter()
            .position(|m| *m == method)
            .map_or(OTHER, |i| 1 << i)
    }

    pub fn overlaps(self, other: Methods) -> bool {
        self.0 & other.0 != 0
    }
}

/// Two privileges map the same pattern for overlapping methods.
#[derive(Debug, PartialEq, Eq)]
pub struct Conflict<T>(pub T);

type Entries<T> = Vec<(Methods, T)>;

#[derive(Debug, Clone)]
pub struct Matcher<T> {
    exact: HashMap<String, Entries<T>>,
    wildcard: HashMap<String, Entries<T>>,
}

impl<T> Default for Matcher<T> {
    fn default() -> Self {
        Matcher {
            exact: HashMap::new(),
            wildcard: HashMap::new(),
        }
    }
}

impl<T: Clone> Matcher<T> {
    pub fn insert(&mut self, p: &Pattern, methods: Methods, value: T) -> Result<(), Conflict<T>> {
        let map = match p.kind {
            Kind::Exact => &mut self.exact,
            Kind::Wildcard => &mut self.wildcard,
        };
        let entries = map.entry(p.key.clone()).or_default();
        if let Some((_, other)) = entries.iter().find(|(m, _)| m.overlaps(methods)) {
            return Err(Conflict(other.clone()));
        }
        entries.push((methods, value));
        Ok(())
    }

    pub fn has_root_wildcard(&self) -> bool {
        self.wildcard.contains_key("")
    }
}

impl<T> Matcher<T> {
    /// The most specific entry covering `path` (relative to base_path, starting with `/`)
    /// for `method`.
    pub fn lookup(&self, path: &str, method: &str) -> Option<&T> {
        let bit = Methods::bit(method);
        fn pick<T>(e: &Entries<T>, bit: u16) -> Option<&T> {
            e.iter().find(|(m, _)| m.0 & bit != 0).map(|(_, v)| v)
        }
        let key = path.strip_suffix('/').unwrap_or(path);
        if let Some(v) = self.exact.get(key).and_then(|e| pick(e, bit)) {
            return Some(v);
        }
        let mut prefix = key;
        loop {
            if let Some(v) = self.wildcard.get(prefix).and_then(|e| pick(e, bit)) {
                return Some(v);
            }
            match prefix.rfind('/') {
                Some(i) => prefix = &prefix[..i],
                None => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(entries: &[(&str, Option<&[&str]>, u32)]) -> Matcher<u32> {
        let mut mt = Matcher::default();
        for (p, methods, v) in entries {
            let ms = match methods {
                Some(ms) => {
                    Methods::parse(&ms.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
                }
                None => Methods::ALL,
            };
            mt.insert(&Pattern::parse(p).unwrap(), ms, *v).unwrap();
        }
        mt
    }

    #[test]
    fn wildcard_covers_root_slash_and_below() {
        let mt = m(&[("/x/*", None, 1)]);
        for p in ["/x", "/x/", "/x/a", "/x/a/b/c", "/x/a/"] {
            assert_eq!(mt.lookup(p, "GET"), Some(&1), "{p}");
        }
        for p in ["/", "/xy", "/y/x", "/X"] {
            assert_eq!(mt.lookup(p, "GET"), None, "{p}");
        }
    }

    #[test]
    fn exact_matches_with_or_without_trailing_slash() {
        let mt = m(&[("/x", None, 1), ("/", None, 2)]);
        assert_eq!(mt.lookup("/x", "GET"), Some(&1));
        assert_eq!(mt.lookup("/x/", "GET"), Some(&1));
        assert_eq!(mt.lookup("/x/a", "GET"), None);
        assert_eq!(mt.lookup("/", "GET"), Some(&2));
    }

    #[test]
    fn most_specific_wins() {
        let mt = m(&[
            ("/*", None, 0),
            ("/x/*", None, 1),
            ("/x/y/*", None, 2),
            ("/x/y", None, 3),
        ]);
        assert_eq!(mt.lookup("/other", "GET"), Some(&0));
        assert_eq!(mt.lookup("/x/z", "GET"), Some(&1));
        assert_eq!(mt.lookup("/x/y/z", "GET"), Some(&2));
        assert_eq!(mt.lookup("/x/y", "GET"), Some(&3));
        assert_eq!(mt.lookup("/x/y/", "GET"), Some(&3));
    }

    #[test]
    fn methods_select_and_fall_back() {
        let mt = m(&[
            ("/example/*", None, 1),
            ("/example/orders/*", Some(&["POST", "DELETE"]), 2),
        ]);
        assert_eq!(mt.lookup("/example/orders/1", "POST"), Some(&2));
        assert_eq!(mt.lookup("/example/orders/1", "GET"), Some(&1));
        assert_eq!(mt.lookup("/example/orders/1", "BREW"), Some(&1));
    }

    #[test]
    fn overlapping_methods_on_one_pattern_conflict() {
        let mut mt = m(&[("/x/*", Some(&["GET"]), 1)]);
        let p = Pattern::parse("/x/*").unwrap();
        assert_eq!(mt.insert(&p, Methods::ALL, 2), Err(Conflict(1)));
        assert!(mt
            .insert(&p, Methods::parse(&["POST".into()]).unwrap(), 3)
            .is_ok());
        // `/x` and `/x/` are one pattern.
        mt.insert(&Pattern::parse("/y").unwrap(), Methods::ALL, 4)
            .unwrap();
        assert!(mt
            .insert(&Pattern::parse("/y/").unwrap(), Methods::ALL, 5)
            .is_err());
    }

    #[test]
    fn malformed_patterns() {
        for p in [
            "", "x/*", "/x*", "/*/x", "/x/*/*", "/x/**", "/x?y", "/x#", "/../x", "/x/./*",
            "/x%2f/*", "/x;y", "//x", "/%7e",
        ] {
            assert!(Pattern::parse(p).is_err(), "{p}");
        }
        assert_eq!(
            Pattern::parse("/*").unwrap(),
            Pattern {
                kind: Kind::Wildcard,
                key: "".into()
            }
        );
        assert_eq!(
            Pattern::parse("/").unwrap(),
            Pattern {
                kind: Kind::Exact,
                key: "".into()
            }
        );
        assert_eq!(Pattern::parse("/a%20b/*").unwrap().key, "/a%20b");
    }

    #[test]
    fn unknown_method_in_config_is_an_error() {
        assert!(Methods::parse(&["get".into()]).is_err());
        assert!(Methods::parse(&[]).is_err());
    }
}
