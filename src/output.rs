//! Where outputs go: a check to make before any work starts, and a writer that suits the
//! destination, so that writing never clobbers what it should not.
//!
//! - A new path or a regular file is replaced atomically ([`crate::atomic`]): a temporary file
//!   in the same folder, renamed over the destination.
//! - A symbolic link stays a link: the file it points to is replaced atomically, next to it.
//! - A FIFO, a character device (`/dev/null`, a terminal) or another special file is opened
//!   and written directly: no temporary file, no rename.
//! - A path naming an open file descriptor (`/dev/stdout`, `/dev/stderr`, `/dev/fd/N`,
//!   `/proc/self/fd/N`) is written directly as well, appending when it is a regular file, so
//!   that a shell redirection (`> out.csv`, `>> out.csv`) receives the bytes.
//! - A folder, a read-only file (no write permission bit) or a path whose folder does not
//!   exist is refused with an [`Error::Io`] naming the path.
//!
//! ```
//! let dir = std::env::temp_dir().join(format!("metaadd-output-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir)?;
//! let path = dir.join("table.csv");
//! metaadd::output::check_writable(&path)?;
//! metaadd::output::write_bytes(&path, b"a,b\n1,2\n")?;
//! assert_eq!(std::fs::read(&path)?, b"a,b\n1,2\n");
//! // A missing folder and a folder as the destination are refused.
//! assert!(metaadd::output::check_writable(&dir.join("no-such-folder/t.csv")).is_err());
//! assert!(metaadd::output::check_writable(&dir).is_err());
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::error::{Error, Result};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

/// Symbolic links followed at the most before a path is refused (Linux's limit).
const MAX_LINKS: usize = 40;

/// How a destination is written.
#[derive(Debug, PartialEq, Eq)]
enum Destination {
    /// A new file or a regular one, replaced atomically at this path (a link's target).
    Replace(PathBuf),
    /// A special file or an open descriptor, opened and written in place.
    Direct { append: bool },
}

/// Checks that `path` can be written, without writing it: its folder exists, it is not a
/// folder, it is not read-only and, where it would be replaced through a temporary file, its
/// folder accepts new files. A FIFO is not opened (that would wait for a reader).
///
/// ```
/// // `/dev/null` is written in place.
/// # #[cfg(unix)]
/// metaadd::output::check_writable(std::path::Path::new("/dev/null"))?;
/// # Ok::<(), metaadd::Error>(())
/// ```
pub fn check_writable(path: &Path) -> Result<()> {
    match destination(path)? {
        Destination::Replace(target) => accepts_new_files(path, folder_of(&target)),
        Destination::Direct { .. } => Ok(()),
    }
}

/// Checks a folder that a command writes into and creates if missing: it is a folder that
/// accepts new files, or it is missing and the nearest folder above it that exists is one.
///
/// ```
/// let missing = std::env::temp_dir().join("metaadd-output-doc-missing/a/b");
/// metaadd::output::check_folder(&missing)?;
/// # Ok::<(), metaadd::Error>(())
/// ```
pub fn check_folder(folder: &Path) -> Result<()> {
    match std::fs::metadata(folder) {
        Ok(m) if m.is_dir() => accepts_new_files(folder, folder),
        Ok(_) => Err(refused(
            folder,
            ErrorKind::NotADirectory,
            "exists and is not a folder",
        )),
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {
            let above = folder
                .ancestors()
                .skip(1)
                .map(|a| {
                    if a.as_os_str().is_empty() {
                        Path::new(".")
                    } else {
                        a
                    }
                })
                .find(|a| std::fs::symlink_metadata(a).is_ok());
            match above {
                Some(a) if !a.is_dir() => Err(refused(
                    folder,
                    ErrorKind::NotADirectory,
                    format!("{} is not a folder", a.display()),
                )),
                _ => Ok(()),
            }
        }
        Err(source) => Err(io_error(folder, source)),
    }
}

/// Writes `path` through `write`, in the way its kind asks for (see the [module](self)
/// documentation): atomically for a new or regular file (a link's target for a link), directly
/// for a special file. A refused destination is an error before `write` is called.
///
/// ```
/// use std::io::Write;
/// let path = std::env::temp_dir().join(format!("metaadd-output-with-{}.txt", std::process::id()));
/// metaadd::output::write_with(&path, |w| {
///     writeln!(w, "hello").map_err(|source| metaadd::Error::Io { path: path.clone(), source })
/// })?;
/// assert_eq!(std::fs::read_to_string(&path)?, "hello\n");
/// # std::fs::remove_file(&path)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn write_with(path: &Path, write: impl FnOnce(&mut dyn Write) -> Result<()>) -> Result<()> {
    match destination(path)? {
        Destination::Replace(target) => crate::atomic::write_with(&target, |file| write(file)),
        Destination::Direct { append } => {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .append(append)
                .open(path)
                .map_err(|source| io_error(path, source))?;
            write(&mut file)?;
            file.flush().map_err(|source| io_error(path, source))
        }
    }
}

/// Writes `bytes` to `path` ([`write_with`]).
pub fn write_bytes(path: &Path, bytes: &[u8]) -> Result<()> {
    write_with(path, |w| {
        w.write_all(bytes).map_err(|source| io_error(path, source))
    })
}

/// How `path` is to be written, or why it cannot be.
fn destination(path: &Path) -> Result<Destination> {
    let (target, via_descriptor) = resolve_links(path)?;
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Err(refused(path, ErrorKind::IsADirectory, "is a folder")),
        Ok(m) if m.permissions().readonly() => Err(refused(
            path,
            ErrorKind::PermissionDenied,
            "is read-only; refusing to replace it",
        )),
        Ok(m) if !m.is_file() => Ok(Destination::Direct { append: false }),
        Ok(_) if via_descriptor => Ok(Destination::Direct { append: true }),
        Ok(_) => Ok(Destination::Replace(target)),
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {
            folder_exists(path, &target)?;
            if target.file_name().is_none() {
                return Err(refused(path, ErrorKind::InvalidInput, "is not a file name"));
            }
            Ok(Destination::Replace(target))
        }
        Err(source) => Err(io_error(path, source)),
    }
}

/// The path that symbolic links starting at `path` lead to (the last one may not exist), and
/// whether one of them names an open file descriptor.
fn resolve_links(path: &Path) -> Result<(PathBuf, bool)> {
    let mut current = path.to_path_buf();
    let mut via_descriptor = names_a_descriptor(&current);
    for _ in 0..MAX_LINKS {
        let is_link = std::fs::symlink_metadata(&current).is_ok_and(|m| m.file_type().is_symlink());
        if !is_link {
            return Ok((current, via_descriptor));
        }
        let next = std::fs::read_link(&current).map_err(|source| io_error(path, source))?;
        current = folder_of(&current).join(next);
        via_descriptor |= names_a_descriptor(&current);
    }
    Err(refused(
        path,
        ErrorKind::InvalidInput,
        format!("more than {MAX_LINKS} symbolic links"),
    ))
}

/// `/dev/stdout` and the like: names of a descriptor the process holds, whose link text
/// (`pipe:[…]`, a file opened by the shell) is no place to write a temporary file next to.
fn names_a_descriptor(path: &Path) -> bool {
    let fd_folder = path
        .parent()
        .is_some_and(|p| p.file_name().is_some_and(|n| n == "fd"));
    [
        Path::new("/dev/stdin"),
        Path::new("/dev/stdout"),
        Path::new("/dev/stderr"),
    ]
    .contains(&path)
        || (fd_folder && (path.starts_with("/proc") || path.starts_with("/dev/fd")))
}

/// The folder a file is created in (`.` for a bare name).
fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Refuses `path` unless the folder of `target` (the path itself, or a link's target) exists.
fn folder_exists(path: &Path, target: &Path) -> Result<()> {
    let folder = folder_of(target);
    let link = if target == path {
        String::new()
    } else {
        format!(" (of the link's target {})", target.display())
    };
    match std::fs::metadata(folder) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(refused(
            path,
            ErrorKind::NotADirectory,
            format!("{} is not a folder{link}", folder.display()),
        )),
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {
            Err(refused(
                path,
                ErrorKind::NotFound,
                format!("folder {} does not exist{link}", folder.display()),
            ))
        }
        Err(source) => Err(io_error(path, source)),
    }
}

/// Refuses `path` unless `folder` takes a new file (an unnamed temporary one, removed at once).
fn accepts_new_files(path: &Path, folder: &Path) -> Result<()> {
    tempfile::tempfile_in(folder).map(drop).map_err(|e| {
        refused(
            path,
            e.kind(),
            format!(
                "folder {} does not accept new files ({e})",
                folder.display()
            ),
        )
    })
}

fn refused(path: &Path, kind: ErrorKind, reason: impl Into<String>) -> Error {
    io_error(path, std::io::Error::new(kind, reason.into()))
}

fn io_error(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch folder, removed when dropped.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Self {
            let dir =
                std::env::temp_dir().join(format!("metaadd-output-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn message(e: Error) -> String {
        e.to_string()
    }

    #[test]
    fn a_new_file_in_an_existing_folder_is_written_atomically() {
        let s = Scratch::new("new");
        let path = s.0.join("out.csv");
        check_writable(&path).unwrap();
        assert_eq!(
            destination(&path).unwrap(),
            Destination::Replace(path.clone())
        );
        write_bytes(&path, b"x").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"x");
    }

    #[test]
    fn a_missing_folder_is_refused_naming_the_path_and_the_folder() {
        let s = Scratch::new("missing");
        let path = s.0.join("missing_dir/m.safetensors");
        let e = message(check_writable(&path).unwrap_err());
        assert!(e.contains("m.safetensors"), "{e}");
        assert!(
            e.contains("folder") && e.contains("missing_dir does not exist"),
            "{e}"
        );
        assert!(write_bytes(&path, b"x").is_err());
        assert!(!s.0.join("missing_dir").exists());
    }

    #[test]
    fn a_file_as_the_folder_is_refused() {
        let s = Scratch::new("file-folder");
        std::fs::write(s.0.join("plain"), b"").unwrap();
        let e = message(check_writable(&s.0.join("plain/m.safetensors")).unwrap_err());
        assert!(e.contains("is not a folder"), "{e}");
        let e = message(check_folder(&s.0.join("plain/plots")).unwrap_err());
        assert!(e.contains("is not a folder"), "{e}");
        let e = message(check_folder(&s.0.join("plain")).unwrap_err());
        assert!(e.contains("not a folder"), "{e}");
    }

    #[test]
    fn a_folder_is_refused_as_a_file() {
        let s = Scratch::new("folder");
        let e = message(check_writable(&s.0).unwrap_err());
        assert!(e.contains("is a folder"), "{e}");
        let e = message(write_bytes(&s.0, b"x").unwrap_err());
        assert!(e.contains("is a folder"), "{e}");
    }

    #[test]
    fn missing_folders_to_create_are_accepted_below_a_folder() {
        let s = Scratch::new("create");
        check_folder(&s.0).unwrap();
        check_folder(&s.0.join("a/b/c")).unwrap();
        check_folder(Path::new("metaadd-no-such-relative-folder")).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn a_read_only_file_is_refused_and_left_unchanged() {
        use std::os::unix::fs::PermissionsExt;
        let s = Scratch::new("readonly");
        let path = s.0.join("model.safetensors");
        std::fs::write(&path, b"old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444)).unwrap();
        let e = message(check_writable(&path).unwrap_err());
        assert!(
            e.contains("read-only") && e.contains("model.safetensors"),
            "{e}"
        );
        assert!(write_bytes(&path, b"new").is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
    }

    #[cfg(unix)]
    #[test]
    fn a_link_is_kept_and_its_target_replaced() {
        let s = Scratch::new("link");
        std::fs::create_dir(s.0.join("store")).unwrap();
        let target = s.0.join("store/model.safetensors");
        std::fs::write(&target, b"old").unwrap();
        let link = s.0.join("model.safetensors");
        std::os::unix::fs::symlink("store/model.safetensors", &link).unwrap();
        check_writable(&link).unwrap();
        write_bytes(&link, b"new").unwrap();
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read(&target).unwrap(), b"new");
        // Nothing but the file in the target's folder: the temporary file was renamed.
        assert_eq!(std::fs::read_dir(s.0.join("store")).unwrap().count(), 1);
    }

    #[cfg(unix)]
    #[test]
    fn a_dangling_link_creates_its_target_and_a_link_into_a_missing_folder_is_refused() {
        let s = Scratch::new("dangling");
        let link = s.0.join("out.csv");
        std::os::unix::fs::symlink("new.csv", &link).unwrap();
        write_bytes(&link, b"x").unwrap();
        assert_eq!(std::fs::read(s.0.join("new.csv")).unwrap(), b"x");
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        let bad = s.0.join("bad.csv");
        std::os::unix::fs::symlink("gone/new.csv", &bad).unwrap();
        let e = message(check_writable(&bad).unwrap_err());
        assert!(
            e.contains("does not exist") && e.contains("link's target"),
            "{e}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_link_loop_is_refused() {
        let s = Scratch::new("loop");
        let (a, b) = (s.0.join("a"), s.0.join("b"));
        std::os::unix::fs::symlink(&b, &a).unwrap();
        std::os::unix::fs::symlink(&a, &b).unwrap();
        assert!(check_writable(&a).is_err());
    }

    #[cfg(unix)]
    #[test]
    fn special_files_are_written_directly() {
        let null = Path::new("/dev/null");
        check_writable(null).unwrap();
        assert_eq!(
            destination(null).unwrap(),
            Destination::Direct { append: false }
        );
        write_bytes(null, b"nothing").unwrap();
        use std::os::unix::fs::FileTypeExt;
        assert!(std::fs::metadata(null)
            .unwrap()
            .file_type()
            .is_char_device());
    }

    #[cfg(unix)]
    #[test]
    fn a_fifo_is_written_in_place_and_stays_a_fifo() {
        use std::os::unix::fs::FileTypeExt;
        let s = Scratch::new("fifo");
        let fifo = s.0.join("out.fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.unwrap().success());
        check_writable(&fifo).unwrap();
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || std::fs::read(fifo).unwrap())
        };
        write_bytes(&fifo, b"through the pipe").unwrap();
        assert_eq!(reader.join().unwrap(), b"through the pipe");
        let kind = std::fs::symlink_metadata(&fifo).unwrap().file_type();
        assert!(kind.is_fifo());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn descriptor_names_are_written_directly_appending_to_a_regular_file() {
        let s = Scratch::new("descriptor");
        let path = s.0.join("redirected.txt");
        std::fs::write(&path, b"before,").unwrap();
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        use std::os::fd::AsRawFd;
        let alias = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
        assert_eq!(
            destination(&alias).unwrap(),
            Destination::Direct { append: true }
        );
        write_bytes(&alias, b"after").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"before,after");
        assert!(names_a_descriptor(Path::new("/dev/stdout")));
        assert!(names_a_descriptor(Path::new("/dev/fd/1")));
        assert!(!names_a_descriptor(Path::new("/home/fd/x")));
    }
}
