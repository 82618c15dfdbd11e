//! `cnnscope serve`: builds the site, serves it on loopback, rebuilds through the cache when
//! an input changes, and reloads the open pages. Pages get a small live-reload script at
//! response time only, so the files on disk stay what `build` writes. A failed rebuild
//! leaves the last good site in place (the build's atomic output) and shows its error over
//! the open pages.

use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use notify_debouncer_mini::notify::RecursiveMode;

use crate::build::{BuildOptions, LoadOptions, Site};
use crate::error::{Error, Result};

/// Where the server's own files live; no site path starts with `__`.
const PREFIX: &str = "/__cnnscope/";

/// How often the open pages ask whether the site changed (the script's poll interval).
const POLL_MS: u32 = 300;

/// Worker threads answering requests: a browser with many tabs open asks in parallel.
const WORKERS: usize = 16;

pub struct ServeOptions {
    pub config: PathBuf,
    pub output: Option<PathBuf>,
    pub build: BuildOptions,
    pub load: LoadOptions,
    pub base_url: Option<String>,
    pub bind: String,
    pub port: u16,
}

/// What the open pages poll: the build number and the last build's error.
#[derive(Default)]
struct Status {
    version: u64,
    error: Option<String>,
}

/// Serves until interrupted. `log` receives progress lines.
pub fn serve(opts: ServeOptions, log: &(dyn Fn(&str) + Sync)) -> Result<()> {
    let status = Arc::new(Mutex::new(Status::default()));
    // The first build decides the output folder and what to watch; if it fails, whatever
    // the output already holds is served and the error shown.
    let built_at = std::time::SystemTime::now();
    let (mut site, first) = build_once(&opts, log);
    // The first build's results, for redrawing edited notes without a rebuild.
    let (first, mut results) = match first {
        Ok(mut r) => {
            let kept = r.results.take();
            (Ok(()), kept)
        }
        Err(e) => (Err(e), None),
    };
    let output = match (&opts.output, &site) {
        (Some(o), _) => o.clone(),
        (None, Some(s)) => s.config.root.join("public"),
        (None, None) => config_root(&opts.config).join("public"),
    };
    let mut watched = inputs(&opts.config, site.as_ref());
    set(&status, first);

    let listener = std::net::TcpListener::bind(format!("{}:{}", opts.bind, opts.port))
        .map_err(|e| Error::msg(format!("cannot listen on {}:{}: {e}", opts.bind, opts.port)))?;
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| format!("{}:{}", opts.bind, opts.port));
    log(&format!(
        "serving {} at http://{addr}/ (Ctrl-C to stop)",
        output.display()
    ));
    // One request per connection, answered with `Connection: close`, by a fixed pool of
    // workers taking accepted connections from a queue: no idle keep-alive connection can
    // hold a worker or leave a page's other requests waiting.
    let (conns, queue) = std::sync::mpsc::channel::<std::net::TcpStream>();
    let queue = Arc::new(Mutex::new(queue));
    for _ in 0..WORKERS {
        let (queue, status, output) = (queue.clone(), status.clone(), output.clone());
        std::thread::spawn(move || loop {
            let next = queue.lock().expect("not poisoned").recv();
            match next {
                Ok(stream) => answer(stream, &output, &status),
                Err(_) => break,
            }
        });
    }
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            if conns.send(stream).is_err() {
                break;
            }
        }
    });

    let (tx, rx) = std::sync::mpsc::channel();
    let mut debouncer = notify_debouncer_mini::new_debouncer(Duration::from_millis(80), tx)
        .map_err(|e| Error::msg(format!("cannot watch the inputs: {e}")))?;
    watch(&mut debouncer, &watched, log);
    let ignored = ignored(&opts, &output, site.as_ref());
    let mut since = built_at;
    // Each handled file's modification time, to tell its later saves from reads.
    let mut seen: std::collections::HashMap<PathBuf, std::time::SystemTime> = Default::default();
    while let Ok(events) = rx.recv() {
        let Ok(events) = events else { continue };
        // The watcher also reports reads (the build's own); a file changed when it is newer
        // than the last build's start, or gone. Folders change when the build swaps its
        // output in; their files' own events are what matters.
        let changed: Vec<&Path> = events
            .iter()
            .map(|e| e.path.as_path())
            .filter(|p| !ignored(p) && !editor_scratch(p) && !p.is_dir() && modified(p, since, &seen))
            .collect();
        for p in &changed {
            match std::fs::metadata(p).and_then(|m| m.modified()) {
                Ok(t) => seen.insert(p.to_path_buf(), t),
                Err(_) => seen.remove(*p),
            };
        }
        let Some(first_change) = changed.first() else {
            continue;
        };
        let started = Instant::now();
        since = std::time::SystemTime::now();
        // An edited note whose title and figures stay: only its page changes.
        if let (Some(s), Some(r)) = (site.as_mut(), results.as_ref()) {
            let changed: Vec<PathBuf> = changed.iter().map(|p| p.to_path_buf()).collect();
            if let Some(n) = redraw_notes(s, r, &output, &changed, opts.load.drafts) {
                set(&status, Ok(()));
                log(&format!(
                    "changed: {}; redrew {n} page(s) in {:.2} s",
                    first_change.display(),
                    started.elapsed().as_secs_f64()
                ));
                continue;
            }
        }
        log(&format!("changed: {}; rebuilding", first_change.display()));
        let (new_site, result) = build_once(&opts, log);
        site = new_site;
        let result = result.map(|mut r| {
            results = r.results.take();
        });
        if result.is_err() {
            results = None;
        }
        if let Some(s) = &site {
            let now = inputs(&opts.config, Some(s));
            if now != watched {
                watch(&mut debouncer, &now, log);
                watched = now;
            }
        }
        let ok = result.is_ok();
        set(&status, result);
        log(&format!(
            "{} in {:.2} s",
            if ok {
                "rebuilt"
            } else {
                "rebuild failed; serving the last good site"
            },
            started.elapsed().as_secs_f64()
        ));
    }
    Ok(())
}

fn config_root(config: &Path) -> PathBuf {
    absolute(
        config
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new(".")),
    )
}

/// The fast path for edited notes: when every changed file is a note in `content/` and the
/// notes' outline (titles, order, figures) is unchanged, the new text replaces the old and
/// only those notes' pages are redrawn in place. `None` means rebuild (also on any error:
/// the rebuild reports it).
fn redraw_notes(
    site: &mut Site,
    results: &crate::build::Computed,
    output: &Path,
    changed: &[PathBuf],
    drafts: bool,
) -> Option<usize> {
    let content_dir = absolute(&site.config.root.join("content"));
    let notes_only = changed
        .iter()
        .all(|p| p.extension().is_some_and(|e| e == "md") && p.parent().is_some_and(|d| absolute(d) == content_dir));
    if !notes_only {
        return None;
    }
    let mut content = crate::content::load(&site.config).ok()?;
    if !drafts {
        content.drop_drafts();
    }
    if !site.content.same_outline(&content) {
        return None;
    }
    let old = std::mem::replace(&mut site.content, content);
    match site.redraw_notes(results, output, changed) {
        Ok(n) if n > 0 => Some(n),
        _ => {
            site.content = old;
            None
        }
    }
}

/// Loads and builds once; the error as the pages show it.
fn build_once(
    opts: &ServeOptions,
    log: &(dyn Fn(&str) + Sync),
) -> (Option<Site>, std::result::Result<crate::build::BuildReport, String>) {
    let mut site = match Site::load_with(&opts.config, &opts.load) {
        Ok(s) => s,
        Err(e) => {
            log(&format!("error: {e}"));
            return (None, Err(e.to_string()));
        }
    };
    site.base_url = opts.base_url.clone();
    let output = opts.output.clone().unwrap_or_else(|| site.config.root.join("public"));
    let result = site.build_with(&output, &opts.build, log).map_err(|e| {
        log(&format!("error: {e}"));
        e.to_string()
    });
    (Some(site), result)
}

fn set(status: &Mutex<Status>, result: std::result::Result<(), String>) {
    let mut s = status.lock().expect("not poisoned");
    match result {
        Ok(()) => {
            s.version += 1;
            s.error = None;
        }
        Err(e) => s.error = Some(e),
    }
}

/// What a rebuild reads: the config, the notes and the theme (recursively), and every
/// weights, classes, log, image and dataset file (by its folder, which catches editors that
/// save by renaming).
fn inputs(config: &Path, site: Option<&Site>) -> Vec<(PathBuf, RecursiveMode)> {
    let root = config_root(config);
    let mut out = vec![
        (root.clone(), RecursiveMode::NonRecursive),
        (root.join("content"), RecursiveMode::Recursive),
        (root.join("themes"), RecursiveMode::Recursive),
    ];
    if let Some(site) = site {
        let c = &site.config;
        let mut files: Vec<&Path> = Vec::new();
        for m in &c.models {
            files.extend([m.weights.as_path(), m.classes_path.as_path()]);
            files.extend(m.training_log.as_deref());
        }
        files.extend(c.images.iter().map(|i| i.path.as_path()));
        for d in &c.datasets {
            match &d.source {
                crate::config::DatasetSource::Idx { images, labels } => {
                    files.push(images);
                    files.extend(labels.as_deref());
                }
                crate::config::DatasetSource::Folder { dir } => out.push((absolute(dir), RecursiveMode::Recursive)),
            }
        }
        for f in files {
            if let Some(parent) = f.parent() {
                out.push((absolute(parent), RecursiveMode::NonRecursive));
            }
        }
    }
    out.retain(|(p, _)| p.is_dir());
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out.dedup_by(|a, b| a.0 == b.0);
    out
}

fn watch(
    debouncer: &mut notify_debouncer_mini::Debouncer<notify_debouncer_mini::notify::RecommendedWatcher>,
    paths: &[(PathBuf, RecursiveMode)],
    log: &(dyn Fn(&str) + Sync),
) {
    for (p, mode) in paths {
        // Watching a folder twice is harmless; a folder that vanished is skipped.
        if let Err(e) = debouncer.watcher().watch(p, *mode) {
            log(&format!("warning: cannot watch {}: {e}", p.display()));
        }
    }
}

/// Whether a changed path is the build's own doing: the output, its staging and backup
/// folders (`.public.*` beside it), the cache.
fn ignored(opts: &ServeOptions, output: &Path, site: Option<&Site>) -> impl Fn(&Path) -> bool {
    let output = absolute(output);
    let sibling = format!(".{}.", output.file_name().and_then(|n| n.to_str()).unwrap_or("public"));
    let cache = absolute(&match (&opts.build.cache, site) {
        (Some(c), _) => c.clone(),
        (None, Some(s)) => s.default_cache_dir(),
        (None, None) => config_root(&opts.config).join(crate::cache::DEFAULT_DIR),
    });
    move |p: &Path| {
        p.starts_with(&output)
            || p.starts_with(&cache)
            || p.components()
                .any(|c| c.as_os_str().to_str().is_some_and(|n| n.starts_with(&sibling)))
    }
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Whether `p` was written at or after `since`, or no longer exists.
/// Whether `p` was saved (or removed) since it was last handled: its modification time
/// differs from the one recorded then, or, for a file not handled before, is not older than
/// `since`, the last handling's start. File times come from the kernel's coarse clock, up to
/// a tick behind `SystemTime::now()`: a note saved just after a quick failed rebuild could
/// look older than that rebuild's start and be missed, hence the recorded times and the
/// slack for the others.
fn modified(
    p: &Path,
    since: std::time::SystemTime,
    seen: &std::collections::HashMap<PathBuf, std::time::SystemTime>,
) -> bool {
    match std::fs::metadata(p).and_then(|m| m.modified()) {
        Ok(t) => match seen.get(p) {
            Some(&before) => t != before,
            None => t + Duration::from_millis(50) >= since,
        },
        Err(_) => true,
    }
}

/// Swap and backup files editors write next to the file being saved.
fn editor_scratch(p: &Path) -> bool {
    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    name.ends_with('~') || name.ends_with(".swp") || name.ends_with(".swx") || name.starts_with(".#") || name == "4913"
}

/// Why a URL path names no file to send.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// It leaves the site: `..`, an absolute component, a link out of the folder.
    Outside,
    Missing,
}

/// The site file a URL path names.
pub fn resolve(root: &Path, url_path: &str) -> std::result::Result<PathBuf, Refused> {
    let decoded =
        crate::plan::percent_decode(url_path.split(['?', '#']).next().unwrap_or_default()).ok_or(Refused::Missing)?;
    let mut path = root.to_path_buf();
    for c in Path::new(decoded.trim_start_matches('/')).components() {
        match c {
            Component::Normal(part) => path.push(part),
            Component::CurDir => {}
            _ => return Err(Refused::Outside),
        }
    }
    if path.is_dir() {
        path.push("index.html");
    }
    let real = path.canonicalize().map_err(|_| Refused::Missing)?;
    let real_root = root.canonicalize().map_err(|_| Refused::Missing)?;
    // A symbolic link inside the site must not lead out of it.
    if real.starts_with(&real_root) {
        Ok(real)
    } else {
        Err(Refused::Outside)
    }
}

/// The content type of a site file, by extension.
pub fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or_default() {
        "html" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "xml" => "application/xml",
        "txt" | "md" => "text/plain; charset=utf-8",
        // NumPy arrays and anything else: bytes to download.
        _ => "application/octet-stream",
    }
}

/// A response: status, content type, body.
type Reply = (u16, &'static str, Vec<u8>);

const TEXT: &str = "text/plain; charset=utf-8";

/// Reads one request from `stream` and answers it.
fn answer(mut stream: std::net::TcpStream, root: &Path, status: &Mutex<Status>) {
    use std::io::{BufRead, Read, Write};
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(30)));
    let Ok(clone) = stream.try_clone() else { return };
    // The request line, then headers up to the blank line (at most 64 lines of 8 KiB).
    let mut reader = std::io::BufReader::new(clone).take(1 << 16);
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let mut parts = line.split_whitespace();
    let (method, target) = (
        parts.next().unwrap_or_default().to_string(),
        parts.next().unwrap_or("/").to_string(),
    );
    for _ in 0..64 {
        let mut h = String::new();
        match reader.read_line(&mut h) {
            Ok(0) | Err(_) => break,
            Ok(_) if h.trim().is_empty() => break,
            Ok(_) => {}
        }
    }
    let (code, ctype, body) = match method.as_str() {
        "GET" | "HEAD" => respond(&target, root, status),
        "" => return,
        _ => (405, TEXT, b"only GET and HEAD".to_vec()),
    };
    let reason = match code {
        200 => "OK",
        403 => "Forbidden",
        404 => "Not Found",
        _ => "Method Not Allowed",
    };
    let head = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    if method != "HEAD" {
        let _ = stream.write_all(&body);
    }
    let _ = stream.flush();
}

/// The response to a GET of `url`.
fn respond(url: &str, root: &Path, status: &Mutex<Status>) -> Reply {
    if let Some(own) = url.strip_prefix(PREFIX) {
        return match own.split('?').next().unwrap_or_default() {
            "status" => {
                let s = status.lock().expect("not poisoned");
                let body = serde_json::json!({"version": s.version, "error": s.error}).to_string();
                (200, "application/json", body.into_bytes())
            }
            "live.js" => (200, "text/javascript; charset=utf-8", live_script().into_bytes()),
            _ => (404, TEXT, b"not found".to_vec()),
        };
    }
    match resolve(root, url) {
        Ok(path) => match std::fs::read(&path) {
            Ok(bytes) if content_type(&path).starts_with("text/html") => (200, content_type(&path), inject(bytes)),
            Ok(bytes) => (200, content_type(&path), bytes),
            Err(_) => not_found(root),
        },
        Err(Refused::Outside) => (403, TEXT, b"outside the site".to_vec()),
        Err(Refused::Missing) => not_found(root),
    }
}

fn not_found(root: &Path) -> Reply {
    match std::fs::read(root.join("404.html")) {
        Ok(page) => (404, "text/html; charset=utf-8", inject(page)),
        Err(_) => (404, TEXT, b"not found".to_vec()),
    }
}

/// Adds the live-reload script to a page, before `</body>`.
fn inject(page: Vec<u8>) -> Vec<u8> {
    let tag = format!("<script src=\"{PREFIX}live.js\"></script>");
    let text = String::from_utf8_lossy(&page);
    match text.rfind("</body>") {
        Some(at) => format!("{}{tag}\n{}", &text[..at], &text[at..]).into_bytes(),
        None => format!("{text}{tag}").into_bytes(),
    }
}

/// The script the served pages run: poll the status, reload on a new build, show a failed
/// build's error over the page until the next good one.
fn live_script() -> String {
    format!(
        r#"(function () {{
  var seen = null, box = null;
  function overlay(text) {{
    if (!box) {{
      box = document.createElement('div');
      box.id = 'cnnscope-error';
      box.setAttribute('role', 'alert');
      box.style.cssText = 'position:fixed;inset:0;z-index:99999;overflow:auto;background:rgba(20,0,0,.92);color:#fdd;padding:2rem;font:14px/1.5 ui-monospace,monospace;white-space:pre-wrap';
      document.body.appendChild(box);
    }}
    box.textContent = 'cnnscope: the last rebuild failed; this page is from the last good build.\n\n' + text;
  }}
  function poll() {{
    fetch('{PREFIX}status', {{ cache: 'no-store' }}).then(function (r) {{ return r.json(); }}).then(function (s) {{
      if (seen === null) seen = s.version;
      if (s.error) overlay(s.error);
      else if (s.version !== seen) {{ location.reload(); return; }}
      else if (box) {{ box.remove(); box = null; }}
      setTimeout(poll, {POLL_MS});
    }}).catch(function () {{ setTimeout(poll, 1000); }});
  }}
  poll();
}})();
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside_the_site() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a")).unwrap();
        std::fs::write(dir.path().join("a/index.html"), "x").unwrap();
        std::fs::write(dir.path().join("a/b c.png"), "x").unwrap();
        let root = dir.path();
        assert!(resolve(root, "/a/").unwrap().ends_with("a/index.html"));
        assert!(resolve(root, "/a/b%20c.png?x=1").unwrap().ends_with("a/b c.png"));
        assert_eq!(resolve(root, "/../etc/passwd"), Err(Refused::Outside));
        assert_eq!(resolve(root, "/a/%2e%2e/%2e%2e/etc/passwd"), Err(Refused::Outside));
        assert_eq!(resolve(root, "/missing.html"), Err(Refused::Missing));
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink("/etc", dir.path().join("out")).unwrap();
            assert_eq!(resolve(root, "/out/passwd"), Err(Refused::Outside));
        }
        assert_eq!(content_type(Path::new("x.npy")), "application/octet-stream");
        assert!(String::from_utf8(inject(b"<html><body>x</body></html>".to_vec()))
            .unwrap()
            .contains("live.js\"></script>\n</body>"));
    }
}
