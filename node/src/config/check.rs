//! Reading a configuration file so that every mistake in it is reported in
//! one run: TOML syntax errors, unknown keys, values of the wrong type and
//! values that `Config::validate` refuses, each with its key path and line.
//!
//! serde stops at the first error, so the lines with TOML syntax errors
//! are blanked out first (each error recorded), the rest is parsed into a
//! document that keeps the position of every key and value (toml's
//! `DeTable`), and that document is deserialised again
//! and again: each time serde refuses something, the problem is recorded
//! where its position says it is and that key is taken out of the
//! document, until what is left deserialises (or a bound is reached).
//! A key taken out falls back to its default, so the checks of
//! `Config::validate` then run on everything that did parse.

use std::ops::Range;

use serde::Deserialize;
use toml::de::{DeTable, DeValue};
use toml::{Spanned, de::Deserializer};

use super::{Config, ConfigError, Problem};

/// Keys taken out before giving up: no real file has this many mistakes,
/// and each round deserialises the whole document again.
const MAX_ROUNDS: usize = 100;

/// One step of a key path: a table key or an array index.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Key(String),
    Index(usize),
}

/// Parse `text`, reporting every problem found.
pub(super) fn parse(text: &str) -> Result<Config, ConfigError> {
    let lines = LineIndex::new(text);
    let mut problems = Vec::new();
    let clean = without_syntax_errors(text, &lines, &mut problems);
    let (mut doc, _) = DeTable::parse_recoverable(&clean);
    let mut parsed = None;
    for _ in 0..MAX_ROUNDS {
        match Config::deserialize(Deserializer::from(doc.clone())) {
            Ok(cfg) => {
                parsed = Some(cfg);
                break;
            }
            Err(e) => {
                let path = e.span().and_then(|s| locate_table(doc.get_ref(), s.start));
                problems.push(Problem {
                    field: path
                        .as_deref()
                        .map_or_else(|| "(file)".to_string(), path_text),
                    message: plain_types(&one_line(e.message())),
                    line: e.span().map(|s| lines.line_of(s.start)),
                });
                // Without a place to take out, another round would only
                // find the same error again.
                match path {
                    Some(p) if remove(doc.get_mut(), &p) => {}
                    _ => break,
                }
            }
        }
    }
    if let Some(cfg) = &parsed
        && let Err(ConfigError::Invalid(found)) = cfg.validate()
    {
        for mut p in found {
            p.line = field_span(doc.get_ref(), &p.field).map(|s| lines.line_of(s.start));
            problems.push(p);
        }
    }
    // In the order of the file (serde finds some in another order); those
    // without a line last.
    problems.sort_by_key(|p| p.line.unwrap_or(usize::MAX));
    match parsed {
        Some(cfg) if problems.is_empty() => Ok(cfg),
        _ => Err(ConfigError::Invalid(problems)),
    }
}

/// `text` with every line that holds a TOML syntax error blanked out
/// (spaces, so positions and line numbers stay), each error recorded.
/// The parser's own recovery may drop what follows an error; blanking
/// the line lets the rest of the file be checked as written.
fn without_syntax_errors(text: &str, lines: &LineIndex, problems: &mut Vec<Problem>) -> String {
    let mut clean = text.to_string();
    let mut reported = std::collections::BTreeSet::new();
    for _ in 0..MAX_ROUNDS {
        let (_, errors) = DeTable::parse_recoverable(&clean);
        let mut blanked = false;
        for e in &errors {
            let line = e.span().map(|s| lines.line_of(s.start));
            if reported.insert(line) {
                problems.push(Problem {
                    field: "TOML syntax".to_string(),
                    message: one_line(e.message()),
                    line,
                });
            }
            if let Some(span) = e.span() {
                blanked |= blank_lines(&mut clean, span);
            }
        }
        if !blanked {
            break;
        }
    }
    clean
}

/// Replace the lines that `span` touches with spaces; false if they
/// were blank already.
fn blank_lines(text: &mut String, span: Range<usize>) -> bool {
    let start = text
        .get(..span.start.min(text.len()))
        .and_then(|t| t.rfind('\n'))
        .map_or(0, |i| i + 1);
    let end_from = span.end.max(span.start).min(text.len());
    let end = text
        .get(end_from..)
        .and_then(|t| t.find('\n'))
        .map_or(text.len(), |i| end_from + i);
    let Some(region) = text.get(start..end) else {
        return false;
    };
    if region.chars().all(|c| c == ' ' || c == '\n') {
        return false;
    }
    let blank: String = region
        .chars()
        .map(|c| {
            if c == '\n' {
                "\n".to_string()
            } else {
                " ".repeat(c.len_utf8())
            }
        })
        .collect();
    text.replace_range(start..end, &blank);
    true
}

/// The deepest key or array element of `t` whose position holds `pos`.
fn locate_table(t: &DeTable<'_>, pos: usize) -> Option<Vec<Seg>> {
    for (k, v) in t.iter() {
        if let Some(mut rest) = locate_value(v.get_ref(), pos) {
            rest.insert(0, Seg::Key(k.get_ref().to_string()));
            return Some(rest);
        }
        if k.span().contains(&pos) || v.span().contains(&pos) {
            return Some(vec![Seg::Key(k.get_ref().to_string())]);
        }
    }
    None
}

fn locate_value(v: &DeValue<'_>, pos: usize) -> Option<Vec<Seg>> {
    match v {
        DeValue::Table(t) => locate_table(t, pos),
        DeValue::Array(a) => a.iter().enumerate().find_map(|(i, e)| {
            if let Some(mut rest) = locate_value(e.get_ref(), pos) {
                rest.insert(0, Seg::Index(i));
                Some(rest)
            } else {
                e.span().contains(&pos).then(|| vec![Seg::Index(i)])
            }
        }),
        _ => None,
    }
}

/// Take the key at `path` out of `t`: the whole array when the path goes
/// into one (its other elements may depend on their positions). False if
/// nothing was taken out.
fn remove(t: &mut DeTable<'_>, path: &[Seg]) -> bool {
    let keys: Vec<&str> = path
        .iter()
        .map_while(|s| match s {
            Seg::Key(k) => Some(k.as_str()),
            Seg::Index(_) => None,
        })
        .collect();
    let Some((last, parents)) = keys.split_last() else {
        return false;
    };
    let mut table = t;
    for k in parents {
        match table.get_mut(*k).map(Spanned::get_mut) {
            Some(DeValue::Table(inner)) => table = inner,
            _ => return false,
        }
    }
    table.remove(*last).is_some()
}

/// `path` as the operator writes it: `limits.max_depth`, `domains[1]`;
/// a key that is not a bare TOML key is quoted, escapes and all.
fn path_text(path: &[Seg]) -> String {
    let mut out = String::new();
    for s in path {
        match s {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                let bare = !k.is_empty()
                    && k.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                if bare {
                    out.push_str(k);
                } else {
                    out.push_str(&format!("{k:?}"));
                }
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// Where `field` (a path as `Problems` writes it, e.g. `domains[2]` or
/// `tls.key`) is in the document: the key or element itself, else its
/// nearest ancestor that is there (a missing `tls.key` points at `[tls]`).
fn field_span(t: &DeTable<'_>, field: &str) -> Option<Range<usize>> {
    let mut segs = Vec::new();
    for part in field.split('.') {
        let (key, indexes) = match part.split_once('[') {
            Some((k, rest)) => (k, Some(rest)),
            None => (part, None),
        };
        segs.push(Seg::Key(key.to_string()));
        for i in indexes.into_iter().flat_map(|r| r.split('[')) {
            if let Ok(n) = i.trim_end_matches(']').parse() {
                segs.push(Seg::Index(n));
            }
        }
    }
    let mut found = None;
    let mut value: Option<&DeValue<'_>> = None;
    let mut table = Some(t);
    for s in &segs {
        let next = match (s, table, value) {
            (Seg::Key(k), Some(t), _) => t.get_key_value(k.as_str()).map(|(k, v)| (k.span(), v)),
            (Seg::Index(i), _, Some(DeValue::Array(a))) => a.get(*i).map(|e| (e.span(), e)),
            _ => None,
        };
        let Some((span, v)) = next else { break };
        found = Some(span);
        value = Some(v.get_ref());
        table = match v.get_ref() {
            DeValue::Table(t) => Some(t),
            _ => None,
        };
    }
    found
}

/// A message of the parser on one line: it may quote a key of the file,
/// and a quoted TOML key can hold a newline.
fn one_line(message: &str) -> String {
    let mut out = String::new();
    for c in message.trim().chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// A serde message in the words of the file rather than of the code:
/// `expected struct TracingConfig` (a Rust type's name) becomes
/// `expected a table`, `expected usize` `expected a whole number, 0 or
/// more`, `expected f64` `expected a number`.
fn plain_types(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(i) = rest.find("expected ") {
        out.push_str(&rest[..i]);
        out.push_str("expected ");
        rest = &rest[i + "expected ".len()..];
        let word_end = |r: &str| {
            r.find(|c: char| !c.is_ascii_alphanumeric() && c != '_')
                .unwrap_or(r.len())
        };
        if let Some(after) = rest.strip_prefix("struct ") {
            out.push_str("a table");
            rest = &after[word_end(after)..];
            continue;
        }
        let word = &rest[..word_end(rest)];
        let plain = match word {
            "usize" | "u64" | "u32" | "u16" | "u8" => Some("a whole number, 0 or more"),
            "i64" | "i32" | "i16" | "i8" | "isize" => Some("a whole number"),
            "f64" | "f32" => Some("a number"),
            _ => None,
        };
        if let Some(p) = plain {
            out.push_str(p);
            rest = &rest[word.len()..];
        }
    }
    out.push_str(rest);
    out
}

/// Byte offsets to 1-based line numbers.
struct LineIndex(Vec<usize>);

impl LineIndex {
    fn new(text: &str) -> LineIndex {
        LineIndex(
            text.char_indices()
                .filter(|(_, c)| *c == '\n')
                .map(|(i, _)| i)
                .collect(),
        )
    }

    fn line_of(&self, offset: usize) -> usize {
        self.0.partition_point(|&nl| nl < offset) + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<String> {
        match parse(text) {
            Ok(_) => Vec::new(),
            Err(e) => e.problems().iter().map(Problem::to_string).collect(),
        }
    }

    #[test]
    fn config_check_hid_mistakes_behind_the_first_one() {
        let text = "\
domains = [\"localhost\"]
unknown_key = 1
[limits]
max_depth = \"deep\"
max_attrs = 1
typo_here = true
[log]
level = \"warning\"
[nonsense]
a = 1
";
        let p = problems(text);
        let expect = [
            ("line 2: unknown_key: ", "unknown field"),
            ("line 4: limits.max_depth: ", "invalid type"),
            ("line 6: limits.typo_here: ", "unknown field"),
            ("line 9: nonsense: ", "unknown field"),
            ("line 5: limits.max_attrs: ", "at least 8"),
            ("line 8: log.level: ", "\"warning\""),
        ];
        for (start, has) in expect {
            assert!(
                p.iter().any(|l| l.starts_with(start) && l.contains(has)),
                "no {start:?} with {has:?} in {p:#?}"
            );
        }
        assert_eq!(p.len(), expect.len(), "{p:#?}");
    }

    #[test]
    fn syntax_errors_are_reported_with_their_line_and_checking_goes_on() {
        let text = "domains = [\"localhost\"]\nthis is not toml\n[limits]\nmax_depth = 1\n";
        let p = problems(text);
        assert!(
            p.iter().any(|l| l.starts_with("line 2: TOML syntax: ")),
            "{p:#?}"
        );
        assert!(
            p.iter()
                .any(|l| l.starts_with("line 4: limits.max_depth: ")),
            "{p:#?}"
        );
    }

    #[test]
    fn keys_that_are_not_bare_are_quoted() {
        let p = problems("\"bad\\nkey\" = 1\n");
        assert_eq!(p.len(), 1, "{p:#?}");
        assert!(p[0].starts_with("line 1: \"bad\\nkey\": "), "{p:#?}");
        assert_eq!(p[0].lines().count(), 1);
    }

    #[test]
    fn a_bad_array_element_names_its_index() {
        let p = problems("domains = [\"a.example\",\n  7]\n");
        assert!(
            p.iter().any(|l| l.starts_with("line 2: domains[1]: ")),
            "{p:#?}"
        );
    }

    #[test]
    fn missing_keys_point_at_their_table() {
        let p = problems("[tls]\ncert = \"/nonexistent/cert.pem\"\n");
        assert!(
            p.iter().any(|l| l.starts_with("line 1: tls.key: ")),
            "{p:#?}"
        );
        assert!(
            p.iter().any(|l| l.starts_with("line 2: tls.cert: ")),
            "{p:#?}"
        );
    }

    #[test]
    fn line_numbers_count_from_one() {
        let l = LineIndex::new("a\nbc\n\nd");
        assert_eq!(
            [0, 1, 2, 3, 4, 5, 6].map(|o| l.line_of(o)),
            [1, 1, 2, 2, 2, 3, 4]
        );
    }
}
