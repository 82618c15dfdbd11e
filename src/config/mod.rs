//! `gallery.yaml`: the schema, parsing, and validation.
//!
//! Parsing is typed (serde, unknown keys refused); validation then checks what types cannot:
//! ids, references between entries, that files exist and fit their model. Every error
//! names the config file and the key, and the line where it can be found.

mod schema;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::error::{read_to_string, Error, Result};
use crate::methods::{self, MethodSpec};
use crate::models::{self, Architecture, InputSpec};
pub use schema::{LabelRef, RawConfig};

/// The validated configuration, with paths resolved against the config's folder.
#[derive(Debug)]
pub struct Config {
    /// The config file itself.
    pub path: PathBuf,
    /// The folder paths are relative to (the site root).
    pub root: PathBuf,
    pub site: Site,
    pub models: Vec<ModelConfig>,
    pub images: Vec<ImageConfig>,
    /// The config's text, to locate keys in errors found later.
    pub text: String,
}

/// A class to explain, per image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetSpec {
    /// The class with the highest score.
    Predicted,
    /// The class with the second highest score.
    RunnerUp,
    /// The image's true class (skipped for images without a label).
    Label,
    /// A fixed class index.
    Class(usize),
}

impl TargetSpec {
    pub fn defaults() -> Vec<TargetSpec> {
        vec![TargetSpec::Predicted, TargetSpec::RunnerUp, TargetSpec::Label]
    }
}

#[derive(Debug, Clone)]
pub struct Site {
    pub title: String,
    pub description: String,
    /// Folder under `themes/` whose files override the built-in templates.
    pub theme: String,
    /// Paths may lead outside the site root.
    pub allow_outside_root: bool,
    /// Raw HTML in notes is stripped.
    pub safe_html: bool,
}

#[derive(Debug, Clone)]
pub struct Input {
    pub height: usize,
    pub width: usize,
    pub channels: usize,
    /// Per channel, on the 0..1 pixel scale.
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl Input {
    pub fn spec(&self) -> InputSpec {
        InputSpec {
            height: self.height,
            width: self.width,
            channels: self.channels,
        }
    }
}

#[derive(Debug)]
pub struct ModelConfig {
    pub id: String,
    pub arch: &'static Architecture,
    pub weights: PathBuf,
    pub classes_path: PathBuf,
    pub classes: Vec<String>,
    pub input: Input,
    pub training_log: Option<PathBuf>,
    pub description: String,
    pub methods: Vec<MethodSpec>,
    /// Where the methods were listed: `methods` or `models[i].methods`.
    pub methods_key: String,
    pub targets: Vec<TargetSpec>,
}

#[derive(Debug)]
pub struct ImageConfig {
    pub id: String,
    pub path: PathBuf,
    pub label: Option<LabelRef>,
    pub caption: String,
    /// The ids of the models this image is shown with.
    pub models: Vec<String>,
}

impl ImageConfig {
    /// The label as a class index of `model`, when the image has one.
    pub fn label_index(&self, model: &ModelConfig) -> Option<usize> {
        match &self.label {
            None => None,
            Some(LabelRef::Index(i)) => Some(*i),
            Some(LabelRef::Name(n)) => model.classes.iter().position(|c| c == n),
        }
    }
}

/// Finds the line (1-based) of the `nth` occurrence of `key:` — optionally followed by
/// `value` — so errors found after parsing can still point into the file.
pub fn line_of(text: &str, key: &str, value: Option<&str>, nth: usize) -> Option<usize> {
    let pat = format!("{key}:");
    let mut seen = 0;
    for (i, line) in text.lines().enumerate() {
        let line = line.split(" #").next().unwrap_or(line);
        let mut from = 0;
        while let Some(pos) = line[from..].find(&pat) {
            let at = from + pos;
            from = at + pat.len();
            let before = line[..at].chars().last();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '-') {
                continue;
            }
            let rest = line[at + pat.len()..].trim_start();
            let matches = match value {
                None => true,
                Some(v) => {
                    let rest = rest.trim_start_matches(['"', '\'']);
                    rest.starts_with(v)
                        && !rest[v.len()..]
                            .chars()
                            .next()
                            .is_some_and(|c| c.is_alphanumeric() || c == '-' || c == '_' || c == '.' || c == '/')
                }
            };
            if matches {
                if seen == nth {
                    return Some(i + 1);
                }
                seen += 1;
            }
        }
    }
    None
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Reads and validates a config file. Nothing is written.
pub fn load(path: &Path) -> Result<Config> {
    let text = read_to_string(path)?;
    parse(&text, path)
}

/// Parses and validates `text` as the config file at `path`; the files it names are looked
/// up (and read) relative to `path`'s folder. Nothing is written.
pub fn parse(text: &str, path: &Path) -> Result<Config> {
    let raw: RawConfig = serde_yaml::from_str(text).map_err(|e| {
        let mut msg = e.to_string();
        // YAML's own message for a tab in the indentation does not say "tab".
        let line = e.location().and_then(|l| text.lines().nth(l.line().saturating_sub(1)));
        if !msg.contains("tab") && line.is_some_and(|l| l[..l.len() - l.trim_start().len()].contains('\t')) {
            msg.push_str(" (this line is indented with a tab: YAML indents with spaces only)");
        }
        Error::at(path, msg)
    })?;
    let root = path
        .parent()
        .map(|p| if p.as_os_str().is_empty() { Path::new(".") } else { p })
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let mut config = validate(raw, path, &root, text)?;
    config.text = text.to_string();
    Ok(config)
}

fn resolve_targets(
    list: &[LabelRef],
    key: &str,
    classes: &[String],
    err: &dyn Fn(&str, &str, Option<&str>, String) -> Error,
) -> Result<Vec<TargetSpec>> {
    let mut out = Vec::new();
    for (i, t) in list.iter().enumerate() {
        let spec = match t {
            LabelRef::Name(n) if n == "predicted" => TargetSpec::Predicted,
            LabelRef::Name(n) if n == "runner-up" => TargetSpec::RunnerUp,
            LabelRef::Name(n) if n == "label" => TargetSpec::Label,
            LabelRef::Name(n) => match classes.iter().position(|c| c == n) {
                Some(k) => TargetSpec::Class(k),
                None => {
                    return Err(err(
                        &format!("{key}[{i}]"),
                        "targets",
                        None,
                        format!("`{n}` is neither predicted, runner-up, label nor a class name"),
                    ))
                }
            },
            LabelRef::Index(k) if *k >= classes.len() => {
                return Err(err(
                    &format!("{key}[{i}]"),
                    "targets",
                    None,
                    format!(
                        "class index {k} is out of range: the model has {} classes",
                        classes.len()
                    ),
                ))
            }
            LabelRef::Index(k) => TargetSpec::Class(*k),
        };
        if !out.contains(&spec) {
            out.push(spec);
        }
    }
    if out.is_empty() {
        return Err(err(key, "targets", None, "lists no target".into()));
    }
    Ok(out)
}

fn validate(raw: RawConfig, path: &Path, root: &Path, text: &str) -> Result<Config> {
    // An error at key `key` whose value is `value`: located by searching the text.
    let err = |key: &str, field: &str, value: Option<&str>, msg: String| {
        Error::at_line(path, line_of(text, field, value, 0), format!("{key}: {msg}"))
    };
    if raw.site.title.trim().is_empty() {
        return Err(err("site.title", "title", None, "must not be empty".into()));
    }
    if raw.models.is_empty() {
        return Err(err("models", "models", None, "at least one model is required".into()));
    }
    let allow_outside_root = raw.site.allow_outside_root;
    let real_root = root
        .canonicalize()
        .map_err(|e| Error::at(path, format!("cannot resolve the site root `{}`: {e}", root.display())))?;
    // `shown` (at `full`) resolves to `real`, which must lie inside the site root unless allowed.
    let check_inside = |key: &str, field: &str, shown: &str, full: &Path, real: &Path| -> Result<()> {
        if allow_outside_root || real.starts_with(&real_root) {
            return Ok(());
        }
        let leads = if full == real {
            "is".to_string()
        } else {
            format!("leads to `{}`,", real.display())
        };
        Err(err(
            key,
            field,
            Some(shown),
            format!(
                "`{shown}` {leads} outside the site root `{}` (the folder holding the config); \
                 move it inside, or set `site.allow_outside_root: true` to allow paths outside it",
                real_root.display()
            ),
        ))
    };
    let theme = raw.site.theme.unwrap_or_else(|| "default".to_string());
    // A plain name, so the theme stays under `themes/`.
    if !valid_id(&theme) {
        return Err(err(
            "site.theme",
            "theme",
            None,
            format!("`{theme}` is not a theme folder name ([a-z0-9-]+)"),
        ));
    }
    let theme_dir = root.join("themes").join(&theme);
    if let Ok(real) = theme_dir.canonicalize() {
        check_inside("site.theme", "theme", &theme, &theme_dir, &real)?;
    }
    let mut ids: HashSet<String> = HashSet::new();
    let mut id_seen = |key: &str, id: &str| -> Result<()> {
        if !valid_id(id) {
            return Err(err(
                key,
                "id",
                Some(id),
                format!("`{id}` is not a valid id: use [a-z0-9-]+"),
            ));
        }
        if !ids.insert(id.to_string()) {
            return Err(Error::at_line(
                path,
                line_of(text, "id", Some(id), 1),
                format!("{key}: duplicate id `{id}` (ids must be unique across models and images)"),
            ));
        }
        Ok(())
    };
    let resolve = |key: &str, field: &str, p: &Path| -> Result<PathBuf> {
        let shown = p.display().to_string();
        let full = root.join(p);
        if !full.is_file() {
            return Err(err(
                key,
                field,
                Some(&shown),
                format!("file `{shown}` not found (paths are relative to the config file)"),
            ));
        }
        let real = full
            .canonicalize()
            .map_err(|e| err(key, field, Some(&shown), format!("cannot resolve `{shown}`: {e}")))?;
        check_inside(key, field, &shown, &full, &real)?;
        Ok(full)
    };

    let mut models = Vec::new();
    for (i, m) in raw.models.into_iter().enumerate() {
        let key = format!("models[{i}]");
        id_seen(&format!("{key}.id"), &m.id)?;
        let arch = models::architecture(&m.arch).ok_or_else(|| {
            err(
                &format!("{key}.arch"),
                "arch",
                Some(&m.arch),
                format!(
                    "unknown architecture `{}` (built in: {})",
                    m.arch,
                    models::architecture_ids().join(", ")
                ),
            )
        })?;
        let weights = resolve(&format!("{key}.weights"), "weights", &m.weights)?;
        let classes_path = resolve(&format!("{key}.classes"), "classes", &m.classes)?;
        let classes: Vec<String> = read_to_string(&classes_path)?
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect();
        if classes.is_empty() {
            return Err(Error::at(&classes_path, "no class names: expected one name per line"));
        }
        let ikey = format!("{key}.input");
        let inp = m.input;
        if inp.channels != 1 && inp.channels != 3 {
            return Err(err(
                &format!("{ikey}.channels"),
                "channels",
                None,
                format!("must be 1 or 3, not {}", inp.channels),
            ));
        }
        if inp.size[0] == 0 || inp.size[1] == 0 {
            return Err(err(
                &format!("{ikey}.size"),
                "size",
                None,
                "sizes must be positive".into(),
            ));
        }
        for (name, v) in [("mean", &inp.mean), ("std", &inp.std)] {
            if v.len() != inp.channels {
                return Err(err(
                    &format!("{ikey}.{name}"),
                    name,
                    None,
                    format!("has {} values but the input has {} channel(s)", v.len(), inp.channels),
                ));
            }
        }
        if let Some(s) = inp.std.iter().find(|s| !(**s > 0.0) || !s.is_finite()) {
            return Err(err(
                &format!("{ikey}.std"),
                "std",
                None,
                format!("every std must be positive, found {s}"),
            ));
        }
        let input = Input {
            height: inp.size[0],
            width: inp.size[1],
            channels: inp.channels,
            mean: inp.mean,
            std: inp.std,
        };
        (arch.check_input)(&input.spec()).map_err(|msg| err(&format!("{ikey}.size"), "size", None, msg))?;
        let training_log = match &m.training_log {
            Some(p) => Some(resolve(&format!("{key}.training_log"), "training_log", p)?),
            None => None,
        };
        let (method_list, methods_key) = match (&m.methods, &raw.methods) {
            (Some(l), _) => (l.clone(), format!("{key}.methods")),
            (None, Some(l)) => (l.clone(), "methods".to_string()),
            (None, None) => (methods::all_defaults(), "methods".to_string()),
        };
        let targets = match (&m.targets, &raw.targets) {
            (Some(l), _) => resolve_targets(l, &format!("{key}.targets"), &classes, &err)?,
            (None, Some(l)) => resolve_targets(l, "targets", &classes, &err)?,
            (None, None) => TargetSpec::defaults(),
        };
        models.push(ModelConfig {
            methods: method_list,
            methods_key,
            targets,
            id: m.id,
            arch,
            weights,
            classes_path,
            classes,
            input,
            training_log,
            description: m.description.unwrap_or_default(),
        });
    }

    let mut images = Vec::new();
    for (i, im) in raw.images.into_iter().enumerate() {
        let key = format!("images[{i}]");
        id_seen(&format!("{key}.id"), &im.id)?;
        let full = resolve(&format!("{key}.path"), "path", &im.path)?;
        let model_ids: Vec<String> = match im.models {
            Some(list) => {
                if list.is_empty() {
                    return Err(err(
                        &format!("{key}.models"),
                        "models",
                        None,
                        "lists no model (leave the key out for every model)".into(),
                    ));
                }
                for id in &list {
                    if !models.iter().any(|m| &m.id == id) {
                        return Err(err(
                            &format!("{key}.models"),
                            "models",
                            None,
                            format!(
                                "unknown model `{id}` (models: {})",
                                models.iter().map(|m| m.id.as_str()).collect::<Vec<_>>().join(", ")
                            ),
                        ));
                    }
                }
                list
            }
            None => models.iter().map(|m| m.id.clone()).collect(),
        };
        // Decoded in full, so that a broken image is reported with its key and line.
        let channels = crate::data::image::load(&full)
            .map(|img| crate::data::image::channels(img.color()))
            .map_err(|e| {
                let shown = im.path.display().to_string();
                err(&format!("{key}.path"), "path", Some(&shown), e.to_string())
            })?;
        for mid in &model_ids {
            let m = models.iter().find(|m| &m.id == mid).expect("checked above");
            if channels != m.input.channels {
                return Err(err(
                    &format!("{key}.path"),
                    "path",
                    Some(&im.path.display().to_string()),
                    format!(
                        "`{}` has {channels} channel(s) but model `{}` takes {} (convert the image, or list only fitting models under `models:`)",
                        im.path.display(),
                        m.id,
                        m.input.channels
                    ),
                ));
            }
            match &im.label {
                Some(LabelRef::Index(l)) if *l >= m.classes.len() => {
                    return Err(err(
                        &format!("{key}.label"),
                        "label",
                        None,
                        format!(
                            "class index {l} is out of range: model `{}` has {} classes",
                            m.id,
                            m.classes.len()
                        ),
                    ))
                }
                Some(LabelRef::Name(n)) if !m.classes.iter().any(|c| c == n) => {
                    return Err(err(
                        &format!("{key}.label"),
                        "label",
                        None,
                        format!(
                            "`{n}` is not a class of model `{}` (see {})",
                            m.id,
                            m.classes_path.display()
                        ),
                    ))
                }
                _ => {}
            }
        }
        images.push(ImageConfig {
            id: im.id,
            path: full,
            label: im.label,
            caption: im.caption.unwrap_or_default(),
            models: model_ids,
        });
    }

    Ok(Config {
        path: path.to_path_buf(),
        root: root.to_path_buf(),
        site: Site {
            title: raw.site.title,
            description: raw.site.description.unwrap_or_default(),
            theme,
            allow_outside_root,
            safe_html: raw.site.safe_html,
        },
        models,
        images,
        text: String::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::{line_of, parse};
    use std::path::Path;

    #[test]
    fn tabs_in_the_indentation_are_named() {
        for text in [
            "site:\n\ttitle: x\nmodels: []\n",
            "site: { title: x }\nmodels:\n  - id: a\n\tarch: lenet5\n",
            "site: { title: x }\nmodels:\n\t- id: a\n",
        ] {
            let e = parse(text, Path::new("gallery.yaml")).unwrap_err().to_string();
            assert!(e.starts_with("gallery.yaml: ") && e.contains("tab"), "{text:?}: {e}");
        }
    }

    #[test]
    fn finds_keys_and_values() {
        let t = "models:\n  - id: a\n    arch: x\n  - id: b\n    arch: lenet5\nimages:\n  - { id: a, path: p }\n";
        assert_eq!(line_of(t, "id", Some("a"), 0), Some(2));
        assert_eq!(line_of(t, "id", Some("a"), 1), Some(7));
        assert_eq!(line_of(t, "arch", Some("lenet5"), 0), Some(5));
        assert_eq!(line_of(t, "path", None, 0), Some(7));
        assert_eq!(line_of(t, "id", Some("ab"), 0), None);
    }
}
