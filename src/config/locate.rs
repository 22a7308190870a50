//! Maps a key path such as `privileges[1].patterns[0]` to the line and column where it
//! stands in the YAML text. serde_yaml forgets positions once a value is deserialised, so
//! validation (which runs on typed values) asks this index where to point the operator.

use std::collections::HashMap;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// A 1-based line and column in the config file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

/// Positions of every key and sequence item, by dotted path.
#[derive(Default, Debug)]
pub struct Locations {
    map: HashMap<String, Position>,
}

impl Locations {
    /// Index every key and item.
    pub fn index(text: &str) -> Self {
        Self::index_only(text, None)
    }

    /// Index only `wanted` paths (and nothing else): a warning about one key of a large
    /// registry should not cost an index of all of it.
    pub fn index_only(text: &str, wanted: Option<&std::collections::HashSet<String>>) -> Self {
        let mut recv = Receiver {
            wanted,
            ..Receiver::default()
        };
        let mut parser = Parser::new_from_str(text);
        // Stop at the end of the document, at a syntax error (serde_yaml reports those with
        // its own position), or as soon as every wanted path is found.
        while let Ok((ev, mark)) = parser.next_token() {
            let end = matches!(ev, Event::StreamEnd | Event::DocumentEnd);
            recv.on_event(ev, mark);
            if end || wanted.is_some_and(|w| recv.map.len() == w.len()) {
                break;
            }
        }
        Locations { map: recv.map }
    }

    /// The position of `path`, or of its nearest indexed ancestor.
    pub fn find(&self, path: &str) -> Option<Position> {
        let mut p = path;
        loop {
            if let Some(pos) = self.map.get(p) {
                return Some(*pos);
            }
            let cut = p.rfind(['.', '['])?;
            p = &p[..cut];
        }
    }
}

enum Frame {
    Map { path: String, key: Option<String> },
    Seq { path: String, next: usize },
}

#[derive(Default)]
struct Receiver<'w> {
    stack: Vec<Frame>,
    map: HashMap<String, Position>,
    wanted: Option<&'w std::collections::HashSet<String>>,
}

impl Receiver<'_> {
    fn record(&mut self, path: &str, pos: Position) {
        if self.wanted.is_none_or(|w| w.contains(path)) && !self.map.contains_key(path) {
            self.map.insert(path.to_string(), pos);
        }
    }

    /// The path of the node that starts now, advancing the parent's state.
    fn child_path(&mut self, scalar: Option<&str>, mark: Marker) -> Option<String> {
        let pos = Position {
            line: mark.line(),
            column: mark.col() + 1,
        };
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Map { path, key }) => match key.take() {
                None => {
                    // This node is a key.
                    let name = scalar.unwrap_or("?").to_string();
                    let full = if path.is_empty() {
                        name.clone()
                    } else {
                        format!("{path}.{name}")
                    };
                    *key = Some(name);
                    self.record(&full, pos);
                    None
                }
                Some(name) => Some(if path.is_empty() {
                    name
                } else {
                    format!("{path}.{name}")
                }),
            },
            Some(Frame::Seq { path, next }) => {
                let full = format!("{path}[{next}]");
                *next += 1;
                self.record(&full, pos);
                Some(full)
            }
        }
    }
}

impl MarkedEventReceiver for Receiver<'_> {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::Scalar(ref v, ..) => {
                self.child_path(Some(v), mark);
            }
            Event::Alias(_) => {
                self.child_path(None, mark);
            }
            Event::MappingStart(..) => {
                if let Some(path) = self.child_path(None, mark) {
                    self.stack.push(Frame::Map { path, key: None });
                } else {
                    // A mapping used as a key: index nothing beneath it.
                    self.stack.push(Frame::Map {
                        path: "?".into(),
                        key: None,
                    });
                }
            }
            Event::SequenceStart(..) => {
                let path = self.child_path(None, mark).unwrap_or_else(|| "?".into());
                self.stack.push(Frame::Seq { path, next: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_only_what_is_wanted() {
        let text = "a: 1\nb:\n  - c: 2\n";
        let wanted = ["b[0].c".to_string(), "b[0]".to_string(), "b".to_string()]
            .into_iter()
            .collect();
        let loc = Locations::index_only(text, Some(&wanted));
        assert_eq!(loc.find("b[0].c").unwrap().line, 3);
        assert_eq!(loc.find("a"), None);
    }

    #[test]
    fn finds_keys_and_items() {
        let text =
            "listen: a\nprivileges:\n  - name: p\n    patterns: [\"/x/*\", \"/y\"]\n  - name: q\n";
        let loc = Locations::index(text);
        assert_eq!(loc.find("listen"), Some(Position { line: 1, column: 1 }));
        assert_eq!(loc.find("privileges[1].name").unwrap().line, 5);
        assert_eq!(loc.find("privileges[0].patterns[1]").unwrap().line, 4);
        // Unknown leaf: falls back to its parent.
        assert_eq!(loc.find("privileges[1].roles").unwrap().line, 5);
    }
}
