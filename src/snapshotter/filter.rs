//! containerd's list filters, with containerd's grammar (its `filters`
//! package):
//!
//! ```text
//! selectors := selector ("," selector)*
//! selector  := fieldpath (operator value)?
//! fieldpath := field ("." field)*
//! field     := quoted | [A-Za-z0-9_-]+
//! operator  := "==" | "!=" | "~="
//! value     := quoted | [^\s,]+
//! quoted    := "..." (Go string escapes); /.../ and |...| also after ~=
//! ```
//!
//! A selector without an operator tests presence. `==` needs the field present
//! and equal; `!=` compares the value, an absent field reading as `""` (so
//! `parent!=""` keeps only snapshots with a parent); `~=` is an unanchored
//! regular expression. Commas inside one filter AND its selectors, separate
//! filters are ORed, and an empty filter matches everything. Snapshot fields
//! are `kind`, `name`, `parent` and `labels.KEY` (the rest of the path joined
//! with `.`); any other field is absent. A syntax error is InvalidArgument
//! naming the byte position; unlike containerd, so is a `~=` value that is
//! not a valid regular expression (containerd matches nothing with it).

use regex::{Regex, RegexBuilder};
use std::str::Chars;
use strata_driver_api::{Error, Info, Result};

/// Largest compiled `~=` expression, so a hostile filter cannot exhaust memory.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// What is wrong with a quoted literal.
type QuoteResult<T> = std::result::Result<T, &'static str>;

/// Go's message for a malformed quoted literal.
const QUOTE_SYNTAX: &str = "quote syntax error";

/// A parsed filter set: matches when any of its filters matches.
#[derive(Debug, Clone, Default)]
pub struct Filters(Vec<Vec<Selector>>);

#[derive(Debug, Clone)]
struct Selector {
    path: Vec<String>,
    test: Test,
}

#[derive(Debug, Clone)]
enum Test {
    Present,
    Equal(String),
    NotEqual(String),
    Matches(Regex),
}

impl Filters {
    /// Parses containerd filter strings; an empty list, or an empty string
    /// among them, matches everything.
    pub fn parse(filters: &[String]) -> Result<Self> {
        let all = filters
            .iter()
            .map(|f| Parser::new(f).parse())
            .collect::<Result<Vec<_>>>()?;
        Ok(Self(all))
    }

    /// Whether `info` passes.
    pub fn matches(&self, info: &Info) -> bool {
        self.matches_fields(|path| snapshot_field(info, path))
    }

    /// Whether an object whose fields `lookup` reads passes.
    fn matches_fields<'a>(&self, lookup: impl Fn(&[String]) -> Option<&'a str>) -> bool {
        self.0.is_empty()
            || self
                .0
                .iter()
                .any(|all| all.iter().all(|s| s.matches(lookup(&s.path))))
    }
}

/// containerd's snapshot adaptor: the value of `path` in `info`, if present.
fn snapshot_field<'a>(info: &'a Info, path: &[String]) -> Option<&'a str> {
    let nonempty = |s: &'a str| (!s.is_empty()).then_some(s);
    match path.first().map(String::as_str)? {
        "kind" => Some(info.kind.as_str()),
        "name" => nonempty(info.name.as_str()),
        "parent" => info.parent.as_ref().and_then(|p| nonempty(p.as_str())),
        "labels" if path.len() > 1 => info.labels.get(&path[1..].join(".")).map(String::as_str),
        _ => None,
    }
}

impl Selector {
    fn matches(&self, value: Option<&str>) -> bool {
        match &self.test {
            Test::Present => value.is_some(),
            Test::Equal(v) => value == Some(v.as_str()),
            Test::NotEqual(v) => value.unwrap_or("") != v,
            Test::Matches(re) => re.is_match(value.unwrap_or("")),
        }
    }
}

/// One token of the filter language, with the byte offset it starts at.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    End,
    /// A quoted literal, quotes and escapes still in place.
    Quoted(String),
    Value(String),
    Field(String),
    /// `,` or `.`.
    Separator(char),
    Operator(String),
    /// A bad literal, with what is wrong with it.
    Illegal(&'static str),
    /// Any other character.
    Other(char),
}

/// containerd's scanner: after an operator the next word is a value.
struct Scanner<'a> {
    input: &'a str,
    pos: usize,
    value: bool,
}

impl<'a> Scanner<'a> {
    fn peek_char(&self) -> Option<char> {
        self.input[self.pos..].chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek_char()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn eat_while(&mut self, keep: impl Fn(char) -> bool) {
        while self.peek_char().is_some_and(&keep) {
            self.bump();
        }
    }

    /// The next token and its start.
    fn scan(&mut self) -> (usize, Token) {
        self.eat_while(char::is_whitespace);
        let start = self.pos;
        let Some(c) = self.bump() else {
            return (start, Token::End);
        };
        let text = |s: &Self| s.input[start..s.pos].to_owned();
        let token = match c {
            '\0' => Token::Illegal("unexpected null"),
            '"' | '/' | '|' => match self.scan_quoted(c) {
                Ok(()) => Token::Quoted(text(self)),
                Err(why) => Token::Illegal(why),
            },
            ',' | '.' => {
                self.value = false;
                Token::Separator(c)
            }
            '=' | '!' | '~' => {
                self.eat_while(|c| matches!(c, '=' | '!' | '~'));
                self.value = true;
                Token::Operator(text(self))
            }
            _ if self.value => {
                self.eat_while(is_value_char);
                self.value = false;
                Token::Value(text(self))
            }
            _ if is_field_char(c) => {
                self.eat_while(is_field_char);
                Token::Field(text(self))
            }
            _ => Token::Other(c),
        };
        (start, token)
    }

    /// Consumes a quoted literal up to its closing `quote`.
    fn scan_quoted(&mut self, quote: char) -> QuoteResult<()> {
        loop {
            match self.bump() {
                None | Some('\n') => return Err("quoted literal not terminated"),
                Some('\0') => return Err("unexpected null"),
                Some('\\') => {
                    self.bump();
                }
                Some(c) if c == quote => return Ok(()),
                Some(_) => {}
            }
        }
    }
}

fn is_field_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

fn is_value_char(c: char) -> bool {
    c != ',' && !c.is_whitespace() && !c.is_control()
}

/// Recursive-descent parser for one filter string.
struct Parser<'a> {
    input: &'a str,
    scanner: Scanner<'a>,
}

impl<'a> Parser<'a> {
    fn new(input: &'a str) -> Self {
        let scanner = Scanner {
            input,
            pos: 0,
            value: false,
        };
        Self { input, scanner }
    }

    fn error(&self, pos: usize, msg: &str) -> Error {
        let input = self.input;
        let shown = match input[pos.min(input.len())..].chars().next() {
            Some(c) => {
                let after = pos + c.len_utf8();
                format!("{} >|{c}|< {}", &input[..pos], &input[after..])
            }
            None => input.to_owned(),
        };
        Error::InvalidArgument(format!(
            "filters: parse error at byte {pos}: [{shown}]: {msg}"
        ))
    }

    fn parse(mut self) -> Result<Vec<Selector>> {
        if self.input.is_empty() {
            return Ok(Vec::new());
        }
        let mut all = vec![self.selector()?];
        loop {
            match self.scanner.peek_char() {
                None => return Ok(all),
                Some(',') => {
                    self.scanner.scan();
                    all.push(self.selector()?);
                }
                Some(c) => {
                    let pos = self.scanner.pos;
                    return Err(self.error(pos, &format!("unexpected input: {c}")));
                }
            }
        }
    }

    fn selector(&mut self) -> Result<Selector> {
        let path = self.fieldpath()?;
        if matches!(self.scanner.peek_char(), None | Some(',')) {
            let test = Test::Present;
            return Ok(Selector { path, test });
        }
        let op = self.operator()?;
        let (value_pos, value) = self.value(op == "~=")?;
        let test = match op {
            "==" => Test::Equal(value),
            "!=" => Test::NotEqual(value),
            _ => Test::Matches(self.regex(value_pos, &value)?),
        };
        Ok(Selector { path, test })
    }

    fn fieldpath(&mut self) -> Result<Vec<String>> {
        let mut path = vec![self.field()?];
        while self.scanner.peek_char() == Some('.') {
            self.scanner.scan();
            path.push(self.field()?);
        }
        Ok(path)
    }

    fn field(&mut self) -> Result<String> {
        match self.scanner.scan() {
            (_, Token::Field(s)) => Ok(s),
            (pos, Token::Quoted(s)) => self.unquote(pos, &s, false),
            (pos, Token::Illegal(why)) => Err(self.error(pos, why)),
            (pos, _) => Err(self.error(pos, "expected field or quoted")),
        }
    }

    fn operator(&mut self) -> Result<&'static str> {
        match self.scanner.scan() {
            (pos, Token::Operator(op)) => match op.as_str() {
                "==" => Ok("=="),
                "!=" => Ok("!="),
                "~=" => Ok("~="),
                _ => Err(self.error(pos, &format!("unsupported operator {op:?}"))),
            },
            (pos, Token::Illegal(why)) => Err(self.error(pos, why)),
            (pos, _) => Err(self.error(pos, r#"expected an operator ("=="|"!="|"~=")"#)),
        }
    }

    fn value(&mut self, alt_quotes: bool) -> Result<(usize, String)> {
        match self.scanner.scan() {
            (pos, Token::Value(s) | Token::Field(s)) => Ok((pos, s)),
            (pos, Token::Quoted(s)) => Ok((pos, self.unquote(pos, &s, alt_quotes)?)),
            (pos, Token::Illegal(why)) => Err(self.error(pos, why)),
            (pos, _) => Err(self.error(pos, "expected value or quoted")),
        }
    }

    fn regex(&self, pos: usize, value: &str) -> Result<Regex> {
        RegexBuilder::new(value)
            .size_limit(REGEX_SIZE_LIMIT)
            .build()
            .map_err(|e| self.error(pos, &format!("bad regular expression: {e}")))
    }

    fn unquote(&self, pos: usize, quoted: &str, alt_quotes: bool) -> Result<String> {
        if !alt_quotes && !quoted.starts_with('"') {
            return Err(self.error(pos, "invalid quote encountered"));
        }
        unquote(quoted).map_err(|why| self.error(pos, &format!("unquoting failed: {why}")))
    }
}

/// Decodes a literal quoted by `"`, `/` or `|` with Go's string escapes
/// (`\/` and `\|` only inside their own quotes).
fn unquote(quoted: &str) -> QuoteResult<String> {
    let quote = quoted.chars().next().ok_or(QUOTE_SYNTAX)?;
    let body = quoted
        .get(1..quoted.len() - quote.len_utf8())
        .filter(|_| quoted.len() >= 2 && quoted.ends_with(quote))
        .ok_or(QUOTE_SYNTAX)?;
    let mut out = Vec::with_capacity(body.len());
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        match c {
            '\n' => return Err("newline in quoted literal"),
            '\\' => unescape(&mut chars, quote, &mut out)?,
            c if c == quote => return Err(QUOTE_SYNTAX),
            c => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
        }
    }
    String::from_utf8(out).map_err(|_| "escapes spell invalid UTF-8")
}

/// Decodes one escape (after its `\`) onto `out`.
fn unescape(chars: &mut Chars<'_>, quote: char, out: &mut Vec<u8>) -> QuoteResult<()> {
    let bytes = match chars.clone().next().ok_or(QUOTE_SYNTAX)? {
        '0'..='7' => vec![u8::try_from(digits(chars, 3, 8)?).map_err(|_| QUOTE_SYNTAX)?],
        c => {
            chars.next();
            match c {
                'a' => vec![0x07],
                'b' => vec![0x08],
                'f' => vec![0x0c],
                'n' => vec![b'\n'],
                'r' => vec![b'\r'],
                't' => vec![b'\t'],
                'v' => vec![0x0b],
                '\\' => vec![b'\\'],
                'x' => vec![digits(chars, 2, 16)? as u8],
                'u' | 'U' => {
                    let v = digits(chars, if c == 'u' { 4 } else { 8 }, 16)?;
                    let c = char::from_u32(v).ok_or(QUOTE_SYNTAX)?;
                    c.encode_utf8(&mut [0; 4]).as_bytes().to_vec()
                }
                '"' | '/' | '|' if c == quote => vec![c as u8],
                _ => return Err(QUOTE_SYNTAX),
            }
        }
    };
    out.extend(bytes);
    Ok(())
}

/// Reads exactly `n` digits in `radix`.
fn digits(chars: &mut Chars<'_>, n: usize, radix: u32) -> QuoteResult<u32> {
    (0..n).try_fold(0u32, |v, _| {
        let d = chars.next().and_then(|c| c.to_digit(radix));
        Ok(v * radix + d.ok_or(QUOTE_SYNTAX)?)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_driver_api::{Kind, Labels};

    /// containerd's filter test corpus (`filters/filter_test.go`).
    struct Entry {
        name: &'static str,
        other: &'static str,
        labels: &'static [(&'static str, &'static str)],
    }

    const CORPUS: &[Entry] = &[
        Entry {
            name: "foo",
            other: "",
            labels: &[("foo", "true")],
        },
        Entry {
            name: "bar",
            other: "",
            labels: &[],
        },
        Entry {
            name: "foo",
            other: "",
            labels: &[("foo", "present"), ("more complex label", "present")],
        },
        Entry {
            name: "bar",
            other: "",
            labels: &[("bar", "true")],
        },
        Entry {
            name: "fooer",
            other: "",
            labels: &[("more complex label with \\ and \"", "present")],
        },
        Entry {
            name: "fooer",
            other: "",
            labels: &[("more complex label with \\ and \".post", "present")],
        },
        Entry {
            name: "baz",
            other: "too complex, yo",
            labels: &[],
        },
        Entry {
            name: "bazo",
            other: "abc",
            labels: &[],
        },
        Entry {
            name: "compound",
            other: "",
            labels: &[("foo", "omg_asdf.asdf-qwer")],
        },
    ];

    fn field(e: &Entry, path: &[String]) -> Option<&'static str> {
        let nonempty = |s: &'static str| (!s.is_empty()).then_some(s);
        match path[0].as_str() {
            "name" => nonempty(e.name),
            "other" => nonempty(e.other),
            "labels" => {
                let key = path[1..].join(".");
                e.labels.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
            }
            _ => None,
        }
    }

    /// Indices of the corpus entries `input` selects, or its error text.
    fn select(input: &str) -> std::result::Result<Vec<usize>, String> {
        let f = Filters::parse(&[input.to_owned()]).map_err(|e| match e {
            Error::InvalidArgument(m) => m,
            e => panic!("{input:?}: not InvalidArgument: {e}"),
        })?;
        Ok((0..CORPUS.len())
            .filter(|&i| f.matches_fields(|p| field(&CORPUS[i], p)))
            .collect())
    }

    #[test]
    fn containerd_parser_table() {
        let all: Vec<usize> = (0..CORPUS.len()).collect();
        let cases: &[(&str, &[usize])] = &[
            ("", &all),
            ("name", &all),
            ("labels.foo", &[0, 2, 8]),
            ("labels.foo,name", &[0, 2, 8]),
            ("labels.foo==true", &[0]),
            ("labels.foo==omg_asdf.asdf-qwer", &[8]),
            ("name==bar", &[1, 3]),
            ("name!=bar", &[0, 2, 4, 5, 6, 7, 8]),
            ("name==bar,labels.bar", &[3]),
            ("other==\"too complex, yo\"", &[6]),
            ("other~=[abc]+,name!=foo", &[6, 7]),
            ("other~=/[abc]+/,name!=foo", &[6, 7]),
            ("other~=/[abc]{1,2}/,name!=foo", &[6, 7]),
            ("other~=/[abc]{0,1}\"\\//,name!=foo", &[]),
            ("name==bar,labels.bar==true", &[3]),
            ("name==bar,labels.bar==wrong", &[]),
            (r#"name==foo,labels."more complex label""#, &[2]),
            (
                r#"labels."more complex label with \\ and \""==present"#,
                &[4],
            ),
            (
                r#"labels."more complex label with \\ and \"".post==present"#,
                &[5],
            ),
            ("name == bar", &[1, 3]),
            ("other==\"\"", &[]),
            ("other!=\"\"", &[6, 7]),
            ("unknown!=x", &all),
            ("unknown", &[]),
        ];
        for (input, want) in cases {
            assert_eq!(select(input).as_deref(), Ok(*want), "{input:?}");
        }
    }

    #[test]
    fn containerd_error_table() {
        let cases: &[(&str, &str)] = &[
            (
                "labels.|foo|==omg_asdf.asdf-qwer",
                "byte 7: [labels. >|||< foo|==omg_asdf.asdf-qwer]: invalid quote encountered",
            ),
            (
                r#"labels.?"more complex label with \\ and \"".post==present"#,
                r#"byte 7: [labels. >|?|< "more complex label with \\ and \"".post==present]: expected field or quoted"#,
            ),
            (
                "name==foo,",
                "byte 10: [name==foo,]: expected field or quoted",
            ),
            ("labels.", "byte 7: [labels.]: expected field or quoted"),
            (
                "image~=,id?=?fbaq",
                "byte 7: [image~= >|,|< id?=?fbaq]: expected value or quoted",
            ),
            (
                "labels.ns/key==value",
                "byte 9: [labels.ns >|/|< key==value]: quoted literal not terminated",
            ),
            (
                "labels.key==/value",
                "byte 12: [labels.key== >|/|< value]: quoted literal not terminated",
            ),
            (
                "name===x",
                "byte 4: [name >|=|< ==x]: unsupported operator \"===\"",
            ),
            (
                "name==x y",
                "byte 7: [name==x >| |< y]: unexpected input:  ",
            ),
            (
                "name==/x/",
                "byte 6: [name== >|/|< x/]: invalid quote encountered",
            ),
            (
                "name==\"\\q\"",
                "byte 6: [name== >|\"|< \\q\"]: unquoting failed: quote syntax error",
            ),
            ("name~=(", "byte 6: [name~= >|(|< ]: bad regular expression"),
            ("   ", "byte 3: [   ]: expected field or quoted"),
        ];
        for (input, want) in cases {
            let got = select(input).expect_err(input);
            assert!(got.starts_with("filters: parse error at "), "{got}");
            assert!(got.contains(want), "{input:?}: {got:?} lacks {want:?}");
        }
    }

    #[test]
    fn escapes_decode_like_go() {
        assert_eq!(
            unquote(r#""a\tb\x41\101\u00e9\U0001F600\"""#).unwrap(),
            "a\tbAAé😀\""
        );
        assert_eq!(unquote(r"/a\/b/").unwrap(), "a/b");
        assert_eq!(unquote(r"|a\|b|").unwrap(), "a|b");
        assert!(unquote(r#""a\/b""#).is_err());
        assert!(unquote(r#""\xff""#).is_err());
        assert!(unquote(r#""\400""#).is_err());
    }

    fn info(parent: Option<&str>, labels: &[(&str, &str)]) -> Info {
        Info {
            name: "a".into(),
            parent: parent.map(Into::into),
            kind: Kind::Active,
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Labels>(),
            created_ns: 0,
            updated_ns: 0,
        }
    }

    fn f(s: &[&str]) -> Filters {
        Filters::parse(&s.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn snapshot_fields() {
        let a = info(
            Some("base"),
            &[("x.y", "1"), ("containerd.io/gc.root", "w")],
        );
        let orphan = info(None, &[("containerd.io/gc.root", "w")]);
        let walk = f(&[r#"parent!="",labels."containerd.io/gc.root"==w"#]);
        assert!(walk.matches(&a));
        assert!(!walk.matches(&orphan));
        assert!(f(&["kind==active"]).matches(&a));
        assert!(!f(&["kind==committed"]).matches(&a));
        assert!(f(&["parent==base"]).matches(&a));
        assert!(f(&["parent~=^ba"]).matches(&a));
        assert!(f(&["labels.\"x.y\"==1", "name==zz"]).matches(&a));
        assert!(f(&["labels.x.y"]).matches(&a));
        assert!(!f(&["labels"]).matches(&a));
        assert!(f(&["name==b", ""]).matches(&a));
    }
}
