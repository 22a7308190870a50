//! A reader for the PL/SQL that ORDS security exports and scripts are written in (SPEC §12):
//! anonymous blocks (`DECLARE ... BEGIN ... END; /`), calls with named (`p_x => ...`) and
//! positional arguments, `'...'` strings with `''` escapes (and `q'[...]'`), `NULL`, `--`
//! and `/* */` comments, array elements filled one by one (`l_roles(1) := 'r';`), and
//! SQL*Plus line commands (`SET ...`, `WHENEVER ...`). It is not a PL/SQL parser: each
//! statement is read as a call, an assignment, or something else the importer reports as
//! skipped. It never panics and holds no recursion: any byte sequence is either statements
//! or an error naming its line.

use std::fmt;

/// An argument's or assignment's value, as far as the importer needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A string literal (`''` unescaped, `||` concatenations joined). Oracle reads `''` as
    /// NULL, and so does this reader.
    Str(String),
    Number(String),
    Null,
    Bool(bool),
    /// A variable (`l_roles`) or a constant (`ords_constants.x`), upper-cased.
    Name(String),
    /// Anything else (a nested call, an expression), as text: not read further.
    Other(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arg {
    /// `p_x` of `p_x => value`, lower-cased; `None` for a positional argument.
    pub name: Option<String>,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Statement {
    /// `PKG.PROC(args);`, or `x := PKG.FUNC(args);` (`assigned_to`). `name` is upper-cased,
    /// the last two parts of a dotted name (`ORDS_METADATA.ORDS.X` is `ORDS.X`).
    Call {
        name: String,
        args: Vec<Arg>,
        line: usize,
    },
    /// `l_roles(1) := 'r';`
    Element {
        array: String,
        index: i64,
        value: Value,
        line: usize,
    },
    /// `l_role := 'r';`
    Assign {
        var: String,
        value: Value,
        line: usize,
    },
    /// A variable declared in a `DECLARE` section: its earlier elements are forgotten.
    Declare { var: String, line: usize },
    /// A statement this reader has no reading of, for the importer to report.
    Other { text: String, line: usize },
}

/// Why the input cannot be read, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.line, self.message)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    /// Upper-cased, or exactly as written between `"`.
    Ident(String),
    Str(String),
    Num(String),
    Punct(&'static str),
    /// A character no rule reads.
    Odd(char),
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    line: usize,
    /// Whether it is the first token on its line (SQL*Plus commands end at the line's end).
    starts_line: bool,
}

const PUNCTS: [&str; 16] = [
    ":=", "=>", "||", "(", ")", ",", ";", ".", "/", "%", "-", "+", "*", "=", "<", ">",
];

/// SQL*Plus commands: they end at the end of their line, not at a `;`.
const LINE_COMMANDS: [&str; 14] = [
    "SET", "WHENEVER", "PROMPT", "SPOOL", "REM", "REMARK", "DEFINE", "UNDEFINE", "CONN", "CONNECT",
    "EXIT", "QUIT", "SHOW", "PAUSE",
];

fn lex(src: &str) -> Result<Vec<Token>, ReadError> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let (mut i, mut line) = (0usize, 1usize);
    let mut line_start = true;
    let err = |line, message: &str| ReadError {
        line,
        message: message.to_string(),
    };
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '\n' {
            line += 1;
            line_start = true;
            i += 1;
            continue;
        }
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let at = line;
        let starts_line = std::mem::replace(&mut line_start, false);
        let mut push = |tok| {
            out.push(Token {
                tok,
                line: at,
                starts_line,
            })
        };
        if c == '-' && next == Some('-') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            line_start = starts_line;
            continue;
        }
        if c == '/' && next == Some('*') {
            i += 2;
            loop {
                match (chars.get(i), chars.get(i + 1)) {
                    (Some('*'), Some('/')) => break,
                    (Some(ch), _) => {
                        if *ch == '\n' {
                            line += 1;
                        }
                        i += 1;
                    }
                    (None, _) => return Err(err(at, "unterminated /* comment: close it with */")),
                }
            }
            i += 2;
            line_start = starts_line;
            continue;
        }
        // q'[...]' (and N'...', NQ'...'): a quoted string with its own delimiters.
        let upper = c.to_ascii_uppercase();
        let q_at = match (upper, next.map(|n| n.to_ascii_uppercase())) {
            ('Q', Some('\'')) => Some(i + 2),
            ('N', Some('Q')) if chars.get(i + 2) == Some(&'\'') => Some(i + 3),
            _ => None,
        };
        if let Some(open_at) = q_at {
            let Some(&open) = chars.get(open_at) else {
                return Err(err(at, "unterminated q'...' string"));
            };
            let close = match open {
                '[' => ']',
                '{' => '}',
                '(' => ')',
                '<' => '>',
                o => o,
            };
            let Some((s, end)) = quoted(&chars, open_at + 1, close, false, &mut line) else {
                return Err(err(
                    at,
                    &format!("unterminated q'{open}...{close}' string: end it with {close}'"),
                ));
            };
            push(Tok::Str(s));
            i = end;
            continue;
        }
        if c == '\'' || (upper == 'N' && next == Some('\'')) {
            let start = if c == '\'' { i + 1 } else { i + 2 };
            let Some((s, end)) = quoted(&chars, start, '\'', true, &mut line) else {
                return Err(err(
                    at,
                    "unterminated string: a ' opened here is never closed (write '' for a quote inside a string)",
                ));
            };
            push(Tok::Str(s));
            i = end;
            continue;
        }
        if c == '"' {
            let Some(len) = chars[i + 1..].iter().position(|&ch| ch == '"') else {
                return Err(err(
                    at,
                    "unterminated quoted identifier: a \" opened here is never closed",
                ));
            };
            let s: String = chars[i + 1..i + 1 + len].iter().collect();
            line += s.matches('\n').count();
            push(Tok::Ident(s));
            i += len + 2;
            continue;
        }
        if c.is_ascii_digit() {
            let mut j = i;
            while j < chars.len() && (chars[j].is_ascii_alphanumeric() || chars[j] == '.') {
                j += 1;
            }
            push(Tok::Num(chars[i..j].iter().collect()));
            i = j;
            continue;
        }
        if c.is_alphabetic() {
            let mut j = i;
            while j < chars.len()
                && (chars[j].is_alphanumeric() || matches!(chars[j], '_' | '$' | '#'))
            {
                j += 1;
            }
            let word: String = chars[i..j].iter().collect();
            push(Tok::Ident(word.to_uppercase()));
            i = j;
            continue;
        }
        let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
        if let Some(p) = PUNCTS.iter().find(|p| p.len() == 2 && **p == two) {
            push(Tok::Punct(p));
            i += 2;
            continue;
        }
        match PUNCTS.iter().find(|p| p.len() == 1 && p.starts_with(c)) {
            Some(p) => push(Tok::Punct(p)),
            None => push(Tok::Odd(c)),
        }
        i += 1;
    }
    Ok(out)
}

/// A string's text from `start` up to `close` followed by `'` (`q'[...]'`), or up to a
/// lone `'` with `''` read as a quote (`doubled`, for `'...'`, where `close` is `'`): the
/// text and the index after its end, counting newlines into `line`; `None` if it never ends.
fn quoted(
    chars: &[char],
    start: usize,
    close: char,
    doubled: bool,
    line: &mut usize,
) -> Option<(String, usize)> {
    let mut s = String::new();
    let mut j = start;
    loop {
        let a = *chars.get(j)?;
        let next = chars.get(j + 1).copied();
        if doubled && a == '\'' && next == Some('\'') {
            s.push('\'');
            j += 2;
            continue;
        }
        if doubled && a == '\'' {
            return Some((s, j + 1));
        }
        if !doubled && a == close && next == Some('\'') {
            return Some((s, j + 2));
        }
        if a == '\n' {
            *line += 1;
        }
        s.push(a);
        j += 1;
    }
}

/// Read `src` into statements, in order.
pub fn read(src: &str) -> Result<Vec<Statement>, ReadError> {
    let toks = lex(src)?;
    let mut out = Vec::new();
    let mut i = 0;
    // Inside a DECLARE section (until its BEGIN): statements are declarations.
    let mut declaring = false;
    while i < toks.len() {
        let t = &toks[i];
        match &t.tok {
            Tok::Punct(";") | Tok::Punct("/") => {
                i += 1;
                continue;
            }
            Tok::Ident(w) if w == "DECLARE" => {
                declaring = true;
                i += 1;
                continue;
            }
            Tok::Ident(w) if w == "BEGIN" => {
                declaring = false;
                i += 1;
                continue;
            }
            Tok::Ident(w) if t.starts_line && LINE_COMMANDS.contains(&w.as_str()) => {
                let line = t.line;
                let mut j = i + 1;
                while j < toks.len() && toks[j].line == line {
                    j += 1;
                }
                out.push(Statement::Other {
                    text: render(&toks[i..j]),
                    line,
                });
                i = j;
                continue;
            }
            _ => {}
        }
        // One statement: up to the `;` outside parentheses.
        let start = i;
        let mut depth = 0usize;
        while i < toks.len() {
            match toks[i].tok {
                Tok::Punct("(") => depth += 1,
                Tok::Punct(")") => depth = depth.saturating_sub(1),
                Tok::Punct(";") if depth == 0 => break,
                _ => {}
            }
            i += 1;
        }
        let stmt = &toks[start..i];
        i += 1;
        if declaring {
            out.push(declaration(stmt));
        } else if let Some(s) = statement(stmt) {
            out.push(s);
        }
    }
    Ok(out)
}

fn ident(t: Option<&Token>) -> Option<&str> {
    match t.map(|t| &t.tok) {
        Some(Tok::Ident(w)) => Some(w),
        _ => None,
    }
}

fn punct(t: Option<&Token>, p: &str) -> bool {
    matches!(t.map(|t| &t.tok), Some(Tok::Punct(q)) if *q == p)
}

/// `name type [:= value];` in a DECLARE section (a local procedure is reported).
fn declaration(s: &[Token]) -> Statement {
    let line = s.first().map_or(0, |t| t.line);
    match (ident(s.first()), ident(s.get(1))) {
        (Some("PROCEDURE" | "FUNCTION" | "CURSOR" | "TYPE"), _) => Statement::Other {
            text: render(s),
            line,
        },
        (Some(var), Some(_)) => Statement::Declare {
            var: var.to_string(),
            line,
        },
        _ => Statement::Other {
            text: render(s),
            line,
        },
    }
}

/// A dotted name at the start of `s`: its parts and how many tokens it took.
fn dotted(s: &[Token]) -> (Vec<&str>, usize) {
    let mut parts = Vec::new();
    let mut i = 0;
    while let Some(w) = ident(s.get(i)) {
        parts.push(w);
        i += 1;
        if punct(s.get(i), ".") {
            i += 1;
        } else {
            break;
        }
    }
    (parts, i)
}

fn statement(s: &[Token]) -> Option<Statement> {
    let first = s.first()?;
    let line = first.line;
    let mut s = s;
    if matches!(ident(s.first()), Some("EXEC" | "EXECUTE")) {
        s = &s[1..];
    }
    let other = || {
        Some(Statement::Other {
            text: render(s),
            line,
        })
    };
    let (parts, n) = dotted(s);
    if parts.is_empty() {
        return other();
    }
    if n == s.len() && parts.len() == 1 && matches!(parts[0], "COMMIT" | "NULL" | "END") {
        return None;
    }
    if parts[0] == "END" {
        // `END;`, `END name;`, `END IF;`, `END LOOP;`
        return None;
    }
    let rest = &s[n..];
    // `l_roles(1) := value`
    if parts.len() == 1 && punct(rest.first(), "(") {
        if let (Some(Tok::Num(idx)), true, true) = (
            rest.get(1).map(|t| &t.tok),
            punct(rest.get(2), ")"),
            punct(rest.get(3), ":="),
        ) {
            return match idx.parse::<i64>() {
                Ok(index) => Some(Statement::Element {
                    array: parts[0].to_string(),
                    index,
                    value: value(&rest[4..]),
                    line,
                }),
                Err(_) => other(),
            };
        }
    }
    // `x := ...`: a function call assigned, or a value.
    if punct(rest.first(), ":=") {
        let rhs = &rest[1..];
        let (fparts, fn_len) = dotted(rhs);
        if fparts.len() >= 2 {
            if let Some(args) = call_args(&rhs[fn_len..]) {
                return Some(Statement::Call {
                    name: call_name(&fparts),
                    args,
                    line: rhs[0].line,
                });
            }
        }
        if parts.len() == 1 {
            return Some(Statement::Assign {
                var: parts[0].to_string(),
                value: value(rhs),
                line,
            });
        }
        return other();
    }
    if parts.len() >= 2 {
        if let Some(args) = call_args(rest) {
            return Some(Statement::Call {
                name: call_name(&parts),
                args,
                line,
            });
        }
    }
    other()
}

/// `PKG.PROC`, the last two parts of a dotted name.
fn call_name(parts: &[&str]) -> String {
    parts[parts.len().saturating_sub(2)..].join(".")
}

/// `(a, p_b => c)` or nothing: the arguments; `None` when `s` is not that.
fn call_args(s: &[Token]) -> Option<Vec<Arg>> {
    if s.is_empty() {
        return Some(Vec::new());
    }
    if !punct(s.first(), "(") || !punct(s.last(), ")") {
        return None;
    }
    let inner = &s[1..s.len() - 1];
    let mut args = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (k, t) in inner.iter().enumerate() {
        match t.tok {
            Tok::Punct("(") => depth += 1,
            Tok::Punct(")") => {
                // `)` closing more than opened: not one argument list.
                depth = depth.checked_sub(1)?;
            }
            Tok::Punct(",") if depth == 0 => {
                args.push(arg(&inner[start..k]));
                start = k + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return None;
    }
    if !inner.is_empty() {
        args.push(arg(&inner[start..]));
    }
    Some(args)
}

fn arg(s: &[Token]) -> Arg {
    match (ident(s.first()), punct(s.get(1), "=>")) {
        (Some(name), true) => Arg {
            name: Some(name.to_lowercase()),
            value: value(&s[2..]),
        },
        _ => Arg {
            name: None,
            value: value(s),
        },
    }
}

fn value(s: &[Token]) -> Value {
    let toks: Vec<&Tok> = s.iter().map(|t| &t.tok).collect();
    match toks.as_slice() {
        [Tok::Num(n)] => return Value::Number(n.clone()),
        [Tok::Punct("-"), Tok::Num(n)] => return Value::Number(format!("-{n}")),
        [Tok::Ident(w)] if w == "NULL" => return Value::Null,
        [Tok::Ident(w)] if w == "TRUE" => return Value::Bool(true),
        [Tok::Ident(w)] if w == "FALSE" => return Value::Bool(false),
        _ => {}
    }
    // 'a' || 'b' || ...
    if !toks.is_empty() && toks.len() % 2 == 1 {
        let mut joined = String::new();
        let all = toks.iter().enumerate().all(|(k, t)| match (k % 2, t) {
            (0, Tok::Str(part)) => {
                joined.push_str(part);
                true
            }
            (1, Tok::Punct("||")) => true,
            _ => false,
        });
        if all {
            return if joined.is_empty() {
                Value::Null
            } else {
                Value::Str(joined)
            };
        }
    }
    let (parts, n) = dotted(s);
    if !parts.is_empty() && n == s.len() {
        return Value::Name(parts.join("."));
    }
    Value::Other(render(s))
}

/// Tokens as text, for reports (strings quoted again, at most 80 characters).
fn render(s: &[Token]) -> String {
    let mut out = String::new();
    for t in s {
        let piece = match &t.tok {
            Tok::Ident(w) => w.clone(),
            Tok::Str(v) => format!("'{}'", v.replace('\'', "''")),
            Tok::Num(n) => n.clone(),
            Tok::Punct(p) => p.to_string(),
            Tok::Odd(c) => c.to_string(),
        };
        let glue = !out.is_empty()
            && !matches!(t.tok, Tok::Punct("(" | ")" | "," | "." | ";"))
            && !out.ends_with(['(', '.']);
        if glue {
            out.push(' ');
        }
        out.push_str(&piece);
        if out.chars().count() > 80 {
            let cut: String = out.chars().take(77).collect();
            return format!("{cut}...");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(name: &str, args: Vec<Arg>, line: usize) -> Statement {
        Statement::Call {
            name: name.into(),
            args,
            line,
        }
    }
    fn named(n: &str, v: Value) -> Arg {
        Arg {
            name: Some(n.into()),
            value: v,
        }
    }
    fn pos(v: Value) -> Arg {
        Arg {
            name: None,
            value: v,
        }
    }
    fn s(v: &str) -> Value {
        Value::Str(v.into())
    }

    #[test]
    fn blocks_calls_arrays_and_comments() {
        let src = "-- an ORDS export\nDECLARE\n  l_roles OWA.VC_ARR;\n  l_patterns owa.vc_arr;\nBEGIN\n  l_roles(1) := 'example_role';\n  /* two\n     lines */\n  ORDS.DEFINE_PRIVILEGE(\n      p_privilege_name => 'example_priv',\n      p_roles          => l_roles,\n      p_label          => 'It''s an example',\n      p_comments       => NULL);\n  COMMIT;\nEND;\n/\nBEGIN ords.create_role('r2'); END;\n/\n";
        assert_eq!(
            read(src).unwrap(),
            vec![
                Statement::Declare {
                    var: "L_ROLES".into(),
                    line: 3
                },
                Statement::Declare {
                    var: "L_PATTERNS".into(),
                    line: 4
                },
                Statement::Element {
                    array: "L_ROLES".into(),
                    index: 1,
                    value: s("example_role"),
                    line: 6
                },
                call(
                    "ORDS.DEFINE_PRIVILEGE",
                    vec![
                        named("p_privilege_name", s("example_priv")),
                        named("p_roles", Value::Name("L_ROLES".into())),
                        named("p_label", s("It's an example")),
                        named("p_comments", Value::Null),
                    ],
                    9
                ),
                call("ORDS.CREATE_ROLE", vec![pos(s("r2"))], 17),
            ]
        );
    }

    #[test]
    fn assigned_calls_nested_calls_and_sqlplus_commands() {
        let src = "set serveroutput on\nwhenever sqlerror exit failure\nDECLARE\n  l_c ords_types.t_client_credentials;\nBEGIN\n  l_c := ORDS_METADATA.ORDS_SECURITY.REGISTER_CLIENT(\n    p_name => 'A' || 'pp',\n    p_client_secret => ords_types.oauth_client_secret(p_secret => NULL),\n    p_origins_allowed => '',\n    p_token_duration => 600);\n  dbms_output.put_line(l_c.client_key.client_id);\n  EXEC OAUTH.GRANT_CLIENT_ROLE('App', q'[r]');\nEND;\n/";
        let got = read(src).unwrap();
        assert!(matches!(&got[0], Statement::Other { line: 1, text } if text.starts_with("SET")));
        assert!(matches!(&got[1], Statement::Other { line: 2, .. }));
        assert_eq!(
            got[3],
            call(
                "ORDS_SECURITY.REGISTER_CLIENT",
                vec![
                    named("p_name", s("App")),
                    named(
                        "p_client_secret",
                        Value::Other("ORDS_TYPES.OAUTH_CLIENT_SECRET(P_SECRET => NULL)".into())
                    ),
                    named("p_origins_allowed", Value::Null),
                    named("p_token_duration", Value::Number("600".into())),
                ],
                6
            )
        );
        assert!(matches!(&got[4], Statement::Call { name, .. } if name == "DBMS_OUTPUT.PUT_LINE"));
        assert_eq!(
            got[5],
            call(
                "OAUTH.GRANT_CLIENT_ROLE",
                vec![pos(s("App")), pos(s("r"))],
                12
            )
        );
    }

    #[test]
    fn errors_name_their_line() {
        for (src, line, what) in [
            (
                "BEGIN\n  ORDS.CREATE_ROLE('oops);\nEND;",
                2,
                "unterminated string",
            ),
            ("BEGIN\n\n /* never closed\n", 3, "unterminated /*"),
            ("x := q'[abc", 1, "unterminated q'"),
            ("\"abc", 1, "quoted identifier"),
        ] {
            let e = read(src).unwrap_err();
            assert_eq!(e.line, line, "{src}");
            assert!(e.message.contains(what), "{}", e.message);
        }
    }

    #[test]
    fn odd_input_is_statements_or_an_error_never_a_panic() {
        for src in [
            "",
            ";;;",
            "(((",
            ")))",
            "a(",
            "a.b(c",
            "a := ",
            ":=",
            "x(1) :=",
            "BEGIN END",
            "'",
            "q'",
            "nq'",
            "n'",
            "\u{0}\u{ffff}",
            "a.b((x)",
            "l(99999999999999999999) := 'a';",
            "DECLARE\nBEGIN",
            "- - 1",
            "a.b(p => )",
            "a.b(,,)",
        ] {
            let _ = read(src);
        }
    }
}
