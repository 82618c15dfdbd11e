//! `{{ figure(...) }}` in notes: a picture of the gallery's own, named by its arguments
//! (`model`, `layer`, `unit`, `image`, `method`, `target`, `view`). Parsing replaces each
//! with a marker the note's page resolves once the pictures exist; fenced code and inline
//! code are left alone, so notes can show the syntax.

use std::collections::BTreeMap;

/// One `{{ figure(...) }}`: its line in the note (1-based) and its arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct Shortcode {
    pub line: usize,
    pub args: BTreeMap<String, Arg>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    Str(String),
    Int(usize),
}

impl std::fmt::Display for Arg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Arg::Str(s) => write!(f, "{s}"),
            Arg::Int(i) => write!(f, "{i}"),
        }
    }
}

/// The marker left in the markdown for figure `i`; plain letters, so markdown keeps it.
pub fn marker(i: usize) -> String {
    format!("CNNSCOPEFIGURE{i}X")
}

/// Replaces every figure shortcode in `body` by its marker. `first_line` is the line of
/// the body's first line in the file (after the front matter). Errors name the line.
pub fn extract(body: &str, first_line: usize) -> Result<(String, Vec<Shortcode>), (usize, String)> {
    let mut out = String::with_capacity(body.len());
    let mut codes = Vec::new();
    let mut fence: Option<&str> = None;
    for (k, line) in body.split_inclusive('\n').enumerate() {
        let n = first_line + k;
        let t = line.trim_start();
        if let Some(f) = fence {
            if t.starts_with(f) {
                fence = None;
            }
            out.push_str(line);
            continue;
        }
        if t.starts_with("```") || t.starts_with("~~~") {
            fence = Some(&t[..3]);
            out.push_str(line);
            continue;
        }
        let mut rest = line;
        let mut ticks = 0usize;
        while let Some(at) = rest.find("{{") {
            ticks += rest[..at].matches('`').count();
            let after = rest[at + 2..].trim_start();
            if ticks % 2 == 1 || !after.starts_with("figure") {
                out.push_str(&rest[..at + 2]);
                rest = &rest[at + 2..];
                continue;
            }
            let end = rest[at..]
                .find("}}")
                .ok_or((n, "`{{ figure(` is not closed by `}}` on the same line".to_string()))?;
            let inner = rest[at + 2..at + end].trim();
            let args = parse_call(inner).map_err(|m| (n, m))?;
            out.push_str(&rest[..at]);
            out.push_str(&marker(codes.len()));
            codes.push(Shortcode { line: n, args });
            rest = &rest[at + end + 2..];
        }
        out.push_str(rest);
    }
    Ok((out, codes))
}

/// `figure(key="value", key=3, ...)`.
fn parse_call(s: &str) -> Result<BTreeMap<String, Arg>, String> {
    let body = s
        .strip_prefix("figure")
        .map(str::trim_start)
        .and_then(|b| b.strip_prefix('('))
        .and_then(|b| b.trim_end().strip_suffix(')'))
        .ok_or_else(|| format!("`{{{{ {s} }}}}`: expected `figure(key=\"value\", ...)`"))?;
    let mut args = BTreeMap::new();
    let mut chars = body.char_indices().peekable();
    loop {
        while chars.peek().is_some_and(|(_, c)| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        let Some(&(start, _)) = chars.peek() else { break };
        let mut key_end = start;
        while let Some(&(i, c)) = chars.peek() {
            if c.is_ascii_alphanumeric() || c == '_' {
                key_end = i + c.len_utf8();
                chars.next();
            } else {
                break;
            }
        }
        let key = &body[start..key_end];
        while chars.peek().is_some_and(|(_, c)| c.is_whitespace()) {
            chars.next();
        }
        if key.is_empty() || chars.next().map(|(_, c)| c) != Some('=') {
            return Err(format!("figure(...): expected `key=value` at `{}`", &body[start..]));
        }
        while chars.peek().is_some_and(|(_, c)| c.is_whitespace()) {
            chars.next();
        }
        let value = match chars.peek().map(|&(_, c)| c) {
            Some(q @ ('"' | '\'')) => {
                chars.next();
                let mut v = String::new();
                loop {
                    match chars.next() {
                        Some((_, c)) if c == q => break,
                        Some((_, c)) => v.push(c),
                        None => return Err(format!("figure(...): the value of `{key}` has no closing {q}")),
                    }
                }
                Arg::Str(v)
            }
            Some(c) if c.is_ascii_digit() => {
                let mut v = String::new();
                while let Some(&(_, c)) = chars.peek() {
                    if c.is_ascii_digit() {
                        v.push(c);
                        chars.next();
                    } else {
                        break;
                    }
                }
                Arg::Int(
                    v.parse()
                        .map_err(|_| format!("figure(...): `{key}={v}` is not a number"))?,
                )
            }
            _ => return Err(format!("figure(...): `{key}=` needs a quoted string or a number")),
        };
        if args.insert(key.to_string(), value).is_some() {
            return Err(format!("figure(...): `{key}` is given twice"));
        }
    }
    Ok(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_are_replaced_and_code_is_not() {
        let body = "Intro\n\n{{ figure(model=\"m\", layer='relu4', unit=12) }}\n\n`{{ figure(model=\"x\") }}`\n```\n{{ figure(model=\"y\") }}\n```\nend {{ other }}\n";
        let (text, codes) = extract(body, 5).unwrap();
        assert_eq!(codes.len(), 1);
        assert_eq!(codes[0].line, 7);
        assert_eq!(codes[0].args["unit"], Arg::Int(12));
        assert_eq!(codes[0].args["layer"], Arg::Str("relu4".into()));
        assert!(text.contains(&marker(0)) && text.contains("`{{ figure(model=\"x\") }}`"));
        assert!(text.contains("```\n{{ figure(model=\"y\") }}\n```") && text.contains("{{ other }}"));
    }

    #[test]
    fn malformed_figures_name_their_line() {
        for (body, want) in [
            ("a\n{{ figure(model=\"m\" }}\n", "expected `figure("),
            ("{{ figure(model=\"m\") \n", "not closed"),
            ("\n\n{{ figure(model=m) }}", "quoted string or a number"),
            ("{{ figure(unit=1, unit=2) }}", "given twice"),
            ("{{ figure(model=\"m) }}", "no closing"),
        ] {
            let (line, msg) = extract(body, 1).unwrap_err();
            assert!(msg.contains(want), "{body:?}: {msg}");
            assert_eq!(
                line,
                body.lines().position(|l| l.contains("{{")).unwrap() + 1,
                "{body:?}"
            );
        }
    }
}
