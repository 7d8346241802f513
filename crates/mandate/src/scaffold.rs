//! `mandate new NAME --lang python|typescript|rust`: a small MCP server project whose tools
//! declare, once, the access they need (their MCP annotations), with its own test and a README
//! whose first command runs it under `mandate dev`. The files are in `templates/new/<lang>/`.

use std::path::{Path, PathBuf};

/// The languages `mandate new` writes a project in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// FastMCP (Python 3.10 or later).
    Python,
    /// The official MCP TypeScript SDK (Node 22.18 or later runs the .ts files as they are).
    Typescript,
    /// rmcp with mandate-guard (the workspace's crates by path).
    Rust,
}

/// One file of a template: where it goes in the project, and its text with `__NAME__` (and for
/// Rust `__MANDATE_CORE__` / `__MANDATE_GUARD__`) still in it.
struct Template {
    path: &'static str,
    text: &'static str,
}

macro_rules! template {
    ($lang:literal, $from:literal => $to:literal) => {
        Template { path: $to, text: include_str!(concat!("../templates/new/", $lang, "/", $from)) }
    };
    ($lang:literal, $file:literal) => {
        template!($lang, $file => $file)
    };
}

const PYTHON: &[Template] = &[
    template!("python", "README.md"),
    template!("python", "server.py"),
    template!("python", "test_server.py"),
    template!("python", "requirements.txt"),
    template!("python", "gitignore" => ".gitignore"),
];

const TYPESCRIPT: &[Template] = &[
    template!("typescript", "README.md"),
    template!("typescript", "package.json"),
    template!("typescript", "tsconfig.json"),
    template!("typescript", "src/server.ts"),
    template!("typescript", "src/main.ts"),
    template!("typescript", "test/server.test.ts"),
    template!("typescript", "gitignore" => ".gitignore"),
];

const RUST: &[Template] = &[
    template!("rust", "README.md"),
    template!("rust", "Cargo.toml.tmpl" => "Cargo.toml"),
    template!("rust", "src/main.rs"),
    template!("rust", "src/notes.rs"),
    template!("rust", "src/access.rs"),
    template!("rust", "gitignore" => ".gitignore"),
];

/// Why a project was not written.
#[derive(Debug, thiserror::Error)]
pub enum NewError {
    #[error(
        "{0:?} cannot be a project name: use lower-case letters, digits, `-` and `_`, starting with a letter, at most 40 (it becomes the scope prefix, {0}.read)"
    )]
    Name(String),
    #[error("{0} already exists: choose another name or --path")]
    Exists(PathBuf),
    #[error(
        "the Rust project depends on mandate's crates by path, and no source checkout of mandate was found: pass --mandate-path DIR (a checkout holding crates/mandate-guard)"
    )]
    NoMandateSource,
    #[error("--mandate-path {0}: no crates/mandate-guard/Cargo.toml there")]
    NotMandateSource(PathBuf),
    #[error("writing {0}: {1}")]
    Write(PathBuf, std::io::Error),
}

/// What [`create`] wrote, and the commands that come next.
#[derive(Debug)]
pub struct Created {
    pub dir: PathBuf,
    pub files: Vec<PathBuf>,
    pub next: Vec<String>,
}

/// The source checkout this binary was built from, when it is still there.
fn built_from() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent()?.parent()?.to_path_buf();
    root.join("crates/mandate-guard/Cargo.toml").is_file().then_some(root)
}

/// Writes project `name` in `lang` into `dir` (which must not exist). A Rust project depends on
/// the mandate crates at `mandate_source` (default: the checkout this binary was built from) and
/// starts from its `Cargo.lock`, so it builds with the versions mandate was tested with.
pub fn create(name: &str, lang: Lang, dir: &Path, mandate_source: Option<&Path>) -> Result<Created, NewError> {
    if !mandate_gateway::valid_name(name) {
        return Err(NewError::Name(name.to_owned()));
    }
    if dir.exists() {
        return Err(NewError::Exists(dir.to_path_buf()));
    }
    let (templates, source) = match lang {
        Lang::Python => (PYTHON, None),
        Lang::Typescript => (TYPESCRIPT, None),
        Lang::Rust => {
            let source = match mandate_source {
                Some(p) if p.join("crates/mandate-guard/Cargo.toml").is_file() => p.to_path_buf(),
                Some(p) => return Err(NewError::NotMandateSource(p.to_path_buf())),
                None => built_from().ok_or(NewError::NoMandateSource)?,
            };
            (RUST, Some(std::path::absolute(&source).unwrap_or(source)))
        }
    };
    let crate_dep = |krate: &str| match &source {
        Some(root) => format!("path = {}", toml_string(&root.join("crates").join(krate).display().to_string())),
        None => String::new(),
    };
    let mut files = Vec::new();
    for t in templates {
        let text = t
            .text
            .replace("__NAME__", name)
            .replace("__MANDATE_CORE__", &crate_dep("mandate-core"))
            .replace("__MANDATE_GUARD__", &crate_dep("mandate-guard"));
        let path = dir.join(t.path);
        write(&path, &text)?;
        files.push(path);
    }
    if let Some(root) = &source
        && let Ok(lock) = std::fs::read_to_string(root.join("Cargo.lock"))
    {
        // cargo drops what the project does not use on its first build.
        let path = dir.join("Cargo.lock");
        write(&path, &lock)?;
        files.push(path);
    }
    let shown = dir.display();
    let next = match lang {
        Lang::Python => vec![
            format!("cd {shown}"),
            "python3 -m venv .venv && .venv/bin/pip install -r requirements.txt".to_owned(),
            "mandate dev -- .venv/bin/python server.py".to_owned(),
        ],
        Lang::Typescript => {
            vec![format!("cd {shown}"), "npm install".to_owned(), "mandate dev -- node src/main.ts".to_owned()]
        }
        Lang::Rust => vec![format!("cd {shown}"), "mandate dev -- cargo run -q".to_owned()],
    };
    Ok(Created { dir: dir.to_path_buf(), files, next })
}

/// A TOML basic string: quotes and backslashes escaped, control characters as `\uXXXX`, the
/// rest as it is (Rust's `{:?}` writes escapes such as `\u{301}`, which TOML refuses).
fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn write(path: &Path, text: &str) -> Result<(), NewError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| NewError::Write(parent.to_path_buf(), e))?;
    }
    std::fs::write(path, text).map_err(|e| NewError::Write(path.to_path_buf(), e))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_template_names_the_project_and_nothing_is_left_unfilled() {
        let dir = tempfile::tempdir().unwrap();
        for lang in [Lang::Python, Lang::Typescript, Lang::Rust] {
            let at = dir.path().join(format!("{lang:?}").to_lowercase());
            let made = create("notes-app", lang, &at, None).unwrap();
            let mut names_it = 0;
            for f in &made.files {
                let text = std::fs::read_to_string(f).unwrap();
                let unfilled = text.contains("__NAME__") || text.contains("__MANDATE_");
                assert!(!unfilled, "{} keeps a placeholder", f.display());
                names_it += usize::from(text.contains("notes-app"));
            }
            assert!(names_it >= 3, "{lang:?}: the name is in the README, the code and the test");
            assert!(at.join(".gitignore").is_file() && at.join("README.md").is_file());
            assert!(made.next.last().unwrap().starts_with("mandate dev -- "), "{:?}", made.next);
        }
    }

    #[test]
    fn paths_are_written_as_toml_strings() {
        assert_eq!(toml_string("/home/jose\u{301}/src"), "\"/home/jose\u{301}/src\"");
        assert_eq!(toml_string("C:\\a \"b\""), r#""C:\\a \"b\"""#);
        assert_eq!(toml_string("a\nb"), r#""a\u000Ab""#);
    }

    #[test]
    fn a_bad_name_an_existing_directory_and_a_wrong_source_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["Notes", "1notes", "no tes", "notes/x", "", &"n".repeat(41)] {
            assert!(matches!(create(bad, Lang::Python, &dir.path().join("x"), None), Err(NewError::Name(_))), "{bad}");
        }
        assert!(matches!(create("notes", Lang::Python, dir.path(), None), Err(NewError::Exists(_))));
        let wrong = create("notes", Lang::Rust, &dir.path().join("r"), Some(dir.path()));
        assert!(matches!(wrong, Err(NewError::NotMandateSource(_))));
        assert!(!dir.path().join("r").exists(), "nothing is written when the source is wrong");
    }

    #[test]
    fn the_rust_project_depends_on_this_checkout_by_path() {
        let dir = tempfile::tempdir().unwrap();
        let made = create("notes", Lang::Rust, &dir.path().join("notes"), None).unwrap();
        let manifest = std::fs::read_to_string(made.dir.join("Cargo.toml")).unwrap();
        let root = built_from().unwrap();
        let guard = root.join("crates/mandate-guard").display().to_string();
        assert!(manifest.contains(&format!("mandate-guard = {{ path = \"{guard}\" }}")), "{manifest}");
        assert!(made.dir.join("Cargo.lock").is_file());
    }
}
