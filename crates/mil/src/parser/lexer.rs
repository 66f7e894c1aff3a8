//! Splits MIL text into tokens, each tagged with its 1-based line and column.
//!
//! The whole input is tokenized up front: MIL programs are small (kilobytes), and a token
//! vector lets the grammar look ahead freely without re-scanning.

use crate::error::{MilError, Result};
use std::fmt;

/// A 1-based position in the source; columns count characters, not bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Pos {
    pub line: usize,
    pub column: usize,
}

impl Pos {
    /// A parse error at this position.
    pub fn error(self, message: impl Into<String>) -> MilError {
        MilError::Parse {
            line: self.line,
            column: self.column,
            message: message.into(),
        }
    }
}

/// How a number literal was written; decides which conversions accept it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NumberForm {
    /// `42`
    DecimalInt,
    /// `1.5`, `1e-5`, `2.5e+3`
    DecimalFloat,
    /// `0x1F`
    HexInt,
    /// `0x1p-3`, `0x1.8p+2`
    HexFloat,
}

/// One token. Signs are separate tokens so `-inf` and `- 1` both parse.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Tok {
    Ident(String),
    /// An unsigned number literal with its source text.
    Number(String, NumberForm),
    /// A string literal, escapes already decoded.
    Str(String),
    /// One of `( ) [ ] { } < > , = ; - + ?`.
    Punct(char),
    /// `->`
    Arrow,
    Eof,
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Ident(s) => write!(f, "`{s}`"),
            Tok::Number(s, _) => write!(f, "number `{s}`"),
            Tok::Str(s) => write!(f, "string {s:?}"),
            Tok::Punct(c) => write!(f, "`{c}`"),
            Tok::Arrow => f.write_str("`->`"),
            Tok::Eof => f.write_str("end of input"),
        }
    }
}

/// A token and where it starts.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Token {
    pub tok: Tok,
    pub pos: Pos,
}

/// Tokenizes `text`; the result always ends with an [`Tok::Eof`] token.
pub(crate) fn tokenize(text: &str) -> Result<Vec<Token>> {
    let mut lexer = Lexer {
        chars: text.chars().collect(),
        at: 0,
        pos: Pos { line: 1, column: 1 },
    };
    let mut tokens = Vec::new();
    loop {
        lexer.skip_space_and_comments();
        let pos = lexer.pos;
        let Some(c) = lexer.peek(0) else {
            tokens.push(Token { tok: Tok::Eof, pos });
            return Ok(tokens);
        };
        let tok = if c.is_ascii_alphabetic() || c == '_' {
            Tok::Ident(lexer.take_while(|c| c.is_ascii_alphanumeric() || c == '_'))
        } else if c.is_ascii_digit() {
            lexer.number()?
        } else if c == '"' {
            Tok::Str(lexer.string()?)
        } else if c == '-' && lexer.peek(1) == Some('>') {
            lexer.bump();
            lexer.bump();
            Tok::Arrow
        } else if "()[]{}<>,=;-+?".contains(c) {
            lexer.bump();
            Tok::Punct(c)
        } else {
            return Err(pos.error(format!(
                "unexpected character {c:?}; MIL uses identifiers, numbers, strings and `()[]{{}}<>,=;`"
            )));
        };
        tokens.push(Token { tok, pos });
    }
}

struct Lexer {
    chars: Vec<char>,
    at: usize,
    pos: Pos,
}

impl Lexer {
    fn peek(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.at + ahead).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek(0)?;
        self.at += 1;
        if c == '\n' {
            self.pos.line += 1;
            self.pos.column = 1;
        } else {
            self.pos.column += 1;
        }
        Some(c)
    }

    fn take_while(&mut self, keep: impl Fn(char) -> bool) -> String {
        let mut s = String::new();
        while let Some(c) = self.peek(0).filter(|&c| keep(c)) {
            s.push(c);
            self.bump();
        }
        s
    }

    fn skip_space_and_comments(&mut self) {
        loop {
            match self.peek(0) {
                Some(c) if c.is_whitespace() => {
                    self.bump();
                }
                Some('/') if self.peek(1) == Some('/') => {
                    while self.peek(0).is_some_and(|c| c != '\n') {
                        self.bump();
                    }
                }
                _ => return,
            }
        }
    }

    /// A number starting at a digit: decimal `12`, `1.5e-3`, or hex `0x1F`, `0x1.8p+2`.
    fn number(&mut self) -> Result<Tok> {
        let start = self.pos;
        let mut text = String::new();
        let form = if self.peek(0) == Some('0') && matches!(self.peek(1), Some('x' | 'X')) {
            text.push_str("0x");
            self.bump();
            self.bump();
            let whole = self.take_while(|c| c.is_ascii_hexdigit());
            let mut has_digits = !whole.is_empty();
            text += &whole;
            let mut form = NumberForm::HexInt;
            if self.peek(0) == Some('.') {
                self.bump();
                text.push('.');
                let fraction = self.take_while(|c| c.is_ascii_hexdigit());
                has_digits |= !fraction.is_empty();
                text += &fraction;
                form = NumberForm::HexFloat;
            }
            if !has_digits {
                return Err(start.error("hex number has no digits after `0x`; write e.g. `0x1p-3`"));
            }
            if matches!(self.peek(0), Some('p' | 'P')) {
                self.bump();
                text.push('p');
                text += &self.exponent_digits(start)?;
                form = NumberForm::HexFloat;
            } else if form == NumberForm::HexFloat {
                return Err(start.error(format!(
                    "hex float `{text}` needs a binary exponent, e.g. `{text}p0`"
                )));
            }
            form
        } else {
            text += &self.take_while(|c| c.is_ascii_digit());
            let mut form = NumberForm::DecimalInt;
            if self.peek(0) == Some('.') {
                self.bump();
                text.push('.');
                text += &self.take_while(|c| c.is_ascii_digit());
                form = NumberForm::DecimalFloat;
            }
            if matches!(self.peek(0), Some('e' | 'E')) {
                self.bump();
                text.push('e');
                text += &self.exponent_digits(start)?;
                form = NumberForm::DecimalFloat;
            }
            form
        };
        if let Some(c) = self
            .peek(0)
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '.')
        {
            return Err(start.error(format!(
                "malformed number: `{text}` is followed by {c:?}; separate it with `,` or `)`"
            )));
        }
        Ok(Tok::Number(text, form))
    }

    /// The `[+-]digits` after an `e` or `p`.
    fn exponent_digits(&mut self, start: Pos) -> Result<String> {
        let mut text = String::new();
        if let Some(sign @ ('+' | '-')) = self.peek(0) {
            self.bump();
            text.push(sign);
        }
        let digits = self.take_while(|c| c.is_ascii_digit());
        if digits.is_empty() {
            return Err(
                start.error("number has an exponent without digits; write e.g. `1e-5` or `0x1p-3`")
            );
        }
        Ok(text + &digits)
    }

    /// A double-quoted string with escapes `\"`, `\\`, `\n`, `\r`, `\t`.
    fn string(&mut self) -> Result<String> {
        let start = self.pos;
        self.bump();
        let mut s = String::new();
        loop {
            let at = self.pos;
            match self.bump() {
                Some('"') => return Ok(s),
                Some('\\') => match self.bump() {
                    Some('"') => s.push('"'),
                    Some('\\') => s.push('\\'),
                    Some('n') => s.push('\n'),
                    Some('r') => s.push('\r'),
                    Some('t') => s.push('\t'),
                    other => {
                        let shown = other.map_or("end of input".to_string(), |c| format!("{c:?}"));
                        return Err(at.error(format!(
                            "unknown escape `\\` followed by {shown} in string; use `\\\"`, `\\\\`, `\\n`, `\\r` or `\\t`"
                        )));
                    }
                },
                Some('\n') | None => {
                    return Err(
                        start.error("unterminated string; close it with `\"` on the same line")
                    );
                }
                Some(c) => s.push(c),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(text: &str) -> Vec<Tok> {
        tokenize(text).unwrap().into_iter().map(|t| t.tok).collect()
    }

    #[test]
    fn numbers_keep_their_text_and_form() {
        assert_eq!(
            toks("1 2.5 1e-5 0x1F 0x1.8p+2 0x1p-3"),
            vec![
                Tok::Number("1".into(), NumberForm::DecimalInt),
                Tok::Number("2.5".into(), NumberForm::DecimalFloat),
                Tok::Number("1e-5".into(), NumberForm::DecimalFloat),
                Tok::Number("0x1F".into(), NumberForm::HexInt),
                Tok::Number("0x1.8p+2".into(), NumberForm::HexFloat),
                Tok::Number("0x1p-3".into(), NumberForm::HexFloat),
                Tok::Eof,
            ]
        );
    }

    #[test]
    fn arrow_minus_and_comments() {
        assert_eq!(
            toks("} -> (a); // done\n-x"),
            vec![
                Tok::Punct('}'),
                Tok::Arrow,
                Tok::Punct('('),
                Tok::Ident("a".into()),
                Tok::Punct(')'),
                Tok::Punct(';'),
                Tok::Punct('-'),
                Tok::Ident("x".into()),
                Tok::Eof,
            ]
        );
    }

    #[test]
    fn positions_count_characters_from_one() {
        let t = tokenize("ab\n  \"é\" cd").unwrap();
        assert_eq!(t[0].pos, Pos { line: 1, column: 1 });
        assert_eq!(t[1].pos, Pos { line: 2, column: 3 });
        assert_eq!(t[2].pos, Pos { line: 2, column: 7 });
        assert_eq!(t[3].pos, Pos { line: 2, column: 9 });
    }

    #[test]
    fn strings_decode_escapes() {
        assert_eq!(toks(r#""a\"b\\c\n""#)[0], Tok::Str("a\"b\\c\n".into()));
    }

    #[test]
    fn lexical_errors_point_at_the_problem() {
        let err = |t: &str| match tokenize(t) {
            Err(MilError::Parse {
                line,
                column,
                message,
            }) => (line, column, message),
            other => panic!("expected a parse error, got {other:?}"),
        };
        let (l, c, m) = err("a\n  \"open");
        assert_eq!((l, c), (2, 3));
        assert!(m.contains("unterminated string"), "{m}");
        let (l, c, m) = err("x = 12ab");
        assert_eq!((l, c), (1, 5));
        assert!(m.contains("malformed number"), "{m}");
        let (l, c, m) = err("a @");
        assert_eq!((l, c), (1, 3));
        assert!(m.contains("unexpected character '@'"), "{m}");
        let (l, c, m) = err("\"a\\q\"");
        assert_eq!((l, c), (1, 3));
        assert!(m.contains("unknown escape"), "{m}");
        let (_, _, m) = err("1e");
        assert!(m.contains("exponent without digits"), "{m}");
        let (_, _, m) = err("0x1.8");
        assert!(m.contains("binary exponent"), "{m}");
    }
}
