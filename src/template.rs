//! Name templates such as `/v1/topic/conversation/{id}` ⇄ `conversation:{id}`.
//!
//! Owns: parsing, matching and filling templates, and checking that the two sides of a map
//! rule agree on their variables (from plain strings).
//!
//! Must not touch: anything else in the crate. It is a leaf: configuration checks rules with
//! it, the translator and the roles that fill templates from a handshake use it.

use std::collections::BTreeMap;

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Lit(String),
    Var(String),
}

/// A name template such as `/v1/topic/conversation/{id}` or `conversation:{id}`.
/// A `{var}` matches one or more characters other than `/`, up to the next literal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

/// Captured template variables.
pub type Captures = BTreeMap<String, String>;

impl Template {
    /// Parse a template; `{` and `}` delimit variable names.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = s;
        while !rest.is_empty() {
            match rest.find('{') {
                Some(0) => {
                    let end = rest
                        .find('}')
                        .ok_or_else(|| format!("unclosed `{{` in `{s}`"))?;
                    let name = rest.get(1..end).unwrap_or_default();
                    if name.is_empty()
                        || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    {
                        return Err(format!("bad variable name `{name}` in `{s}`"));
                    }
                    if matches!(parts.last(), Some(Part::Var(_))) {
                        return Err(format!("two variables must be separated by text in `{s}`"));
                    }
                    parts.push(Part::Var(name.to_owned()));
                    rest = rest.get(end + 1..).unwrap_or_default();
                }
                Some(i) => {
                    parts.push(Part::Lit(rest.get(..i).unwrap_or_default().to_owned()));
                    rest = rest.get(i..).unwrap_or_default();
                }
                None => {
                    if rest.contains('}') {
                        return Err(format!("stray `}}` in `{s}`"));
                    }
                    parts.push(Part::Lit(rest.to_owned()));
                    rest = "";
                }
            }
        }
        if parts.is_empty() {
            return Err("empty template".into());
        }
        Ok(Self { parts })
    }

    /// Check that a map rule's two sides agree on their variables: the client template with
    /// its parameter templates, the upstream one with its argument and parameter templates.
    pub fn check_pair(
        client: &str,
        client_extra: &[String],
        upstream: &str,
        upstream_extra: &[String],
    ) -> Result<(), String> {
        let mut client_vars = Self::parse(client)?.vars();
        for a in client_extra {
            client_vars.extend(Self::parse(a)?.vars());
        }
        let upstream = Self::parse(upstream)?;
        let mut up_vars = upstream.vars();
        for a in upstream_extra {
            up_vars.extend(Self::parse(a)?.vars());
        }
        for v in &client_vars {
            if !up_vars.contains(v) {
                return Err(format!(
                    "variable `{{{v}}}` of `client` is not used on the upstream side"
                ));
            }
        }
        for v in &up_vars {
            if !client_vars.contains(v) {
                return Err(format!("variable `{{{v}}}` is not captured by `client`"));
            }
        }
        Ok(())
    }

    fn vars(&self) -> Vec<String> {
        self.parts
            .iter()
            .filter_map(|p| match p {
                Part::Var(v) => Some(v.clone()),
                Part::Lit(_) => None,
            })
            .collect()
    }

    /// Walks `name` against the template, handing each variable's value (a slice of `name`)
    /// to `each`; whether the whole name matched. Allocates nothing.
    fn walk<'n>(&self, name: &'n str, mut each: impl FnMut(&str, &'n str)) -> bool {
        let mut rest = name;
        let mut parts = self.parts.iter().peekable();
        while let Some(p) = parts.next() {
            match p {
                Part::Lit(l) => match rest.strip_prefix(l.as_str()) {
                    Some(r) => rest = r,
                    None => return false,
                },
                Part::Var(v) => {
                    let end = match parts.peek() {
                        Some(Part::Lit(next)) => match rest.find(next.as_str()) {
                            Some(e) => e,
                            None => return false,
                        },
                        _ => rest.len(),
                    };
                    let (Some(value), Some(after)) = (rest.get(..end), rest.get(end..)) else {
                        return false;
                    };
                    if value.is_empty() || value.contains('/') {
                        return false;
                    }
                    each(v, value);
                    rest = after;
                }
            }
        }
        rest.is_empty()
    }

    /// Match a name, returning the captures.
    pub fn matches(&self, name: &str) -> Option<Captures> {
        let mut caps = Captures::new();
        self.walk(name, |v, value| {
            caps.insert(v.to_owned(), value.to_owned());
        })
        .then_some(caps)
    }

    /// Whether `name` matches (no captures built: nothing allocated).
    pub fn is_match(&self, name: &str) -> bool {
        self.walk(name, |_, _| {})
    }

    /// The value variable `var` takes when `name` matches, as a slice of `name` (nothing
    /// allocated). The last occurrence wins, as with [`Template::matches`].
    pub fn capture<'n>(&self, name: &'n str, var: &str) -> Option<&'n str> {
        let mut found = None;
        self.walk(name, |v, value| {
            if v == var {
                found = Some(value);
            }
        })
        .then_some(found)
        .flatten()
    }

    /// Fill the template from captures.
    pub fn fill(&self, caps: &Captures) -> Option<String> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Lit(l) => out.push_str(l),
                Part::Var(v) => out.push_str(caps.get(v)?),
            }
        }
        Some(out)
    }

    /// Fill a template whose only variable is `var` with `value`, into a string of exactly
    /// the right capacity (one allocation). `None` if another variable is in it.
    pub fn fill_one(&self, var: &str, value: &str) -> Option<String> {
        let mut len = 0;
        for p in &self.parts {
            len += match p {
                Part::Lit(l) => l.len(),
                Part::Var(v) if v == var => value.len(),
                Part::Var(_) => return None,
            };
        }
        let mut out = String::with_capacity(len);
        for p in &self.parts {
            out.push_str(match p {
                Part::Lit(l) => l,
                Part::Var(_) => value,
            });
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn match_and_capture_without_captures_map() {
        let t = Template::parse("/topic/{name}").unwrap();
        assert!(t.is_match("/topic/chat"));
        assert!(!t.is_match("/topic/"));
        assert!(!t.is_match("/topic/a/b"));
        assert!(!t.is_match("/app/chat"));
        assert_eq!(t.capture("/topic/chat", "name"), Some("chat"));
        assert_eq!(t.capture("/topic/chat", "other"), None);
        let two = Template::parse("{room}:{id}").unwrap();
        assert_eq!(two.capture("lobby:7", "id"), Some("7"));
        assert_eq!(
            two.matches("lobby:7").unwrap(),
            Captures::from([("room".into(), "lobby".into()), ("id".into(), "7".into())])
        );
        // One variable: filled exactly; a template with another variable is refused.
        let filled = t.fill_one("name", "chat").unwrap();
        assert_eq!((filled.as_str(), filled.capacity()), ("/topic/chat", 11));
        assert_eq!(two.fill_one("id", "7"), None);
    }

    #[test]
    fn template_matches_and_fills() {
        let t = Template::parse("/v1/topic/conversation/{id}").unwrap();
        let caps = t.matches("/v1/topic/conversation/28cc-f5").unwrap();
        assert_eq!(caps["id"], "28cc-f5");
        assert!(t.matches("/v1/topic/conversation/a/b").is_none());
        assert!(t.matches("/v1/topic/conversation/").is_none());
        let u = Template::parse("conversation:{id}").unwrap();
        assert_eq!(u.fill(&caps).unwrap(), "conversation:28cc-f5");
        let two = Template::parse("/v1/app/conversation/{id}/typing/{what}").unwrap();
        let c = two.matches("/v1/app/conversation/7/typing/start").unwrap();
        assert_eq!((c["id"].as_str(), c["what"].as_str()), ("7", "start"));
    }

    #[test]
    fn template_errors() {
        assert!(Template::parse("a{b").is_err());
        assert!(Template::parse("{a}{b}").is_err());
        assert!(Template::parse("a}").is_err());
        assert!(Template::parse("{}").is_err());
    }
}
