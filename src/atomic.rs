//! Files written whole or not at all: the bytes go to a temporary file in the destination's
//! folder, which is flushed to disk and then renamed over the destination. A run that stops
//! mid-write (an error, a kill, a full disk) leaves the previous file as it was.
//!
//! This replaces whatever is at the path, a symbolic link or a device included: the library's
//! writers go through [`crate::output`], which keeps links, writes special files in place and
//! refuses read-only files.

use crate::error::{Error, Result};
use std::fs::File;
use std::io::Write;
use std::path::Path;

/// Writes `path` through `write`, atomically: on any error the old file (if any) is untouched
/// and the temporary file is removed.
///
/// ```
/// use std::io::Write;
/// let path = std::env::temp_dir().join(format!("metaadd-atomic-doc-{}.txt", std::process::id()));
/// metaadd::atomic::write_bytes(&path, b"first")?;
/// // A writer that fails half-way leaves the first version in place.
/// let failed = metaadd::atomic::write_with(&path, |f| {
///     f.write_all(b"partial").expect("a temporary file takes bytes");
///     Err(metaadd::Error::InvalidInput("stopped".into()))
/// });
/// assert!(failed.is_err());
/// assert_eq!(std::fs::read(&path)?, b"first");
/// # std::fs::remove_file(&path)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn write_with(path: &Path, write: impl FnOnce(&mut File) -> Result<()>) -> Result<()> {
    let io = |source: std::io::Error| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| Error::invalid(format!("{}: not a file name", path.display())))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{}.", name.to_string_lossy()))
        .suffix(".tmp")
        .tempfile_in(folder)
        .map_err(io)?;
    // The temporary file is removed when `tmp` drops on an early return.
    write(tmp.as_file_mut())?;
    tmp.as_file_mut().flush().map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    keep_permissions(path, tmp.as_file()).map_err(io)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}

/// Writes `bytes` to `path` atomically ([`write_with`]).
pub fn write_bytes(path: &Path, bytes: &[u8]) -> Result<()> {
    write_with(path, |f| {
        f.write_all(bytes).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })
    })
}

/// A replaced file keeps its permissions; a new one gets the usual `rw-r--r--` (less the
/// umask is not applied: temporary files are created `rw-------`).
fn keep_permissions(path: &Path, tmp: &File) -> std::io::Result<()> {
    match std::fs::metadata(path) {
        Ok(old) => tmp.set_permissions(old.permissions()),
        Err(_) => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                tmp.set_permissions(std::fs::Permissions::from_mode(0o644))
            }
            #[cfg(not(unix))]
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("metaadd-atomic-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_failing_writer_leaves_the_old_file_and_no_temporary_file() {
        let dir = scratch("fail");
        let path = dir.join("model.safetensors");
        write_bytes(&path, b"good").unwrap();
        let e = write_with(&path, |f| {
            f.write_all(&[0u8; 1 << 16]).unwrap();
            Err(Error::invalid("disk full"))
        })
        .unwrap_err();
        assert!(e.to_string().contains("disk full"));
        assert_eq!(std::fs::read(&path).unwrap(), b"good");
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("model.safetensors")]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn new_files_are_world_readable_and_replaced_files_keep_their_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = scratch("mode");
        let path = dir.join("table.csv");
        write_bytes(&path, b"a").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o644);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        write_bytes(&path, b"b").unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(std::fs::read(&path).unwrap(), b"b");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_folder_is_an_error_naming_the_file() {
        let path = std::env::temp_dir().join("metaadd-no-such-folder-xyz/out.csv");
        let e = write_bytes(&path, b"x").unwrap_err().to_string();
        assert!(e.contains("metaadd-no-such-folder-xyz"), "{e}");
    }
}
