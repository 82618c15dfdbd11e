//! Page templates (tera). The default theme is compiled into the binary; a file of the
//! same name in the site's `themes/<theme>/` folder replaces it, file by file (templates
//! are `*.html`, everything else is a static file copied to the output's `static/`).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use tera::Tera;

use crate::error::{Error, IoContext, Result};

macro_rules! theme_file {
    ($name:literal) => {
        ($name, include_str!(concat!("../../themes/default/", $name)))
    };
}

/// The built-in theme: (file name, contents).
pub const DEFAULT_THEME: &[(&str, &str)] = &[
    theme_file!("base.html"),
    theme_file!("macros.html"),
    theme_file!("index.html"),
    theme_file!("model.html"),
    theme_file!("image.html"),
    theme_file!("note.html"),
    theme_file!("attributions.html"),
    theme_file!("gradients.html"),
    theme_file!("method.html"),
    theme_file!("randomisation.html"),
    theme_file!("leaderboard.html"),
    theme_file!("layer.html"),
    theme_file!("unit.html"),
    theme_file!("embedding.html"),
    theme_file!("directions.html"),
    theme_file!("featurevis.html"),
    theme_file!("fv_layer.html"),
    theme_file!("playground.html"),
    theme_file!("overview.html"),
    theme_file!("404.html"),
    theme_file!("playground.js"),
    theme_file!("favicon.svg"),
    theme_file!("style.css"),
    theme_file!("search.js"),
    theme_file!("site.js"),
    theme_file!("translations.yaml"),
];

/// The translation table: the theme's fixed words, per language code.
pub type Words = BTreeMap<String, BTreeMap<String, String>>;

/// The file of the translation table (merged, not copied to `static/`).
pub const TRANSLATIONS: &str = "translations.yaml";

pub struct Theme {
    pub tera: Tera,
    /// Static files: (name, bytes), written under `static/`.
    pub statics: Vec<(String, Vec<u8>)>,
    /// Which files came from the site's theme folder (for the build report).
    pub overridden: Vec<String>,
    /// The fixed words of the templates, per language: the built-in table with the site's
    /// `translations.yaml` merged over it word by word.
    pub words: Words,
    /// Where the site's table came from (the built-in one when it has none), for errors.
    pub words_origin: PathBuf,
}

fn parse_words(text: &str, origin: &Path) -> Result<Words> {
    serde_yaml::from_str(text).map_err(|e| {
        Error::yaml(origin, 1, &e, |m| {
            format!("translation table: {m} (expected `<language>: {{ <word>: <text> }}`)")
        })
    })
}

/// `{{ t.word | fill(name=value) }}`: `{name}` in a translated word replaced by the value,
/// escaped (the words themselves come from the theme and may hold markup).
fn fill(value: &tera::Value, args: &HashMap<String, tera::Value>) -> tera::Result<tera::Value> {
    let mut s = value
        .as_str()
        .ok_or_else(|| tera::Error::msg("`fill` is for translated words (text)"))?
        .to_string();
    for (k, v) in args {
        let text = match v {
            tera::Value::String(t) => t.clone(),
            v => v.to_string(),
        };
        s = s.replace(&format!("{{{k}}}"), &escape_html(&text));
    }
    Ok(tera::Value::String(s))
}

/// HTML escaping for text and attribute values. Unlike tera's default it leaves `/` alone,
/// so paths in links stay readable.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn describe(e: &tera::Error) -> String {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    msg
}

/// Loads the default theme, then the files of `dir` (when it exists) over it.
pub fn load(dir: Option<&Path>) -> Result<Theme> {
    let mut files: Vec<(String, Vec<u8>, Option<PathBuf>)> = DEFAULT_THEME
        .iter()
        .map(|(n, c)| (n.to_string(), c.as_bytes().to_vec(), None))
        .collect();
    let mut overridden = Vec::new();
    if let Some(dir) = dir.filter(|d| d.is_dir()) {
        let mut entries: Vec<PathBuf> = walkdir::WalkDir::new(dir)
            .max_depth(1)
            .into_iter()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_file())
            .map(|e| e.into_path())
            .collect();
        entries.sort();
        for p in entries {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
            if name.starts_with('.') {
                continue;
            }
            let bytes = std::fs::read(&p).at_path(&p)?;
            match files.iter_mut().find(|(n, _, _)| *n == name) {
                // A copy of the built-in file (as in this repository's own themes/default) is no override.
                Some(slot) if slot.1 == bytes => {}
                Some(slot) => {
                    overridden.push(name.clone());
                    slot.1 = bytes;
                    slot.2 = Some(p);
                }
                None => {
                    overridden.push(name.clone());
                    files.push((name, bytes, Some(p)))
                }
            }
        }
    }
    let mut tera = Tera::default();
    tera.set_escape_fn(escape_html);
    tera.register_filter("fill", fill);
    let mut statics = Vec::new();
    let mut templates = Vec::new();
    let builtin = DEFAULT_THEME
        .iter()
        .find(|(n, _)| *n == TRANSLATIONS)
        .map(|(_, t)| *t)
        .unwrap_or("");
    let builtin_origin = PathBuf::from(format!("(built-in theme)/{TRANSLATIONS}"));
    let mut words = parse_words(builtin, &builtin_origin)?;
    let mut words_origin = builtin_origin;
    for (name, bytes, origin) in files {
        if name == TRANSLATIONS {
            if let Some(origin) = origin {
                let text =
                    String::from_utf8(bytes).map_err(|_| Error::at(&origin, "translation table is not valid UTF-8"))?;
                for (lang, table) in parse_words(&text, &origin)? {
                    words.entry(lang).or_default().extend(table);
                }
                words_origin = origin;
            }
        } else if name.ends_with(".html") {
            let origin = origin.unwrap_or_else(|| PathBuf::from(format!("(built-in theme)/{name}")));
            let text = String::from_utf8(bytes).map_err(|_| Error::at(&origin, "template is not valid UTF-8"))?;
            templates.push((name, text, origin));
        } else {
            statics.push((name, bytes));
        }
    }
    // Templates can extend each other, so they are added together; a syntax error is
    // then reported for the file that has it.
    if let Err(e) = tera.add_raw_templates(templates.iter().map(|(n, t, _)| (n.as_str(), t.as_str()))) {
        let msg = describe(&e);
        let culprit = templates
            .iter()
            .find(|(n, _, _)| msg.contains(&format!("'{n}'")))
            .map(|(_, _, o)| o.clone())
            .unwrap_or_else(|| dir.map(Path::to_path_buf).unwrap_or_default());
        return Err(Error::at(culprit, format!("template error: {msg}")));
    }
    Ok(Theme {
        tera,
        statics,
        overridden,
        words,
        words_origin,
    })
}

impl Theme {
    pub fn render(&self, template: &str, ctx: &tera::Context) -> Result<String> {
        self.tera
            .render(template, ctx)
            .map_err(|e| Error::msg(format!("rendering template `{template}`: {}", describe(&e))))
    }
}
