//! What listings share: `--filter KEY=VALUE` sets, `*` patterns, and
//! `--format` templates.
//!
//! Templates are rendered by minijinja. Docker writes fields as
//! `{{.Field}}` (Go templates); [`translate`] drops the dot that starts a
//! field name inside `{{ }}` so `{{.ID}} {{.Size}}` becomes minijinja's
//! `{{ID}} {{Size}}`. Unknown fields are errors, not empty text.

use anyhow::{bail, Context, Result};

use super::output::outln;

/// `--filter` values by key. Values of one key are alternatives (any may
/// match); different keys must all match, as docker's filters.
#[derive(Debug, Default)]
pub struct Filters(Vec<(String, String)>);

impl Filters {
    /// Parses `KEY=VALUE` texts, refusing keys not in `allowed` (named with
    /// the listing, e.g. `images`).
    pub fn parse(texts: &[String], allowed: &[&str], listing: &str) -> Result<Self> {
        let mut out = Vec::new();
        for text in texts {
            let Some((key, value)) = text.split_once('=') else {
                bail!("filter {text:?} is not KEY=VALUE");
            };
            if !allowed.contains(&key) {
                bail!(
                    "{key:?} is not a filter of {listing}: use {}",
                    allowed.join(", ")
                );
            }
            out.push((key.to_owned(), value.to_owned()));
        }
        Ok(Self(out))
    }

    /// Refuses a value of `key` not in `allowed`.
    pub fn only(self, key: &str, allowed: &[&str]) -> Result<Self> {
        if let Some(bad) = self.values(key).find(|v| !allowed.contains(v)) {
            bail!("filter {key}={bad}: use {key}={}", allowed.join("|"));
        }
        Ok(self)
    }

    /// The values given for `key`.
    pub fn values<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The last value given for `key`.
    pub fn last<'a>(&'a self, key: &'a str) -> Option<&'a str> {
        self.values(key).last()
    }

    /// Whether `test` holds for every value of `key` (true when absent):
    /// docker's rule for several `label=` filters.
    pub fn all(&self, key: &str, test: impl FnMut(&str) -> bool) -> bool {
        self.values(key).all(test)
    }

    /// Whether `key` is absent, or `test` holds for one of its values.
    pub fn any(&self, key: &str, mut test: impl FnMut(&str) -> bool) -> bool {
        let mut given = false;
        for v in self.values(key) {
            given = true;
            if test(v) {
                return true;
            }
        }
        !given
    }
}

/// Whether `text` matches `pattern`, where `*` matches any run of
/// characters (and nothing else is special).
pub fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    if !text.ends_with(last) {
        return false;
    }
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    true
}

/// Rewrites Go-template field access (`{{.ID}}`, `{{ .Size }}`) into
/// minijinja's (`{{ID}}`), and `\t` / `\n` escapes into tab and newline.
pub fn translate(template: &str) -> String {
    let template = template.replace("\\t", "\t").replace("\\n", "\n");
    let mut out = String::with_capacity(template.len());
    let mut rest = template.as_str();
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open + 2]);
        rest = &rest[open + 2..];
        let close = rest.find("}}").unwrap_or(rest.len());
        out.push_str(&drop_field_dots(&rest[..close]));
        rest = &rest[close..];
    }
    out.push_str(rest);
    out
}

/// `.Name` -> `Name` where the dot starts an expression term.
fn drop_field_dots(expr: &str) -> String {
    let mut out = String::with_capacity(expr.len());
    let mut prev = ' ';
    let chars: Vec<char> = expr.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        let starts_term = !(prev.is_alphanumeric() || prev == '_' || prev == ')' || prev == ']');
        let next_is_name = chars
            .get(i + 1)
            .is_some_and(|n| n.is_alphabetic() || *n == '_');
        if c == '.' && starts_term && next_is_name {
            prev = c;
            continue;
        }
        out.push(c);
        prev = c;
    }
    out
}

/// Prints one line per row, each rendered from `template` (see
/// [`translate`]) with the row's fields.
pub fn print_template(template: &str, rows: &[serde_json::Value]) -> Result<()> {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    let source = translate(template);
    let compiled = env
        .template_from_str(&source)
        .with_context(|| format!("format template {template:?}"))?;
    for row in rows {
        let line = compiled
            .render(minijinja::value::Serde(row))
            .with_context(|| format!("format template {template:?}"))?;
        outln!("{line}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_fields_become_minijinja_names() {
        assert_eq!(translate("{{.ID}} {{ .Size }}"), "{{ID}} {{ Size }}");
        assert_eq!(translate("{{.ID}}\\t{{.Tag}}"), "{{ID}}\t{{Tag}}");
        assert_eq!(translate("v1.2 {{.A | lower}}"), "v1.2 {{A | lower}}");
        assert_eq!(translate("{{ x.y }}"), "{{ x.y }}");
    }

    #[test]
    fn globs_match_stars_only() {
        assert!(glob("demo/*", "demo/app:1"));
        assert!(glob("*:1", "demo/app:1"));
        assert!(glob("d*o/*p:*", "demo/app:1"));
        assert!(!glob("demo/*", "other/app:1"));
        assert!(!glob("demo", "demo/app"));
        assert!(!glob("a*a", "a"));
    }

    #[test]
    fn filters_or_within_a_key_and_across_keys() {
        let f = Filters::parse(
            &["name=a".into(), "name=b".into()],
            &["name", "status"],
            "containers",
        )
        .unwrap();
        assert!(f.any("name", |v| v == "b"));
        assert!(!f.any("name", |v| v == "c"));
        assert!(f.any("status", |_| false), "an absent key matches");
        assert!(Filters::parse(&["bogus=1".into()], &["name"], "containers").is_err());
        assert!(Filters::parse(&["name".into()], &["name"], "containers").is_err());
    }
}
