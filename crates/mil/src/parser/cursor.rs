//! A read position in the token vector, with the small expect/peek helpers the grammar uses.

use super::lexer::{Pos, Tok, Token};
use crate::error::{MilError, Result};

/// Walks the tokens of one input. The cursor never moves past the final [`Tok::Eof`], and
/// lookahead beyond the end sees that Eof, so the grammar needs no bounds handling.
pub(crate) struct Cursor {
    tokens: Vec<Token>,
    at: usize,
    eof: Token,
}

impl Cursor {
    /// A cursor at the first token of `tokens` (as `tokenize` returns them, ending in Eof).
    pub fn new(tokens: Vec<Token>) -> Cursor {
        let eof = match tokens.last() {
            Some(last) if last.tok == Tok::Eof => last.clone(),
            _ => Token {
                tok: Tok::Eof,
                pos: Pos { line: 1, column: 1 },
            },
        };
        Cursor { tokens, at: 0, eof }
    }

    /// The token `ahead` places forward (0 = current), or Eof past the end.
    pub fn peek_at(&self, ahead: usize) -> &Token {
        self.tokens.get(self.at + ahead).unwrap_or(&self.eof)
    }

    pub fn peek(&self) -> &Token {
        self.peek_at(0)
    }

    pub fn pos(&self) -> Pos {
        self.peek().pos
    }

    /// Returns the current token and moves past it (staying on Eof).
    pub fn next(&mut self) -> Token {
        let token = self.peek().clone();
        if token.tok != Tok::Eof {
            self.at += 1;
        }
        token
    }

    /// True if the current token is punctuation `c`.
    pub fn at_punct(&self, c: char) -> bool {
        self.peek().tok == Tok::Punct(c)
    }

    /// Consumes punctuation `c` if it is next.
    pub fn eat_punct(&mut self, c: char) -> bool {
        let hit = self.at_punct(c);
        if hit {
            self.next();
        }
        hit
    }

    /// An error at the current token: "expected WHAT `context`, found TOKEN".
    pub fn unexpected(&self, what: &str) -> MilError {
        let t = self.peek();
        t.pos.error(format!("expected {what}, found {}", t.tok))
    }

    /// Consumes punctuation `c` or fails saying what it was for.
    pub fn expect_punct(&mut self, c: char, context: &str) -> Result<Pos> {
        if self.at_punct(c) {
            Ok(self.next().pos)
        } else {
            Err(self.unexpected(&format!("`{c}` {context}")))
        }
    }

    /// Consumes `->`.
    pub fn expect_arrow(&mut self, context: &str) -> Result<Pos> {
        if self.peek().tok == Tok::Arrow {
            Ok(self.next().pos)
        } else {
            Err(self.unexpected(&format!("`->` {context}")))
        }
    }

    /// Consumes an identifier, returning it with its position.
    pub fn expect_ident(&mut self, what: &str) -> Result<(String, Pos)> {
        match &self.peek().tok {
            Tok::Ident(name) => {
                let name = name.clone();
                Ok((name, self.next().pos))
            }
            _ => Err(self.unexpected(what)),
        }
    }

    /// Consumes the identifier `word` (a keyword such as `program` or `func`).
    pub fn expect_keyword(&mut self, word: &str, context: &str) -> Result<Pos> {
        match &self.peek().tok {
            Tok::Ident(name) if name == word => Ok(self.next().pos),
            _ => Err(self.unexpected(&format!("`{word}` {context}"))),
        }
    }

    /// Consumes a string literal token.
    pub fn expect_str(&mut self, what: &str) -> Result<(String, Pos)> {
        match &self.peek().tok {
            Tok::Str(s) => {
                let s = s.clone();
                Ok((s, self.next().pos))
            }
            _ => Err(self.unexpected(what)),
        }
    }

    /// True if the current token is the identifier `word`.
    pub fn at_ident(&self, word: &str) -> bool {
        matches!(&self.peek().tok, Tok::Ident(name) if name == word)
    }
}
