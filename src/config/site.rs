//! The `site` section.

use super::check::{valid_id, Check};
use super::schema::RawSite;
use super::Site;
use crate::error::Result;

/// Checks the theme (the title was checked before anything else).
pub(super) fn validate(raw: RawSite, check: &Check) -> Result<Site> {
    let theme = raw.theme.unwrap_or_else(|| "default".to_string());
    // A plain name, so the theme stays under `themes/`.
    if !valid_id(&theme) {
        return Err(check.err(
            "site.theme",
            format!("`{theme}` is not a theme folder name ([a-z0-9-]+)"),
        ));
    }
    let theme_dir = check.root().join("themes").join(&theme);
    if let Ok(real) = theme_dir.canonicalize() {
        check.inside("site.theme", &theme, &theme_dir, &real)?;
    }
    let language = raw.language.unwrap_or_else(|| "en".to_string());
    if !crate::content::is_language_code(&language) {
        return Err(check.err(
            "site.language",
            format!("`{language}` is not a language code (lowercase, as `en`, `zh` or `pt-br`)"),
        ));
    }
    Ok(Site {
        language,
        title: raw.title,
        description: raw.description.unwrap_or_default(),
        theme,
        allow_outside_root: raw.allow_outside_root,
        safe_html: raw.safe_html,
    })
}
