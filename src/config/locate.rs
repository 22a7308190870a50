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
    pub fn index(text: &str) -> Self {
        let mut recv = Receiver::default();
        let mut parser = Parser::new_from_str(text);
        // A YAML syntax error is reported by serde_yaml with its own position; here we keep
        // whatever was indexed before it.
        let _ = parser.load(&mut recv, false);
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
struct Receiver {
    stack: Vec<Frame>,
    map: HashMap<String, Position>,
}

impl Receiver {
    /// The path of the node that starts now, advancing the parent's state.
    fn child_path(&mut self, scalar: Option<&str>, mark: Marker) -> Option<String> {
        let pos = Position { line: mark.line(), column: mark.col() + 1 };
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Map { path, key }) => match key.take() {
                None => {
                    // This node is a key.
                    let name = scalar.unwrap_or("?").to_string();
                    let full = if path.is_empty() { name.clone() } else { format!("{path}.{name}") };
                    self.map.entry(full).or_insert(pos);
                    *key = Some(name);
                    None
                }
                Some(name) => Some(if path.is_empty() { name } else { format!("{path}.{name}") }),
            },
            Some(Frame::Seq { path, next }) => {
                let full = format!("{path}[{next}]");
                *next += 1;
                self.map.entry(full.clone()).or_insert(pos);
                Some(full)
            }
        }
    }
}

impl MarkedEventReceiver for Receiver {
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
                    self.stack.push(Frame::Map { path: "?".into(), key: None });
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
    fn finds_keys_and_items() {
        let text = "listen: a\nprivileges:\n  - name: p\n    patterns: [\"/x/*\", \"/y\"]\n  - name: q\n";
        let loc = Locations::index(text);
        assert_eq!(loc.find("listen"), Some(Position { line: 1, column: 1 }));
        assert_eq!(loc.find("privileges[1].name").unwrap().line, 5);
        assert_eq!(loc.find("privileges[0].patterns[1]").unwrap().line, 4);
        // Unknown leaf: falls back to its parent.
        assert_eq!(loc.find("privileges[1].roles").unwrap().line, 5);
    }
}
