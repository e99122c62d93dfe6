//! Where the files an endpoint names may be: flows under `flows_dir`, plugin and
//! transformer `.wasm` components under `plugins_dir`.
//!
//! An endpoint spec comes from the config file or the admin API; its paths are checked
//! here before anything is read. A path is resolved the way the kernel will open it
//! (`canonicalize`: `..` and every symlink followed) and must then lie inside the
//! directory, itself canonicalized. A path that cannot be resolved (missing, dangling
//! link) is judged by its lexical form, and outside it gets the same answer as an
//! existing file outside: "… is outside flows_dir", never whether it exists. Readers then
//! open the resolved path; their errors only ever concern files inside the directories.

use std::path::{Component, Path, PathBuf};

/// The directories endpoint files are confined to (absolute; see `ServeConfig`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileRoots {
    pub flows_dir: PathBuf,
    pub plugins_dir: PathBuf,
}

impl FileRoots {
    /// The flow file to open, or why not.
    pub fn flow(&self, path: &Path) -> Result<PathBuf, String> {
        confine(path, &self.flows_dir).ok_or_else(|| "flow path is outside flows_dir".to_string())
    }

    /// The plugin or transformer component to open, or why not.
    pub fn plugin(&self, path: &Path) -> Result<PathBuf, String> {
        confine(path, &self.plugins_dir)
            .ok_or_else(|| "plugin path is outside plugins_dir".to_string())
    }
}

/// `path` resolved, when it is inside `root`.
pub fn confine(path: &Path, root: &Path) -> Option<PathBuf> {
    let lexical_root = normalize(root);
    let real_root = root.canonicalize().unwrap_or_else(|_| lexical_root.clone());
    match path.canonicalize() {
        Ok(real) => real.starts_with(&real_root).then_some(real),
        // Not resolvable: inside only if it is lexically, and then the reader reports
        // "not found" about a path inside the directory.
        Err(_) => {
            let lexical = normalize(path);
            (lexical.starts_with(&lexical_root) || lexical.starts_with(&real_root))
                .then_some(lexical)
        }
    }
}

/// `path` made absolute with `.` and `..` applied to its text (no file system access).
fn normalize(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut out = PathBuf::new();
    for component in absolute.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_confined_after_resolving_dots_and_links() {
        let base = std::env::temp_dir().join(format!("plugboard-files-{}", std::process::id()));
        let root = base.join("flows");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/f.json"), "{}").unwrap();
        std::fs::write(base.join("secret.json"), "{}").unwrap();
        let roots = FileRoots {
            flows_dir: root.clone(),
            plugins_dir: root.clone(),
        };
        assert!(roots.flow(&root.join("sub/f.json")).is_ok());
        assert!(roots.flow(&root.join("sub/../sub/f.json")).is_ok());
        // Missing inside: allowed here, the reader says "not found".
        assert!(roots.flow(&root.join("missing.json")).is_ok());
        let outside = "flow path is outside flows_dir";
        for path in [
            base.join("secret.json"),
            root.join("../secret.json"),
            root.join("sub/../../secret.json"),
            base.join("missing.json"),
            root.join("../missing.json"),
            PathBuf::from("/etc/passwd"),
        ] {
            assert_eq!(
                roots.flow(&path).unwrap_err(),
                outside,
                "{}",
                path.display()
            );
        }
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(base.join("secret.json"), root.join("link.json")).unwrap();
            std::os::unix::fs::symlink(base.join("gone.json"), root.join("dangling.json")).unwrap();
            assert_eq!(roots.flow(&root.join("link.json")).unwrap_err(), outside);
            // A dangling link inside is "inside" lexically; opening it fails as not found.
            assert!(roots.flow(&root.join("dangling.json")).is_ok());
        }
        std::fs::remove_dir_all(&base).unwrap();
    }
}
