//! containerd's snapshot list filters: `kind==active`, `name==k`, `parent==p`,
//! `labels.KEY==v`, `labels."a.b"!=v`, `labels.KEY` (present). A comma inside
//! one filter joins conditions with AND; separate filters are ORed.

use strata_driver_api::{Error, Info, Result};

/// One parsed condition.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Condition {
    field: Field,
    test: Test,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Field {
    Kind,
    Name,
    Parent,
    Label(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Test {
    Present,
    Equals(String),
    NotEquals(String),
}

/// A parsed filter set: matches when any of its filters matches.
#[derive(Debug, Clone, Default)]
pub struct Filters(Vec<Vec<Condition>>);

impl Filters {
    /// Parses containerd filter strings; an empty list matches everything.
    pub fn parse(filters: &[String]) -> Result<Self> {
        let mut all = Vec::new();
        for filter in filters.iter().filter(|f| !f.trim().is_empty()) {
            let conds = split_unquoted(filter, ',')
                .into_iter()
                .map(|c| parse_condition(c.trim()))
                .collect::<Result<Vec<_>>>()?;
            all.push(conds);
        }
        Ok(Self(all))
    }

    /// Whether `info` passes.
    pub fn matches(&self, info: &Info) -> bool {
        self.0.is_empty()
            || self
                .0
                .iter()
                .any(|conds| conds.iter().all(|c| c.matches(info)))
    }
}

impl Condition {
    fn matches(&self, info: &Info) -> bool {
        let value: Option<&str> = match &self.field {
            Field::Kind => Some(info.kind.as_str()),
            Field::Name => Some(info.name.as_str()),
            Field::Parent => info.parent.as_ref().map(|p| p.as_str()),
            Field::Label(k) => info.labels.get(k).map(String::as_str),
        };
        match &self.test {
            Test::Present => value.is_some(),
            Test::Equals(v) => value == Some(v.as_str()),
            Test::NotEquals(v) => value != Some(v.as_str()),
        }
    }
}

fn split_unquoted(s: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut quoted = false;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            c if c == sep && !quoted => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

fn unquote(s: &str) -> &str {
    s.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(s)
}

fn parse_condition(text: &str) -> Result<Condition> {
    let bad = || Error::InvalidArgument(format!("filter {text:?} is not of the form FIELD==VALUE"));
    let (lhs, test) = if let Some((l, r)) = text.split_once("!=") {
        (l, Test::NotEquals(unquote(r.trim()).to_owned()))
    } else if let Some((l, r)) = text.split_once("==") {
        (l, Test::Equals(unquote(r.trim()).to_owned()))
    } else if let Some((l, r)) = text.split_once('=') {
        (l, Test::Equals(unquote(r.trim()).to_owned()))
    } else {
        (text, Test::Present)
    };
    let lhs = lhs.trim();
    let field = match lhs {
        "kind" => Field::Kind,
        "name" => Field::Name,
        "parent" => Field::Parent,
        l => match l.strip_prefix("labels.") {
            Some(k) if !k.is_empty() => Field::Label(unquote(k).to_owned()),
            _ => return Err(bad()),
        },
    };
    Ok(Condition { field, test })
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_driver_api::{Kind, Labels};

    fn info(name: &str, kind: Kind, labels: &[(&str, &str)]) -> Info {
        Info {
            name: name.into(),
            parent: Some("base".into()),
            kind,
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
    fn kind_name_parent_and_labels() {
        let a = info("a", Kind::Active, &[("x.y", "1")]);
        assert!(f(&["kind==active"]).matches(&a));
        assert!(!f(&["kind==committed"]).matches(&a));
        assert!(f(&["name==a"]).matches(&a));
        assert!(f(&["parent==base"]).matches(&a));
        assert!(f(&["labels.\"x.y\"==1"]).matches(&a));
        assert!(f(&["labels.x.y"]).matches(&a));
        assert!(!f(&["labels.z"]).matches(&a));
        assert!(f(&["kind==active,name==a"]).matches(&a));
        assert!(!f(&["kind==active,name==b"]).matches(&a));
        assert!(f(&["name==b", "name==a"]).matches(&a));
        assert!(f(&[]).matches(&a));
        assert!(f(&["name!=b"]).matches(&a));
    }

    #[test]
    fn bad_field_is_rejected() {
        assert!(Filters::parse(&["colour==red".to_string()]).is_err());
    }
}
