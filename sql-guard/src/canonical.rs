//! The text the database runs is the checked AST printed back, and this
//! module proves that the database will read that text as the same tokens
//! the parser read. Parser-only guards fall to differential tokenizing: a
//! comment, string or operator that one lexer ends where the other does not.
//!
//! `lex` is a deliberately small lexer for the printed text that knows each
//! engine's rules and refuses everything it is not sure about (comments of
//! any kind, `--` and `/*` inside operators, backslashes in plain strings,
//! non-ASCII outside literals, dollar quoting, variables, odd placeholders).
//! `check` then requires that sqlparser's own tokenizer starts a token at
//! exactly the same places, and that re-parsing the text gives the same AST.

use sqlparser::ast::Statement;
use sqlparser::tokenizer::{Token, Tokenizer};

use crate::Dialect;

/// Why printed SQL is not safe to send (in words for the caller).
pub type Problem = String;

/// Operators each engine reads as one token exactly as printed.
fn operators(d: Dialect) -> &'static [&'static str] {
    match d {
        Dialect::Postgres => &[
            "+", "-", "*", "/", "%", "^", "=", "<>", "!=", "<", ">", "<=", ">=", "||", "&", "|", "#", "<<",
            ">>", "~", "~*", "!~", "!~*", "~~", "~~*", "!~~", "!~~*", "^@", "->", "->>", "#>", "#>>", "@>",
            "<@", "?", "?&", "?|", "#-", "@?", "@@", "&&", "|/", "||/", "@",
        ],
        Dialect::MySql => &[
            "+", "-", "*", "/", "%", "=", "<>", "!=", "<", ">", "<=", ">=", "<=>", "||", "&&", "&", "|", "^",
            "~", "<<", ">>", "!", "->", "->>",
        ],
        Dialect::Sqlite => &[
            "+", "-", "*", "/", "%", "=", "==", "<>", "!=", "<", ">", "<=", ">=", "||", "&", "|", "~", "<<",
            ">>", "->", "->>",
        ],
    }
}

/// Characters that run together into one operator token in the engine.
fn op_char(d: Dialect, c: u8) -> bool {
    match d {
        Dialect::Postgres => b"+-*/<>=~!@#%^&|`?".contains(&c),
        Dialect::MySql | Dialect::Sqlite => b"+-*/<>=~!%^&|".contains(&c),
    }
}

fn ident_char(d: Dialect, c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || (c == b'$' && d != Dialect::Sqlite)
}

/// Byte offsets where the engine starts a token in `text`.
pub fn lex(text: &str, d: Dialect) -> Result<Vec<usize>, Problem> {
    let b = text.as_bytes();
    let mut starts = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let start = i;
        match c {
            b' ' => {
                i += 1;
                continue;
            }
            _ if !c.is_ascii() => {
                return Err("a non-ASCII character outside a string or quoted name".into());
            }
            b'\'' => i = string(b, i + 1, false)?,
            b'E' | b'e' if d == Dialect::Postgres && b.get(i + 1) == Some(&b'\'') => {
                i = string(b, i + 2, true)?
            }
            b'X' | b'x' if b.get(i + 1) == Some(&b'\'') => {
                let end = string(b, i + 2, false)?;
                if !b[i + 2..end - 1].iter().all(u8::is_ascii_hexdigit) {
                    return Err("a hex literal X'…' with a character that is not a hex digit".into());
                }
                i = end;
            }
            _ if c.is_ascii_alphabetic() || c == b'_' => {
                while i < b.len() && ident_char(d, b[i]) {
                    i += 1;
                }
                if b.get(i) == Some(&b'\'') {
                    return Err(format!(
                        "`{}'` (a prefixed string literal); write a plain '…' string",
                        &text[start..i]
                    ));
                }
                if d == Dialect::Postgres
                    && b.get(i) == Some(&b'&')
                    && text[start..i].eq_ignore_ascii_case("u")
                {
                    return Err(
                        "U& escapes (Unicode escapes in names or strings); write the name plainly".into()
                    );
                }
            }
            b'"' if d != Dialect::MySql => i = quoted(b, i + 1, b'"')?,
            b'"' => {
                return Err(
                    "a double-quoted string on MySQL; use single quotes for strings and backticks for names"
                        .into(),
                );
            }
            b'`' if d != Dialect::Postgres => i = quoted(b, i + 1, b'`')?,
            b'0'..=b'9' => i = number(b, i, d)?,
            b'.' if b.get(i + 1).is_some_and(u8::is_ascii_digit) => i = number(b, i, d)?,
            b'$' if d == Dialect::Postgres && b.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                i += 1;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
                if i < b.len() && ident_char(d, b[i]) {
                    return Err("a `$n` placeholder run into a name".into());
                }
            }
            b'$' => return Err("`$` (dollar quoting, variables or placeholders other than $1, $2, …)".into()),
            b'?' if d != Dialect::Postgres => {
                i += 1;
                if d == Dialect::Sqlite {
                    while i < b.len() && b[i].is_ascii_digit() {
                        i += 1;
                    }
                }
            }
            b':' if d == Dialect::Postgres && b.get(i + 1) == Some(&b':') => i += 2,
            b':' if d == Dialect::Postgres => i += 1,
            b'(' | b')' | b',' | b'.' => i += 1,
            b'[' | b']' if d == Dialect::Postgres => i += 1,
            b'#' if d != Dialect::Postgres => return Err("`#` (a comment on this database)".into()),
            _ if op_char(d, c) => {
                while i < b.len() && op_char(d, b[i]) {
                    i += 1;
                }
                let op = &text[start..i];
                if op.contains("--") || op.contains("/*") || op.contains("*/") {
                    return Err(format!(
                        "`{op}` contains a comment marker; separate the operators, e.g. `- -1` as `-(-1)`"
                    ));
                }
                if !operators(d).contains(&op) {
                    return Err(format!("operator `{op}` is not one sluice can pass on unambiguously"));
                }
            }
            _ => return Err(format!("the character `{}`", c as char)),
        }
        starts.push(start);
    }
    Ok(starts)
}

/// End (exclusive) of a '…' string whose body starts at `i`. Backslashes
/// are refused in plain strings: engines disagree on whether they escape.
fn string(b: &[u8], mut i: usize, escapes: bool) -> Result<usize, Problem> {
    while i < b.len() {
        match b[i] {
            b'\'' if b.get(i + 1) == Some(&b'\'') => i += 2,
            b'\'' => return Ok(i + 1),
            b'\\' if escapes => match b.get(i + 1) {
                Some(b'\'' | b'\\' | b'n' | b't' | b'r') => i += 2,
                _ => return Err("an escape in an E'…' string other than \\', \\\\, \\n, \\t, \\r".into()),
            },
            b'\\' => {
                return Err(
                    "a backslash in a string literal (databases disagree on what it escapes); pass such \
                            values as bind parameters in `params`"
                        .into(),
                );
            }
            c if c < 0x20 && !matches!(c, b'\n' | b'\t' | b'\r') || c == 0x7f => {
                return Err("a control character in a string literal".into());
            }
            _ => i += 1,
        }
    }
    Err("a string literal that is not closed".into())
}

/// End (exclusive) of a quoted name whose body starts at `i`.
fn quoted(b: &[u8], mut i: usize, q: u8) -> Result<usize, Problem> {
    while i < b.len() {
        match b[i] {
            c if c == q && b.get(i + 1) == Some(&q) => i += 2,
            c if c == q => return Ok(i + 1),
            c if c < 0x20 || c == 0x7f => return Err("a control character in a quoted name".into()),
            _ => i += 1,
        }
    }
    Err("a quoted name that is not closed".into())
}

fn number(b: &[u8], mut i: usize, d: Dialect) -> Result<usize, Problem> {
    let digits = |b: &[u8], mut i: usize| {
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        i
    };
    i = digits(b, i);
    if b.get(i) == Some(&b'.') {
        i = digits(b, i + 1);
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        let mut j = i + 1;
        if matches!(b.get(j), Some(b'+' | b'-')) {
            j += 1;
        }
        if b.get(j).is_some_and(u8::is_ascii_digit) {
            i = digits(b, j);
        }
    }
    if i < b.len() && (ident_char(d, b[i]) || b[i] == b'.') {
        return Err("a number run into a name (e.g. `1_000` or `2x`); write the number plainly".into());
    }
    Ok(i)
}

/// Byte offsets where sqlparser starts its non-whitespace tokens.
fn parser_starts(text: &str, dialect: &dyn sqlparser::dialect::Dialect) -> Result<Vec<usize>, Problem> {
    let tokens = Tokenizer::new(dialect, text).tokenize_with_location().map_err(|e| e.to_string())?;
    let offsets = char_offsets(text);
    Ok(tokens
        .iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_) | Token::EOF))
        .map(|t| offsets.at(t.span.start.line, t.span.start.column))
        .collect())
}

/// Maps sqlparser's (line, column) — lines split at '\n', columns counted
/// in characters from 1 — to byte offsets.
pub struct CharOffsets {
    /// Byte offset of each character, by line.
    lines: Vec<Vec<usize>>,
    len: usize,
}

pub fn char_offsets(text: &str) -> CharOffsets {
    let mut lines = vec![Vec::new()];
    for (i, c) in text.char_indices() {
        lines.last_mut().expect("one line").push(i);
        if c == '\n' {
            lines.push(Vec::new());
        }
    }
    CharOffsets { lines, len: text.len() }
}

impl CharOffsets {
    pub fn at(&self, line: u64, column: u64) -> usize {
        let line = (line as usize).saturating_sub(1);
        let col = (column as usize).saturating_sub(1);
        self.lines.get(line).and_then(|l| l.get(col)).copied().unwrap_or(self.len)
    }
}

/// Is `text` (the printed `stmt`) read by the engine and by sqlparser as
/// the same tokens, and does it parse back to `stmt`?
pub fn check(
    text: &str,
    stmt: &Statement,
    d: Dialect,
    dialect: &dyn sqlparser::dialect::Dialect,
) -> Result<(), Problem> {
    let engine = lex(text, d)?;
    let parser = parser_starts(text, dialect)?;
    if engine != parser {
        let at = engine.iter().zip(&parser).find(|(a, b)| a != b).map(|(a, _)| *a).unwrap_or(0);
        return Err(format!("the database would split `{}` into different tokens", excerpt(text, at)));
    }
    let again = sqlparser::parser::Parser::parse_sql(dialect, text).map_err(|e| e.to_string())?;
    if again.len() != 1 || again[0] != *stmt {
        return Err("printing the query back changes its meaning".into());
    }
    Ok(())
}

fn excerpt(text: &str, at: usize) -> &str {
    &text[at..text.floor_char_boundary(at + 24)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexes_what_printing_produces() {
        let pg = lex(
            "SELECT \"a\"\"b\", 'it''s', E'x\\ny', $1, x::TEXT, a ->> 'k', -1.5e3, t.* FROM s.t",
            Dialect::Postgres,
        )
        .unwrap();
        assert_eq!(pg.len(), 27, "{pg:?}");
        assert!(lex("SELECT `a`, 'b', ?, X'0aF' FROM t WHERE a <=> 1", Dialect::MySql).is_ok());
        assert!(lex("SELECT \"a\", `b`, ?1 FROM t WHERE a == 1", Dialect::Sqlite).is_ok());
    }

    #[test]
    fn refuses_what_engines_read_differently() {
        for (sql, d) in [
            ("SELECT --1", Dialect::Postgres),
            ("SELECT 1 #-- 'x'", Dialect::Postgres),
            ("SELECT 1 |/* x */", Dialect::Postgres),
            ("SELECT 'a\\'", Dialect::Postgres),
            ("SELECT 'a\\'", Dialect::MySql),
            ("SELECT 'a\\'", Dialect::Sqlite),
            ("SELECT \"x\"", Dialect::MySql),
            ("SELECT 1 # x", Dialect::MySql),
            ("SELECT @v", Dialect::MySql),
            ("SELECT $1::q", Dialect::Sqlite),
            ("SELECT :name", Dialect::Sqlite),
            ("SELECT @name", Dialect::Sqlite),
            ("SELECT [x] FROM t", Dialect::Sqlite),
            ("SELECT $$x$$", Dialect::Postgres),
            ("SELECT U&\"x\"", Dialect::Postgres),
            ("SELECT 1_000", Dialect::Postgres),
            ("SELECT x\u{a0}FROM t", Dialect::MySql),
            ("SELECT 'a\0b'", Dialect::Sqlite),
            ("SELECT N'x'", Dialect::MySql),
            ("SELECT a <>- 1", Dialect::Postgres),
        ] {
            assert!(lex(sql, d).is_err(), "{d:?}: {sql}");
        }
    }
}
