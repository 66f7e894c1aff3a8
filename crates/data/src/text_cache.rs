//! Tokens of a text file cached on disk, so a corpus is tokenized once rather than at every
//! run: `NAME.tok-HASH.bin` holds the ids (uint16 in the llama2.c layout when the vocabulary
//! allows, else uint32) and `NAME.tok-HASH.json` the key they were made under (source path,
//! size, modification time, tokenizer fingerprint, id width, token count). A cache whose key
//! differs from the file's is ignored and rewritten. Both files are written under temporary
//! names and renamed, so an interrupted run never leaves a cache that looks complete.

use crate::error::{DataError, Result};
use crate::rng::fnv1a;
use crate::shards::ShardSet;
use crate::stream::{TokenStream, Tokens};
use crate::text::{tokenize_text, TextDataset, CHUNK_BYTES};
use crate::tokenizer::Tokenizer;
use serde::{Deserialize, Serialize};
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How a text file is opened: where its token cache may go and who hears of the progress.
#[derive(Default)]
pub struct TextOptions<'a> {
    /// A directory for the cache when the one holding the text cannot be written (the run
    /// directory, typically); without one such a file is tokenized in memory every time.
    pub fallback_cache_dir: Option<PathBuf>,
    /// Called with (bytes tokenized, file size) while a file is tokenized.
    pub progress: Option<&'a (dyn Fn(u64, u64) + Sync)>,
}

/// The key a cache was written under; a cache is used only if the file still has it.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct CacheKey {
    source: PathBuf,
    bytes: u64,
    modified_ns: u128,
    tokenizer: String,
    id_bytes: usize,
    tokens: u64,
}

/// Opens the text file `path` tokenized by `tokenizer`, from its cache when one matches, else
/// tokenizing it in bounded memory into a new cache (or into memory when no cache can be
/// written or the tokenizer has no fingerprint).
pub fn open_text(
    path: &Path,
    tokenizer: &dyn Tokenizer,
    options: &TextOptions,
) -> Result<Arc<dyn TokenStream>> {
    let meta = std::fs::metadata(path).map_err(|e| DataError::io(path, e))?;
    let Some(fingerprint) = tokenizer.fingerprint() else {
        return Ok(Arc::new(TextDataset::from_file(path, tokenizer)?));
    };
    let id_bytes = if tokenizer.vocab_size() <= 1 << 16 {
        2
    } else {
        4
    };
    let source = std::path::absolute(path).map_err(|e| DataError::io(path, e))?;
    let modified_ns = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    let mut key = CacheKey {
        source: source.clone(),
        bytes: meta.len(),
        modified_ns,
        tokenizer: format!("{fingerprint:016x}"),
        id_bytes,
        tokens: 0,
    };
    let name = format!(
        "{}.tok-{:016x}",
        source.file_name().unwrap_or_default().to_string_lossy(),
        fnv1a(format!("{}|{fingerprint:x}", source.display()).as_bytes())
    );
    let mut dirs: Vec<PathBuf> = source.parent().map(Path::to_path_buf).into_iter().collect();
    dirs.extend(
        options
            .fallback_cache_dir
            .iter()
            .map(|d| d.join(".token-cache")),
    );
    for dir in &dirs {
        if let Some(stream) = open_cached(&dir.join(&name), &key)? {
            return Ok(stream);
        }
    }
    let progress = |done: u64| {
        if let Some(report) = options.progress {
            report(done, meta.len());
        }
    };
    for dir in &dirs {
        // A directory without write bits is read-only by intent, even to root (who could
        // write it anyway): shared datasets stay untouched.
        if std::fs::metadata(dir).is_ok_and(|m| m.permissions().readonly()) {
            continue;
        }
        let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
        // The first directory this process may write holds the cache.
        let Ok(output) = std::fs::create_dir_all(dir).and_then(|()| std::fs::File::create(&tmp))
        else {
            continue;
        };
        let base = dir.join(&name);
        let written =
            write_cache(path, output, &tmp, tokenizer, id_bytes, &progress).and_then(|tokens| {
                key.tokens = tokens;
                publish(&tmp, &base, &key)
            });
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        return open_cached(&base, &key)?.ok_or_else(|| {
            DataError::Config(format!(
                "the token cache {} just written does not read back; delete it and retry",
                suffixed(&base, ".bin").display()
            ))
        });
    }
    Ok(Arc::new(TextDataset::from_file(path, tokenizer)?))
}

/// The cached tokens at `base` if its key equals `key` (ignoring the token count, which the
/// cache supplies and its size must confirm).
fn open_cached(base: &Path, key: &CacheKey) -> Result<Option<Arc<dyn TokenStream>>> {
    let Ok(text) = std::fs::read_to_string(suffixed(base, ".json")) else {
        return Ok(None);
    };
    let Ok(found) = serde_json::from_str::<CacheKey>(&text) else {
        return Ok(None);
    };
    let same = CacheKey {
        tokens: found.tokens,
        source: key.source.clone(),
        tokenizer: key.tokenizer.clone(),
        ..*key
    };
    let bin = suffixed(base, ".bin");
    let size = std::fs::metadata(&bin).map(|m| m.len()).ok();
    if found != same || size != found.tokens.checked_mul(key.id_bytes as u64) || found.tokens == 0 {
        return Ok(None);
    }
    if key.id_bytes == 2 {
        return Ok(Some(Arc::new(ShardSet::open(&bin)?)));
    }
    let bytes = std::fs::read(&bin).map_err(|e| DataError::io(&bin, e))?;
    let ids = bytes
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Ok(Some(Arc::new(Tokens::new(ids))))
}

/// Tokenizes `path` into the id file `tmp`; returns the number of tokens.
fn write_cache(
    path: &Path,
    output: std::fs::File,
    tmp: &Path,
    tokenizer: &dyn Tokenizer,
    id_bytes: usize,
    progress: &dyn Fn(u64),
) -> Result<u64> {
    let input = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut out = BufWriter::new(output);
    let mut tokens = 0u64;
    let mut sink = |ids: &[u32]| -> Result<()> {
        for &id in ids {
            let written = if id_bytes == 2 {
                out.write_all(&(id as u16).to_le_bytes())
            } else {
                out.write_all(&id.to_le_bytes())
            };
            written.map_err(|e| DataError::io(tmp, e))?;
        }
        tokens += ids.len() as u64;
        Ok(())
    };
    tokenize_text(
        path,
        BufReader::new(input),
        tokenizer,
        CHUNK_BYTES,
        &mut sink,
        &mut |done| progress(done),
    )?;
    let file = out
        .into_inner()
        .map_err(|e| DataError::io(tmp, e.into_error()))?;
    file.sync_all().map_err(|e| DataError::io(tmp, e))?;
    Ok(tokens)
}

/// Moves the finished ids to `base.bin` and writes the key beside them, key last: a cache
/// without its key is never used.
fn publish(tmp: &Path, base: &Path, key: &CacheKey) -> Result<()> {
    let bin = suffixed(base, ".bin");
    let json = suffixed(base, ".json");
    let _ = std::fs::remove_file(&json);
    std::fs::rename(tmp, &bin).map_err(|e| DataError::io(&bin, e))?;
    let text = serde_json::to_string_pretty(key).map_err(|e| DataError::Config(e.to_string()))?;
    let tmp_json = suffixed(tmp, ".json");
    std::fs::write(&tmp_json, text).map_err(|e| DataError::io(&tmp_json, e))?;
    std::fs::rename(&tmp_json, &json).map_err(|e| DataError::io(&json, e))
}

/// `base` with `suffix` appended to its file name (`Path::with_extension` would replace the
/// `.tok-HASH` part).
fn suffixed(base: &Path, suffix: &str) -> PathBuf {
    let mut name = base.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}
