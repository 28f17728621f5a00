//! Walking, copying and reaching into folders that hold other people's files (a job's code,
//! its outputs, a datastore): symbolic links are followed only where they stay inside the
//! folder, links to nothing and links back to a folder above are left out by name, and a
//! path from a request never leads outside its root.

use std::io;
use std::path::{Path, PathBuf};

/// What copying a folder did.
#[derive(Debug, Default)]
pub struct Copied {
    /// Bytes of the files copied.
    pub bytes: u64,
    /// Links that were not copied, and why.
    pub left_out: Vec<LeftOut>,
}

/// A symbolic link a copy left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeftOut {
    /// The link, relative to the folder copied.
    pub path: PathBuf,
    /// Why it was left out.
    pub reason: LeftOutReason,
}

/// Why a link was left out of a copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeftOutReason {
    /// It leads to nothing (missing, or a chain of links that loops).
    Broken,
    /// It leads to a folder above itself: following it would never end.
    Loop,
}

impl std::fmt::Display for LeftOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let why = match self.reason {
            LeftOutReason::Broken => "a symbolic link to nothing",
            LeftOutReason::Loop => "a symbolic link to a folder above it",
        };
        write!(f, "left out `{}`: {why}", self.path.display())
    }
}

/// An I/O error that names the file it happened on.
fn at(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// Copies a folder recursively (files and folders; links are followed, `.git` is skipped).
/// Broken links and links back to a folder above are left out and named in the result.
pub fn copy_tree(src: &Path, dst: &Path) -> io::Result<Copied> {
    let mut copied = Copied::default();
    let mut chain = vec![src.canonicalize().map_err(|e| at(src, e))?];
    copy_dir(src, dst, Path::new(""), &mut chain, &mut copied)?;
    Ok(copied)
}

fn copy_dir(
    src: &Path,
    dst: &Path,
    rel: &Path,
    chain: &mut Vec<PathBuf>,
    copied: &mut Copied,
) -> io::Result<()> {
    std::fs::create_dir_all(dst).map_err(|e| at(dst, e))?;
    for entry in std::fs::read_dir(src).map_err(|e| at(src, e))? {
        let entry = entry?;
        let name = entry.file_name();
        if name == ".git" {
            continue;
        }
        let (from, to, here) = (entry.path(), dst.join(&name), rel.join(&name));
        let meta = match std::fs::metadata(&from) {
            Ok(m) => m,
            Err(_) if entry.file_type()?.is_symlink() => {
                copied.left_out.push(LeftOut {
                    path: here,
                    reason: LeftOutReason::Broken,
                });
                continue;
            }
            Err(e) => return Err(at(&from, e)),
        };
        if meta.is_dir() {
            let canonical = from.canonicalize().map_err(|e| at(&from, e))?;
            if chain.iter().any(|c| c.starts_with(&canonical)) {
                copied.left_out.push(LeftOut {
                    path: here,
                    reason: LeftOutReason::Loop,
                });
                continue;
            }
            chain.push(canonical);
            copy_dir(&from, &to, &here, chain, copied)?;
            chain.pop();
        } else if meta.is_file() {
            copied.bytes += std::fs::copy(&from, &to).map_err(|e| at(&from, e))?;
        }
    }
    Ok(())
}

/// Lists the files under `root` with sizes, paths relative and `/`-separated, sorted. Links
/// are followed only when they lead to somewhere inside `root` (and not back above
/// themselves); others are not listed. A file `root` lists itself.
pub fn list_files(root: &Path) -> io::Result<Vec<(String, u64)>> {
    let meta = std::fs::metadata(root)?;
    if !meta.is_dir() {
        let name = root
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        return Ok(vec![(name, meta.len())]);
    }
    let top = root.canonicalize()?;
    let mut out = Vec::new();
    let mut chain = vec![top.clone()];
    walk(&top, root, "", &mut chain, &mut out)?;
    out.sort();
    Ok(out)
}

fn walk(
    top: &Path,
    dir: &Path,
    rel: &str,
    chain: &mut Vec<PathBuf>,
    out: &mut Vec<(String, u64)>,
) -> io::Result<()> {
    for entry in std::fs::read_dir(dir).map_err(|e| at(dir, e))? {
        let entry = entry?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let here = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        let meta = if entry.file_type()?.is_symlink() {
            match path.canonicalize() {
                Ok(target) if target.starts_with(top) => std::fs::metadata(&target)?,
                _ => continue,
            }
        } else {
            entry.metadata()?
        };
        if meta.is_dir() {
            let canonical = path.canonicalize().map_err(|e| at(&path, e))?;
            if chain.iter().any(|c| c.starts_with(&canonical)) {
                continue;
            }
            chain.push(canonical);
            walk(top, &path, &here, chain, out)?;
            chain.pop();
        } else if meta.is_file() {
            out.push((here, meta.len()));
        }
    }
    Ok(())
}

/// The file at `rel` under `root`, wherever links inside `root` lead, refused (permission
/// denied) when they lead outside it. `rel` must already be a plain relative path
/// (`berth_core::names::inside_path`).
pub fn resolve_inside(root: &Path, rel: &Path) -> io::Result<PathBuf> {
    let top = root.canonicalize()?;
    let target = top.join(rel).canonicalize()?;
    if target.starts_with(&top) {
        Ok(target)
    } else {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("`{}` leads outside its folder", rel.display()),
        ))
    }
}

/// Opens the file at `rel` under `root` for reading, as [`resolve_inside`] finds it, without
/// following a link put in its place since.
pub fn open_inside(root: &Path, rel: &Path) -> io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = resolve_inside(root, rel)?;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
}

/// Where a file at `rel` under `root` is to be written: its folders are made one by one, and
/// a link on the way is refused instead of followed, so the file lands inside `root`.
pub fn writable_inside(root: &Path, rel: &Path) -> io::Result<PathBuf> {
    std::fs::create_dir_all(root)?;
    let mut at_dir = root.canonicalize()?;
    let Some(file) = rel.file_name() else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "an upload needs a file name",
        ));
    };
    for part in rel.parent().into_iter().flat_map(Path::components) {
        at_dir.push(part);
        match std::fs::symlink_metadata(&at_dir) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!(
                        "`{}` is a symbolic link; uploads do not follow links",
                        at_dir.strip_prefix(root).unwrap_or(&at_dir).display()
                    ),
                ));
            }
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("`{}` is a file, not a folder", at_dir.display()),
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => std::fs::create_dir(&at_dir)?,
            Err(e) => return Err(e),
        }
    }
    Ok(at_dir.join(file))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn copies_and_lists_a_tree() -> io::Result<()> {
        let t = tempfile::tempdir()?;
        let src = t.path().join("src");
        std::fs::create_dir_all(src.join("sub"))?;
        std::fs::create_dir_all(src.join(".git"))?;
        std::fs::write(src.join("a.py"), "print(1)")?;
        std::fs::write(src.join("sub/b.txt"), "bb")?;
        std::fs::write(src.join(".git/HEAD"), "x")?;
        let dst = t.path().join("dst");
        assert_eq!(copy_tree(&src, &dst)?.bytes, 10);
        assert_eq!(
            list_files(&dst)?,
            [("a.py".to_string(), 8), ("sub/b.txt".to_string(), 2)]
        );
        Ok(())
    }

    #[test]
    fn a_copy_leaves_out_broken_links_and_loops_by_name() -> io::Result<()> {
        let t = tempfile::tempdir()?;
        let src = t.path().join("src");
        std::fs::create_dir_all(src.join("sub"))?;
        std::fs::write(src.join("a.py"), "print(1)")?;
        symlink("missing.py", src.join(".#a.py"))?;
        symlink("..", src.join("sub/up"))?;
        symlink("../a.py", src.join("sub/same.py"))?;
        let dst = t.path().join("dst");
        let copied = copy_tree(&src, &dst)?;
        let mut left: Vec<_> = copied.left_out.iter().map(ToString::to_string).collect();
        left.sort();
        assert_eq!(
            left,
            [
                "left out `.#a.py`: a symbolic link to nothing",
                "left out `sub/up`: a symbolic link to a folder above it"
            ]
        );
        assert_eq!(
            list_files(&dst)?,
            [("a.py".to_string(), 8), ("sub/same.py".to_string(), 8)]
        );
        Ok(())
    }

    #[test]
    fn a_listing_follows_only_links_that_stay_inside() -> io::Result<()> {
        let t = tempfile::tempdir()?;
        let root = t.path().join("out");
        std::fs::create_dir_all(root.join("ckpt-1"))?;
        std::fs::write(root.join("ckpt-1/w.bin"), "www")?;
        std::fs::write(t.path().join("secret"), "s")?;
        symlink("ckpt-1", root.join("latest"))?;
        symlink(t.path().join("secret"), root.join("stolen"))?;
        symlink("/", root.join("everything"))?;
        symlink(".", root.join("self"))?;
        assert_eq!(
            list_files(&root)?,
            [
                ("ckpt-1/w.bin".to_string(), 3),
                ("latest/w.bin".to_string(), 3)
            ]
        );
        Ok(())
    }

    #[test]
    fn a_path_is_resolved_only_inside_its_root() -> io::Result<()> {
        let t = tempfile::tempdir()?;
        let root = t.path().join("data");
        std::fs::create_dir_all(root.join("ckpt-1"))?;
        std::fs::write(root.join("ckpt-1/w.bin"), "www")?;
        std::fs::write(t.path().join("token"), "secret")?;
        symlink("ckpt-1", root.join("latest"))?;
        symlink(t.path().join("token"), root.join("token"))?;
        assert!(open_inside(&root, Path::new("latest/w.bin")).is_ok());
        let e = open_inside(&root, Path::new("token")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        Ok(())
    }

    #[test]
    fn a_write_does_not_follow_a_link_out() -> io::Result<()> {
        let t = tempfile::tempdir()?;
        let root = t.path().join("out");
        let outside = t.path().join("outside");
        std::fs::create_dir_all(&root)?;
        std::fs::create_dir_all(&outside)?;
        symlink(&outside, root.join("escape"))?;
        let e = writable_inside(&root, Path::new("escape/x.txt")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        assert!(e.to_string().contains("`escape` is a symbolic link"), "{e}");
        let ok = writable_inside(&root, Path::new("a/b/x.txt"))?;
        assert_eq!(ok, root.canonicalize()?.join("a/b/x.txt"));
        assert!(root.join("a/b").is_dir());
        Ok(())
    }
}
