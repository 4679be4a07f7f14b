//! Creating the files a load writes beside the server (`--errors-file`,
//! `--replies FILE`): refused when the path is one of the input files
//! (creating it would empty the input before it is read), and worded as
//! every other I/O failure is.
//!
//! Place in the data flow: a leaf, used before loading begins, so a file
//! that cannot be created fails the run with nothing sent.

use std::fs::{self, File, OpenOptions, Permissions};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::Result;

use crate::config::Source;
use crate::io_error::describe_io_error;

/// Who may read an output file.
#[derive(Clone, Copy)]
pub enum Readers {
    /// As the umask allows (replies).
    Anyone,
    /// The owner only, an existing file narrowed too: the file holds input
    /// lines, which may be `AUTH` with its password.
    OwnerOnly,
}

/// Creates (or empties) the file `flag` names at `path`.
pub fn create_output(
    path: &Path,
    flag: &str,
    sources: &[Source],
    readers: Readers,
) -> Result<File> {
    if let Some(input) = sources.iter().find_map(|source| match source {
        Source::File(input) if same_file(input, path) => Some(input),
        _ => None,
    }) {
        anyhow::bail!(
            "{flag} {} is the input file {}: it would be emptied",
            path.display(),
            input.display()
        );
    }
    let cannot_create = |error: std::io::Error| {
        anyhow::anyhow!(
            "cannot create {}: {}",
            path.display(),
            describe_io_error(&error)
        )
    };
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    if let Readers::OwnerOnly = readers {
        options.mode(0o600);
    }
    let file = options.open(path).map_err(cannot_create)?;
    if let Readers::OwnerOnly = readers {
        // An existing file keeps its mode through open: narrow it too.
        file.set_permissions(Permissions::from_mode(0o600))
            .map_err(cannot_create)?;
    }
    Ok(file)
}

/// Whether two paths name one existing file.
fn same_file(one: &Path, other: &Path) -> bool {
    match (fs::metadata(one), fs::metadata(other)) {
        (Ok(one), Ok(other)) => one.dev() == other.dev() && one.ino() == other.ino(),
        _ => false,
    }
}
