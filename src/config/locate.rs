//! Where each key of the config text is: a map from key paths (`models[1].input.channels`,
//! `targets[0]`) to 1-based lines, so errors found after parsing point at the exact entry.
//!
//! Built from the positioned events of a YAML parser, not from a text search, so that the
//! second of two equal keys, flow style and quoted keys are all found where they are.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser};

/// Key paths of a config text and their lines. Empty when the text could not be walked.
#[derive(Debug, Clone, Default)]
pub struct Locations {
    lines: HashMap<String, usize>,
}

/// A collection being walked, with the path it sits at (`None`: not addressable, e.g. a
/// mapping used as a key).
struct Frame {
    path: Option<String>,
    kind: Kind,
    /// This collection is itself a mapping key, not a value.
    is_key: bool,
}

enum Kind {
    /// The index of the next item.
    Seq(usize),
    /// `None` while a key is expected; else the path of the value that comes next.
    Map(Option<Option<String>>),
}

fn join_key(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

impl Locations {
    /// Walks the first document of `text`. Text the parser refuses yields what was found
    /// before the error (serde has already checked the text, so that is rare).
    pub fn new(text: &str) -> Locations {
        let mut lines = HashMap::new();
        let mut stack: Vec<Frame> = Vec::new();
        let mut started = false;
        for item in Parser::new_from_str(text) {
            let Ok((event, span)) = item else { break };
            let line = span.start.line();
            let starts = match event {
                Event::Scalar(..) | Event::Alias(_) => None,
                Event::SequenceStart(..) => Some(Kind::Seq(0)),
                Event::MappingStart(..) => Some(Kind::Map(None)),
                Event::SequenceEnd | Event::MappingEnd => {
                    let Some(done) = stack.pop() else { break };
                    if done.is_key {
                        // The value of a complex key is not addressable either.
                        if let Some(Frame {
                            kind: Kind::Map(slot), ..
                        }) = stack.last_mut()
                        {
                            *slot = Some(None);
                        }
                    }
                    if stack.is_empty() {
                        break;
                    }
                    continue;
                }
                Event::DocumentEnd | Event::StreamEnd => break,
                // Only the first document is read (as serde does).
                Event::DocumentStart(_) if started => break,
                Event::StreamStart | Event::DocumentStart(_) | Event::Nothing => {
                    started |= matches!(event, Event::DocumentStart(_));
                    continue;
                }
            };
            // A node: a key, a value or an item of the collection on top of the stack.
            let (path, is_key) = match stack.last_mut() {
                None => (Some(String::new()), false),
                Some(Frame {
                    path,
                    kind: Kind::Seq(next),
                    ..
                }) => {
                    let p = path.as_ref().map(|p| format!("{p}[{next}]"));
                    *next += 1;
                    if let Some(p) = &p {
                        lines.entry(p.clone()).or_insert(line);
                    }
                    (p, false)
                }
                Some(Frame {
                    path,
                    kind: Kind::Map(slot @ None),
                    ..
                }) => match &event {
                    Event::Scalar(key, ..) => {
                        let p = path.as_ref().map(|p| join_key(p, key));
                        if let Some(p) = &p {
                            lines.entry(p.clone()).or_insert(line);
                        }
                        *slot = Some(p);
                        continue;
                    }
                    // An alias as a key: its value cannot be named by a path.
                    Event::Alias(_) => {
                        *slot = Some(None);
                        continue;
                    }
                    _ => (None, true),
                },
                Some(Frame {
                    kind: Kind::Map(slot @ Some(_)),
                    ..
                }) => (slot.take().flatten(), false),
            };
            match starts {
                Some(kind) => stack.push(Frame { path, kind, is_key }),
                // A scalar or alias as the whole document: nothing to locate.
                None if stack.is_empty() => break,
                None => {}
            }
        }
        Locations { lines }
    }

    /// The line of `key_path`, or of the nearest enclosing path present (`models[0].input`
    /// for an absent `models[0].input.size`).
    pub fn line(&self, key_path: &str) -> Option<usize> {
        let mut path = key_path;
        loop {
            if let Some(&line) = self.lines.get(path) {
                return Some(line);
            }
            let cut = path.rfind(['.', '['])?;
            path = &path[..cut];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Locations;

    #[test]
    fn block_style() {
        let t = "site:\n  title: x\nmodels:\n  - id: a\n    input:\n      size: [28, 28]\n      channels: 1\n  - id: b\n    input:\n      channels: 3\n";
        let l = Locations::new(t);
        assert_eq!(l.line("site"), Some(1));
        assert_eq!(l.line("site.title"), Some(2));
        assert_eq!(l.line("models"), Some(3));
        assert_eq!(l.line("models[0]"), Some(4));
        assert_eq!(l.line("models[0].id"), Some(4));
        assert_eq!(l.line("models[0].input.size"), Some(6));
        assert_eq!(l.line("models[0].input.size[1]"), Some(6));
        assert_eq!(l.line("models[1].id"), Some(8));
        assert_eq!(l.line("models[1].input.channels"), Some(10));
        // Absent keys fall back to their nearest parent.
        assert_eq!(l.line("models[1].input.size"), Some(9));
        assert_eq!(l.line("models[1].weights"), Some(8));
        assert_eq!(l.line("models[7].weights"), Some(3));
        assert_eq!(l.line("images[0].path"), None);
    }

    #[test]
    fn flow_style() {
        let t = "models:\n  - id: a\n    input: { size: [28, 28], channels: 1 }\n  - { id: b,\n      input: {\n        channels: 3 } }\ntargets: [predicted,\n  cat]\n";
        let l = Locations::new(t);
        assert_eq!(l.line("models[0].input"), Some(3));
        assert_eq!(l.line("models[0].input.size"), Some(3));
        assert_eq!(l.line("models[0].input.channels"), Some(3));
        assert_eq!(l.line("models[1]"), Some(4));
        assert_eq!(l.line("models[1].id"), Some(4));
        assert_eq!(l.line("models[1].input.channels"), Some(6));
        assert_eq!(l.line("targets[0]"), Some(7));
        assert_eq!(l.line("targets[1]"), Some(8));
    }

    #[test]
    fn comments_and_quoted_keys() {
        let t = "# id: first\nsite: # title: no\n  \"title\": x\n  'theme': y # models:\n\n# images:\nimages:\n  - id: a # path: p\n    path: q\n";
        let l = Locations::new(t);
        assert_eq!(l.line("site.title"), Some(3));
        assert_eq!(l.line("site.theme"), Some(4));
        assert_eq!(l.line("images"), Some(7));
        assert_eq!(l.line("images[0].path"), Some(9));
    }

    #[test]
    fn nested_lists() {
        let t = "methods:\n  - name: saliency\n  - name: occlusion\n    window: 0\nmodels:\n  - id: a\n    methods:\n      - name: gradcam\n      -\n        name: occlusion\n        window: 4\n    targets:\n      - 3\n      - [1, 2]\n      - - x\n        - y\n";
        let l = Locations::new(t);
        assert_eq!(l.line("methods[1]"), Some(3));
        assert_eq!(l.line("methods[1].window"), Some(4));
        assert_eq!(l.line("methods[0].window"), Some(2));
        assert_eq!(l.line("models[0].methods[0].name"), Some(8));
        assert_eq!(l.line("models[0].methods[1].name"), Some(10));
        assert_eq!(l.line("models[0].methods[1].window"), Some(11));
        assert_eq!(l.line("models[0].targets[0]"), Some(13));
        assert_eq!(l.line("models[0].targets[1][1]"), Some(14));
        assert_eq!(l.line("models[0].targets[2][1]"), Some(16));
    }

    #[test]
    fn the_first_of_two_equal_keys_is_kept_and_complex_keys_are_skipped() {
        let t = "a: 1\na: 2\n? [x, y]\n: { b: 3 }\nc: &n { d: 4 }\ne: *n\n*n : 5\nf: 6\n";
        let l = Locations::new(t);
        assert_eq!(l.line("a"), Some(1));
        assert_eq!(l.line("b"), None);
        assert_eq!(l.line("c.d"), Some(5));
        assert_eq!(l.line("e.d"), Some(6));
        assert_eq!(l.line("f"), Some(8));
    }

    #[test]
    fn bad_or_odd_text_gives_no_lines_and_no_panic() {
        for t in [
            "",
            "x",
            "- 1\n- 2\n",
            "a: [1, 2\n",
            "a: {b: c\n",
            "a:\n\tb: c\n",
            "]]]",
            "---\na: 1\n---\nb: 2\n",
            "a: 1\n...\n",
            "&a [*a]",
            "? ? ? x",
            "\u{0}\u{feff}: é",
        ] {
            let l = Locations::new(t);
            let _ = l.line("a.b[0]");
            let _ = l.line("");
            let _ = l.line("[.[");
        }
        let l = Locations::new("---\na: 1\n---\nb: 2\n");
        assert_eq!(l.line("a"), Some(2));
        assert_eq!(l.line("b"), None);
    }
}
