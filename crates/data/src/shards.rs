//! Pretokenized uint16 shards in the llama2.c / TinyStories format, memory-mapped.
//!
//! A shard is a headerless array of little-endian `u16` token ids (so the vocabulary must be
//! at most 65536), each document preceded by BOS. Several shards are read as one stream in
//! file-name order, so `data00.bin .. data49.bin` concatenate as their numbering says.

use crate::error::{DataError, Result};
use crate::stream::{check_range, TokenStream};
use memmap2::Mmap;
use std::fs::File;
use std::path::{Path, PathBuf};

/// One memory-mapped shard.
struct Shard {
    path: PathBuf,
    map: Mmap,
}

impl Shard {
    fn open(path: PathBuf) -> Result<Self> {
        let file = File::open(&path).map_err(|e| DataError::io(&path, e))?;
        let bytes = file.metadata().map_err(|e| DataError::io(&path, e))?.len();
        if bytes == 0 {
            return Err(DataError::Shard {
                path,
                message: "the file is empty; remove it or regenerate the shard".into(),
            });
        }
        if bytes % 2 != 0 {
            return Err(DataError::Shard {
                path,
                message: format!(
                    "{bytes} bytes is an odd length, so it is not an array of uint16 token ids \
                     (truncated download or wrong format?); re-download or re-tokenize it"
                ),
            });
        }
        // SAFETY: the map is read-only and shards are treated as immutable inputs; like every
        // memory-mapped reader, this assumes no other process truncates the file while training.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| DataError::io(&path, e))?;
        Ok(Shard { path, map })
    }

    fn len(&self) -> usize {
        self.map.len() / 2
    }
}

/// One or more uint16 shards read as a single token stream, without loading them into memory.
pub struct ShardSet {
    shards: Vec<Shard>,
    /// `starts[i]` is the stream index of shard `i`'s first token; `starts[n]` is the total.
    starts: Vec<usize>,
}

impl ShardSet {
    /// Opens `path`: a single `.bin` file, or a directory whose `*.bin` files are the shards in
    /// name order. An odd-length or empty shard, or a directory without shards, is an error.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let meta = std::fs::metadata(path).map_err(|e| DataError::io(path, e))?;
        let files = if meta.is_dir() {
            shard_files(path)?
        } else {
            vec![path.to_path_buf()]
        };
        let shards = files
            .into_iter()
            .map(Shard::open)
            .collect::<Result<Vec<_>>>()?;
        let mut starts = Vec::with_capacity(shards.len() + 1);
        let mut total = 0usize;
        for shard in &shards {
            starts.push(total);
            total += shard.len();
        }
        starts.push(total);
        Ok(ShardSet { shards, starts })
    }

    /// The shard files, in stream order.
    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        self.shards.iter().map(|s| s.path.as_path())
    }

    /// Index of the shard holding stream token `index` (`index < len`).
    fn shard_of(&self, index: usize) -> usize {
        self.starts.partition_point(|&s| s <= index) - 1
    }
}

/// The `*.bin` files directly inside `dir`, sorted by name.
fn shard_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))? {
        let entry = entry.map_err(|e| DataError::io(dir, e))?;
        let path = entry.path();
        if path.is_file() && path.extension().is_some_and(|ext| ext == "bin") {
            files.push(path);
        }
    }
    if files.is_empty() {
        return Err(DataError::Shard {
            path: dir.to_path_buf(),
            message: "the directory has no *.bin shards; pass a .bin file or a directory of \
                      uint16 shards"
                .into(),
        });
    }
    files.sort();
    Ok(files)
}

impl TokenStream for ShardSet {
    fn len(&self) -> usize {
        self.starts[self.starts.len() - 1]
    }

    /// Decodes little-endian u16 pairs straight from the maps: two byte loads and a widen per
    /// token, crossing into the next shard when the range does.
    fn read(&self, start: usize, out: &mut [u32]) -> Result<()> {
        check_range(start, out.len(), self.len())?;
        let mut done = 0;
        while done < out.len() {
            let index = start + done;
            let shard = self.shard_of(index);
            let local = index - self.starts[shard];
            let n = (out.len() - done).min(self.shards[shard].len() - local);
            let bytes = &self.shards[shard].map[2 * local..2 * (local + n)];
            for (dst, pair) in out[done..done + n].iter_mut().zip(bytes.chunks_exact(2)) {
                *dst = u32::from(u16::from_le_bytes([pair[0], pair[1]]));
            }
            done += n;
        }
        Ok(())
    }

    fn describe_position(&self, index: usize) -> String {
        if index >= self.len() {
            return format!("token {index}");
        }
        let shard = self.shard_of(index);
        format!(
            "token {index} ({}, token {})",
            self.shards[shard].path.display(),
            index - self.starts[shard]
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_u16(path: &Path, ids: &[u16]) {
        let bytes: Vec<u8> = ids.iter().flat_map(|id| id.to_le_bytes()).collect();
        std::fs::write(path, bytes).unwrap();
    }

    #[test]
    fn directory_shards_concatenate_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        // Written out of order, with a non-shard file that must be ignored.
        write_u16(&dir.path().join("data01.bin"), &[10, 11, 12]);
        write_u16(&dir.path().join("data00.bin"), &[1, 2, 65535, 4]);
        write_u16(&dir.path().join("data02.bin"), &[20]);
        std::fs::write(dir.path().join("README.txt"), "not a shard").unwrap();

        let set = ShardSet::open(dir.path()).unwrap();
        assert_eq!(set.len(), 8);
        let expected = vec![1, 2, 65535, 4, 10, 11, 12, 20];
        assert_eq!(set.get(0..8).unwrap(), expected);
        // A read spanning all three shards from the middle of the first.
        assert_eq!(set.get(3..8).unwrap(), expected[3..8].to_vec());
        assert_eq!(set.get(7..8).unwrap(), vec![20]);
        assert!(set.get(6..9).is_err());
        let names: Vec<_> = set
            .paths()
            .map(|p| p.file_name().unwrap().to_owned())
            .collect();
        assert_eq!(names, ["data00.bin", "data01.bin", "data02.bin"]);
        let pos = set.describe_position(5);
        assert!(
            pos.contains("data01.bin") && pos.contains("token 1"),
            "{pos}"
        );
    }

    #[test]
    fn single_file_opens_as_one_shard() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("one.bin");
        write_u16(&path, &[7, 8, 9]);
        let set = ShardSet::open(&path).unwrap();
        assert_eq!(set.get(0..3).unwrap(), vec![7, 8, 9]);
    }

    #[test]
    fn odd_length_shard_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        write_u16(&dir.path().join("a.bin"), &[1, 2]);
        std::fs::write(dir.path().join("b.bin"), [1u8, 0, 2]).unwrap();
        let err = ShardSet::open(dir.path()).err().unwrap().to_string();
        assert!(err.contains("b.bin") && err.contains("odd"), "{err}");
    }

    #[test]
    fn empty_directory_and_empty_file_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let err = ShardSet::open(dir.path()).err().unwrap().to_string();
        assert!(err.contains("no *.bin shards"), "{err}");
        std::fs::write(dir.path().join("z.bin"), []).unwrap();
        let err = ShardSet::open(dir.path()).err().unwrap().to_string();
        assert!(err.contains("z.bin") && err.contains("empty"), "{err}");
    }

    #[test]
    fn missing_path_is_an_io_error_naming_it() {
        let err = ShardSet::open("/no/such/shards").err().unwrap().to_string();
        assert!(err.contains("/no/such/shards"), "{err}");
    }
}
