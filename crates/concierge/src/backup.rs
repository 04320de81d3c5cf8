//! `concierge backup` and `concierge restore`: logical backups, portable between SQLite and
//! PostgreSQL, encrypted with the backup key, checksummed, verified by a restore dry run, and
//! rotated (daily, weekly, monthly).
//!
//! A backup file is `concierge-<UTC time to the millisecond>.ccbk`, encrypted by `crypto::backup` (an
//! authenticated chunk stream). Its plaintext is JSON lines:
//!
//! ```text
//! {"format":"concierge-backup","version":1,"created_at":..,"source":"postgres","tables":[..]}
//! {"table":"tenants"}
//! ["0193…", "Acme", 1763776800000]          one array per row, in the table's column order
//! …
//! {"end":{"rows":{"tenants":2,…},"sha256":"…"}}   SHA-256 of every line before this one
//! ```
//!
//! Next to it, `<file>.sha256` holds the SHA-256 of the encrypted file in `sha256sum` format,
//! so copies can be checked without the key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use crypto::backup::{BackupKey, FRAME_PREFIX_LEN, HEADER_LEN, Opener, Sealer};
use crypto::{CryptoError, KeyId};
use jiff::Timestamp;
use secrecy::ExposeSecret as _;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use store::snapshot::{Cell, ColumnKind, Layout, Row, TABLES, TableSpec};
use store::{RestoreCounts, SnapshotSink, SnapshotSource, StoreError, Stores};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, BufReader, BufWriter};

use crate::config::Settings;

const FORMAT: &str = "concierge-backup";
const VERSION: u64 = 1;
const EXTENSION: &str = "ccbk";
const PREFIX: &str = "concierge-";
/// Plaintext gathered before a chunk is sealed.
const CHUNK: usize = 256 * 1024;
pub const BACKUP_KEY_FILE: &str = "backup.key";

/// How often long runs report progress on stderr.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// Where backups go and how they are kept.
#[derive(Clone, Debug)]
pub struct BackupConfig {
    pub dir: PathBuf,
    pub key: BackupKey,
    pub retention: Retention,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    pub daily: usize,
    pub weekly: usize,
    pub monthly: usize,
}

impl BackupConfig {
    /// The configured backup settings, for writing backups: the embedded default generates
    /// a backup key into the data directory on first use; with PostgreSQL it must be set.
    pub fn from_settings(settings: &Settings) -> anyhow::Result<Self> {
        Ok(Self {
            dir: backup_dir(settings),
            key: backup_key(settings, true)?,
            retention: Retention {
                daily: settings.backup.keep_daily as usize,
                weekly: settings.backup.keep_weekly as usize,
                monthly: settings.backup.keep_monthly as usize,
            },
        })
    }
}

fn backup_dir(settings: &Settings) -> PathBuf {
    settings
        .backup
        .dir
        .clone()
        .unwrap_or_else(|| settings.data_dir.join("backups"))
}

/// The backup key. Only paths that write a backup may generate one (embedded default):
/// reading a backup with a key made up on the spot can only fail.
fn backup_key(settings: &Settings, may_generate: bool) -> anyhow::Result<BackupKey> {
    let encoded = match &settings.backup.key {
        Some(key) => key.expose_secret().to_owned(),
        None if settings.is_embedded() && may_generate => crate::app::data_dir_secret(
            &settings.data_dir,
            BACKUP_KEY_FILE,
            || BackupKey::generate().to_base64(),
            "backup key",
        )?,
        None if settings.is_embedded() => {
            let path = settings.data_dir.join(BACKUP_KEY_FILE);
            std::fs::read_to_string(&path).map_err(|_| {
                anyhow::anyhow!(
                    "no backup key: set CONCIERGE_BACKUP__KEY (or _FILE) to the key that wrote the backup, \
                     or put it in {}",
                    path.display()
                )
            })?
        }
        None => bail!(
            "CONCIERGE_BACKUP__KEY (or CONCIERGE_BACKUP__KEY_FILE) is required with PostgreSQL \
             (base64 of 32 random bytes: `openssl rand -base64 32`); keep it apart from the backups"
        ),
    };
    BackupKey::from_base64(&encoded).map_err(|e| anyhow::anyhow!("CONCIERGE_BACKUP__KEY: {e}"))
}

/// A backup just written.
#[derive(Debug, serde::Serialize)]
pub struct Created {
    pub path: PathBuf,
    pub bytes: u64,
    pub sha256: String,
    pub rows: BTreeMap<&'static str, u64>,
    pub seconds: f64,
}

/// What a verification or restore read.
#[derive(Debug, serde::Serialize)]
pub struct Checked {
    pub path: PathBuf,
    pub created_at: String,
    pub source: String,
    pub rows: BTreeMap<&'static str, u64>,
    /// Master keys that wrap the backup's tenant data keys (needed to read them).
    pub master_keys: Vec<String>,
    /// Jobs that were due or running when the backup was taken, restored dead-lettered
    /// rather than run again (they may have run since).
    pub parked_jobs: u64,
}

// --- writing ------------------------------------------------------------------------------

struct FileSink {
    out: BufWriter<tokio::fs::File>,
    sealer: Sealer,
    pending: Vec<u8>,
    plain_hash: Sha256,
    file_hash: Sha256,
    bytes: u64,
    rows: BTreeMap<&'static str, u64>,
    current: Option<&'static TableSpec>,
    progress: Progress,
}

impl FileSink {
    async fn line(&mut self, value: &Value) -> Result<(), String> {
        let mut line = serde_json::to_vec(value).map_err(|e| e.to_string())?;
        line.push(b'\n');
        self.plain_hash.update(&line);
        self.pending.extend_from_slice(&line);
        // Seal whole chunks only: one huge row spans several, never one over the limit.
        while self.pending.len() >= CHUNK {
            let rest = self.pending.split_off(CHUNK);
            let chunk = std::mem::replace(&mut self.pending, rest);
            self.write_chunk(&chunk, false).await?;
        }
        Ok(())
    }

    async fn write_chunk(&mut self, plain: &[u8], last: bool) -> Result<(), String> {
        let frame = self.sealer.seal(plain, last).map_err(|e| e.to_string())?;
        self.write_raw(&frame).await
    }

    async fn write_raw(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.file_hash.update(bytes);
        self.bytes += bytes.len() as u64;
        self.out
            .write_all(bytes)
            .await
            .map_err(|e| format!("writing the backup: {e}"))
    }
}

#[async_trait]
impl SnapshotSink for FileSink {
    async fn table(&mut self, table: &'static TableSpec) -> Result<(), String> {
        self.current = Some(table);
        self.rows.insert(table.name, 0);
        self.line(&json!({ "table": table.name })).await
    }

    async fn row(&mut self, row: Row) -> Result<(), String> {
        let table = self.current.ok_or("a row before any table")?;
        let value = Value::Array(row.into_iter().map(cell_to_json).collect());
        self.line(&value).await?;
        let n = self.rows.entry(table.name).or_default();
        *n += 1;
        let n = *n;
        self.progress
            .tick(|| format!("backup: {} {n} rows", table.name));
        Ok(())
    }
}

fn cell_to_json(cell: Cell) -> Value {
    match cell {
        Cell::Null => Value::Null,
        Cell::Uuid(u) => Value::String(u.to_string()),
        Cell::Int(v) => Value::from(v),
        Cell::Bool(v) => Value::Bool(v),
        Cell::Text(v) | Cell::Json(v) => Value::String(v),
        Cell::Bytes(v) => Value::String(STANDARD.encode(v)),
    }
}

/// Reports progress on stderr at most every [`PROGRESS_EVERY`], when enabled.
struct Progress {
    enabled: bool,
    last: Instant,
}

impl Progress {
    fn new(enabled: bool) -> Self {
        Self {
            enabled,
            last: Instant::now(),
        }
    }

    fn tick(&mut self, message: impl FnOnce() -> String) {
        if self.enabled && self.last.elapsed() >= PROGRESS_EVERY {
            self.last = Instant::now();
            eprintln!("{}", message());
        }
    }
}

fn file_name(at: Timestamp) -> String {
    format!("{PREFIX}{}.{EXTENSION}", at.strftime("%Y%m%dT%H%M%S%.3fZ"))
}

/// Writes a backup of the whole database into `config.dir`.
pub async fn create(
    stores: &Stores,
    config: &BackupConfig,
    show_progress: bool,
) -> anyhow::Result<Created> {
    let started = Instant::now();
    tokio::fs::create_dir_all(&config.dir)
        .await
        .with_context(|| format!("creating {}", config.dir.display()))?;
    let now = Timestamp::now();
    let final_path = config.dir.join(file_name(now));
    if tokio::fs::try_exists(&final_path).await.unwrap_or(false) {
        bail!("{} already exists", final_path.display());
    }
    let partial = config.dir.join(format!(".{}.partial", file_name(now)));
    let result = write_backup(stores, config, now, &partial, show_progress).await;
    let sink = match result {
        Ok(sink) => sink,
        Err(e) => {
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(e);
        }
    };
    tokio::fs::rename(&partial, &final_path)
        .await
        .with_context(|| format!("renaming to {}", final_path.display()))?;
    let sha256 = hex::encode(sink.file_hash.finalize());
    let sidecar = format!(
        "{sha256}  {}\n",
        final_path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    );
    write_atomically(&sidecar_path(&final_path), sidecar.as_bytes())
        .await
        .context("writing the checksum file")?;
    sync_dir(&config.dir).await;
    metrics::counter!("concierge_backups_total", "outcome" => "created").increment(1);
    Ok(Created {
        path: final_path,
        bytes: sink.bytes,
        sha256,
        rows: sink.rows,
        seconds: started.elapsed().as_secs_f64(),
    })
}

async fn write_backup(
    stores: &Stores,
    config: &BackupConfig,
    now: Timestamp,
    path: &Path,
    show_progress: bool,
) -> anyhow::Result<FileSink> {
    let file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .await
        .with_context(|| format!("creating {}", path.display()))?;
    let sealer = Sealer::new(&config.key);
    let mut sink = FileSink {
        out: BufWriter::new(file),
        sealer,
        pending: Vec::with_capacity(CHUNK + 4096),
        plain_hash: Sha256::new(),
        file_hash: Sha256::new(),
        bytes: 0,
        rows: BTreeMap::new(),
        current: None,
        progress: Progress::new(show_progress),
    };
    let header = sink.sealer.header().to_vec();
    sink.write_raw(&header).await.map_err(anyhow::Error::msg)?;
    let tables: Vec<Value> = TABLES
        .iter()
        .map(|t| json!({ "name": t.name, "columns": t.columns.iter().map(|c| c.name).collect::<Vec<_>>() }))
        .collect();
    sink.line(&json!({
        "format": FORMAT,
        "version": VERSION,
        "created_at": now.to_string(),
        "source": stores.data.backend().as_str(),
        "tables": tables,
    }))
    .await
    .map_err(anyhow::Error::msg)?;
    stores
        .data
        .export_snapshot(&mut sink)
        .await
        .context("reading the database")?;
    // The trailer is not part of the checksum it carries.
    let digest = hex::encode(sink.plain_hash.clone().finalize());
    let mut trailer =
        serde_json::to_vec(&json!({ "end": { "rows": sink.rows, "sha256": digest } }))?;
    trailer.push(b'\n');
    let mut last = std::mem::take(&mut sink.pending);
    last.extend_from_slice(&trailer);
    while last.len() > CHUNK {
        let rest = last.split_off(CHUNK);
        sink.write_chunk(&last, false)
            .await
            .map_err(anyhow::Error::msg)?;
        last = rest;
    }
    sink.write_chunk(&last, true)
        .await
        .map_err(anyhow::Error::msg)?;
    sink.out.flush().await?;
    sink.out.get_ref().sync_all().await?;
    Ok(sink)
}

/// Writes `bytes` to a temporary name, syncs, then renames over `path`.
async fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut file = tokio::fs::File::create(&tmp).await?;
    file.write_all(bytes).await?;
    file.sync_all().await?;
    drop(file);
    tokio::fs::rename(&tmp, path).await
}

fn sidecar_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".sha256");
    PathBuf::from(name)
}

async fn sync_dir(dir: &Path) {
    if let Ok(d) = tokio::fs::File::open(dir).await {
        let _ = d.sync_all().await;
    }
}

/// What a restore demands of the master key that wraps the backup's tenant data keys.
#[derive(Clone, Copy, Debug)]
pub enum MasterCheck {
    /// Data keys must be wrapped by this key (a real restore).
    Expect(KeyId),
    /// No master key is configured: a backup with data keys is refused.
    Missing,
    /// Any key (verification into a scratch database).
    Any,
}

// --- reading ------------------------------------------------------------------------------

/// Streams a backup file back as a snapshot, checking everything on the way: the header and
/// key, each chunk's authentication, the schema, each row's shape, the row counts and the
/// checksum in the trailer, and that nothing follows the last chunk.
struct FileSource {
    input: BufReader<tokio::fs::File>,
    opener: Opener,
    plain: Vec<u8>,
    at: usize,
    hash: Sha256,
    pending: Option<Value>,
    trailer: Option<Value>,
    current: Option<Layout>,
    /// The tables the manifest lists, in order, each with how its rows map onto this
    /// release's columns (a backup from an older release may lack columns added since).
    tables: Vec<Layout>,
    next_table: usize,
    rows: BTreeMap<&'static str, u64>,
    created_at: String,
    source: String,
    master: MasterCheck,
    master_keys: Vec<String>,
    progress: Progress,
}

impl FileSource {
    async fn open(
        path: &Path,
        key: &BackupKey,
        master: MasterCheck,
        show_progress: bool,
    ) -> anyhow::Result<Self> {
        let file = tokio::fs::File::open(path)
            .await
            .with_context(|| format!("opening {}", path.display()))?;
        let mut input = BufReader::new(file);
        let mut header = [0u8; HEADER_LEN];
        input
            .read_exact(&mut header)
            .await
            .map_err(|_| anyhow::anyhow!("{}: {}", path.display(), CryptoError::NotABackup))?;
        let opener = Opener::new(key, &header).map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut source = Self {
            input,
            opener,
            plain: Vec::new(),
            at: 0,
            hash: Sha256::new(),
            pending: None,
            trailer: None,
            current: None,
            tables: Vec::new(),
            next_table: 0,
            rows: BTreeMap::new(),
            created_at: String::new(),
            source: String::new(),
            master,
            master_keys: Vec::new(),
            progress: Progress::new(show_progress),
        };
        let first = source
            .line()
            .await
            .map_err(anyhow::Error::msg)?
            .ok_or_else(|| anyhow::anyhow!("the backup is empty"))?;
        source.read_manifest(&first).map_err(anyhow::Error::msg)?;
        Ok(source)
    }

    fn read_manifest(&mut self, manifest: &Value) -> Result<(), String> {
        if manifest["format"] != FORMAT {
            return Err("not a Concierge backup (no manifest)".into());
        }
        if manifest["version"] != VERSION {
            return Err(format!(
                "backup format version {} is not supported by this release (it reads {VERSION})",
                manifest["version"]
            ));
        }
        // The backup's tables must be this release's, in its order; a backup from an older
        // release may lack tables added since (they stay empty) and columns added since
        // (filled as the table's list of record says).
        let listed = manifest["tables"]
            .as_array()
            .ok_or("damaged backup: the manifest lists no tables")?;
        let mut known = TABLES.iter();
        for entry in listed {
            let name = entry["name"].as_str().unwrap_or_default();
            let Some(table) = known.find(|t| t.name == name) else {
                return Err(format!(
                    "the backup has a table this release does not know or expects elsewhere ({name:?}); restore it with the release that wrote it"
                ));
            };
            let columns: Vec<&str> = entry["columns"]
                .as_array()
                .ok_or_else(|| format!("damaged backup: the manifest lists no columns for {name}"))?
                .iter()
                .map(|c| c.as_str().unwrap_or_default())
                .collect();
            self.tables.push(table.layout(&columns)?);
        }
        self.created_at = manifest["created_at"].as_str().unwrap_or("").to_owned();
        self.source = manifest["source"].as_str().unwrap_or("").to_owned();
        Ok(())
    }

    /// The next plaintext line, decrypting chunks as needed; `None` at the end of the stream.
    async fn line(&mut self) -> Result<Option<Value>, String> {
        loop {
            if let Some(nl) = self.plain[self.at..].iter().position(|&b| b == b'\n') {
                let end = self.at + nl + 1;
                let value: Value = serde_json::from_slice(&self.plain[self.at..end])
                    .map_err(|e| format!("damaged backup: a line is not JSON ({e})"))?;
                // Every line but the trailer is covered by the trailer's checksum.
                if value.get("end").is_none() {
                    self.hash.update(&self.plain[self.at..end]);
                }
                self.at = end;
                return Ok(Some(value));
            }
            if self.opener.finished() {
                if self.at < self.plain.len() {
                    return Err("damaged backup: it ends inside a line".into());
                }
                return Ok(None);
            }
            self.plain.drain(..self.at);
            self.at = 0;
            let chunk = self.next_chunk().await?;
            self.plain.extend_from_slice(&chunk);
        }
    }

    async fn next_chunk(&mut self) -> Result<Vec<u8>, String> {
        let mut prefix = [0u8; FRAME_PREFIX_LEN];
        self.input
            .read_exact(&mut prefix)
            .await
            .map_err(|_| "damaged backup: the file is cut short".to_owned())?;
        let frame = Opener::frame_len(prefix).map_err(|e| format!("damaged backup: {e}"))?;
        let mut body = vec![0u8; frame.len];
        self.input
            .read_exact(&mut body)
            .await
            .map_err(|_| "damaged backup: the file is cut short".to_owned())?;
        self.opener
            .open(frame, &body)
            .map_err(|e| format!("damaged backup: {e}"))
    }

    fn parse_row(&mut self, layout: &Layout, items: &[Value]) -> Result<Row, String> {
        let table = layout.table();
        if items.len() != layout.columns().len() {
            return Err(format!(
                "damaged backup: a {} row has {} values, expected {}",
                table.name,
                items.len(),
                layout.columns().len()
            ));
        }
        let bad = |column: &str| format!("damaged backup: bad value in {}.{column}", table.name);
        let row = layout
            .columns()
            .zip(items)
            .map(|(column, item)| {
                if item.is_null() {
                    return Ok(Cell::Null);
                }
                Ok(match column.kind {
                    ColumnKind::Uuid => Cell::Uuid(
                        item.as_str()
                            .and_then(|s| uuid::Uuid::parse_str(s).ok())
                            .ok_or_else(|| bad(column.name))?,
                    ),
                    ColumnKind::Int => Cell::Int(item.as_i64().ok_or_else(|| bad(column.name))?),
                    ColumnKind::Bool => Cell::Bool(item.as_bool().ok_or_else(|| bad(column.name))?),
                    ColumnKind::Text => {
                        Cell::Text(item.as_str().ok_or_else(|| bad(column.name))?.to_owned())
                    }
                    ColumnKind::Json => {
                        Cell::Json(item.as_str().ok_or_else(|| bad(column.name))?.to_owned())
                    }
                    ColumnKind::Bytes => Cell::Bytes(
                        item.as_str()
                            .and_then(|s| STANDARD.decode(s).ok())
                            .ok_or_else(|| bad(column.name))?,
                    ),
                })
            })
            .collect::<Result<Row, String>>()?;
        let row = layout
            .row(row)
            .map_err(|e| format!("damaged backup: {e}"))?;
        if table.name == "tenant_keys" {
            self.check_master_key(table, &row)?;
        }
        Ok(row)
    }

    fn check_master_key(&mut self, table: &TableSpec, row: &Row) -> Result<(), String> {
        let Some(Cell::Int(kek)) = table.column("kek_id").and_then(|i| row.get(i)) else {
            return Ok(());
        };
        let found = KeyId(u32::try_from(*kek).unwrap_or(0));
        let shown = found.to_string();
        if !self.master_keys.contains(&shown) {
            self.master_keys.push(shown);
        }
        match self.master {
            MasterCheck::Expect(expected) if expected != found => Err(format!(
                "the backup's data keys are wrapped by master key {found}, but the configured master key is {expected}: \
                 configure the master key of the installation that took the backup"
            )),
            MasterCheck::Missing => Err(format!(
                "the backup holds encrypted data (master key {found}) and no master key is configured: \
                 set CONCIERGE_MASTER_KEY to the master key of the installation that took the backup \
                 (for an embedded install, the contents of its data directory's master.key)"
            )),
            _ => Ok(()),
        }
    }
}

#[async_trait]
impl SnapshotSource for FileSource {
    async fn next_table(&mut self) -> Result<Option<&'static TableSpec>, String> {
        // Skip what is left of the current table (only when a caller stops early).
        while self.pending.is_none() {
            match self.line().await? {
                Some(v) if v.is_array() => {}
                Some(v) => self.pending = Some(v),
                None => return Err("damaged backup: it ends without its trailer".into()),
            }
        }
        let marker = self.pending.take().unwrap_or(Value::Null);
        if marker.get("end").is_some() {
            self.trailer = Some(marker);
            self.current = None;
            return Ok(None);
        }
        let name = marker["table"].as_str().unwrap_or_default();
        let layout = self
            .tables
            .get(self.next_table)
            .cloned()
            .ok_or_else(|| format!("damaged backup: unexpected table {name}"))?;
        let expected = layout.table();
        if expected.name != name {
            return Err(format!(
                "damaged backup: expected table {}, found {name:?}",
                expected.name
            ));
        }
        self.next_table += 1;
        self.current = Some(layout);
        self.rows.insert(expected.name, 0);
        Ok(Some(expected))
    }

    async fn next_rows(&mut self, max: usize) -> Result<Vec<Row>, String> {
        let Some(layout) = self.current.clone() else {
            return Ok(Vec::new());
        };
        let table = layout.table();
        let mut rows = Vec::new();
        while rows.len() < max && self.pending.is_none() {
            match self.line().await? {
                Some(Value::Array(items)) => rows.push(self.parse_row(&layout, &items)?),
                Some(other) => self.pending = Some(other),
                None => return Err("damaged backup: it ends without its trailer".into()),
            }
        }
        let n = self.rows.entry(table.name).or_default();
        *n += rows.len() as u64;
        let n = *n;
        self.progress
            .tick(|| format!("restore: {} {n} rows", table.name));
        Ok(rows)
    }

    async fn finish(&mut self) -> Result<(), String> {
        let trailer = self
            .trailer
            .take()
            .ok_or("damaged backup: it ends without its trailer")?;
        let end = &trailer["end"];
        let digest = hex::encode(self.hash.clone().finalize());
        if end["sha256"].as_str() != Some(digest.as_str()) {
            return Err("damaged backup: the checksum does not match".into());
        }
        for (table, n) in &self.rows {
            if end["rows"][table].as_u64() != Some(*n) {
                return Err(format!(
                    "damaged backup: {table} has {n} rows, the trailer says {}",
                    end["rows"][table]
                ));
            }
        }
        if self.line().await?.is_some() || !self.opener.finished() {
            return Err("damaged backup: data after the trailer".into());
        }
        let mut extra = [0u8; 1];
        if self.input.read(&mut extra).await.unwrap_or(0) != 0 {
            return Err("damaged backup: bytes after the last chunk".into());
        }
        Ok(())
    }
}

/// Compares the file with its `.sha256` companion, when there is one.
async fn check_sidecar(path: &Path) -> anyhow::Result<()> {
    let expected = match tokio::fs::read_to_string(sidecar_path(path)).await {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => bail!(
            "{}.sha256: cannot read the checksum file: {e}",
            path.display()
        ),
    };
    let Some(expected) = expected.split_whitespace().next() else {
        bail!(
            "{}.sha256 is empty: compare the file by hand or delete the checksum file",
            path.display()
        );
    };
    let mut file = tokio::fs::File::open(path).await?;
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
    }
    if hex::encode(hash.finalize()) != expected {
        bail!(
            "{}: the file does not match its .sha256 checksum (damaged or incomplete copy)",
            path.display()
        );
    }
    Ok(())
}

/// Checks a backup end to end: its checksum file, then a full restore into a scratch SQLite
/// database that is rolled back (every row decoded and checked against the schema's
/// constraints). Needs only the backup key.
pub async fn verify(path: &Path, key: &BackupKey, show_progress: bool) -> anyhow::Result<Checked> {
    check_sidecar(path).await?;
    // The scratch copy holds readable data (tenant names, knowledge): next to the backup,
    // private to this user, and removed even when a previous run was killed.
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."));
    remove_stale_scratch(parent).await;
    let scratch = parent.join(format!("{SCRATCH_PREFIX}{}", uuid::Uuid::new_v4().simple()));
    create_private_dir(&scratch)
        .await
        .with_context(|| format!("creating the scratch directory {}", scratch.display()))?;
    let result = async {
        let store = store_sqlite::SqliteStore::open(&scratch.join("verify.db"))
            .await
            .context("opening the scratch database")?;
        store
            .migrate()
            .await
            .context("migrating the scratch database")?;
        let stores = Stores::new(store.clone());
        let checked =
            restore_from(&stores, path, key, MasterCheck::Any, false, show_progress).await;
        store.close().await;
        checked
    }
    .await;
    let _ = tokio::fs::remove_dir_all(&scratch).await;
    result
}

const SCRATCH_PREFIX: &str = ".concierge-verify-";

async fn remove_stale_scratch(dir: &Path) {
    let Ok(mut entries) = tokio::fs::read_dir(dir).await else {
        return;
    };
    while let Ok(Some(entry)) = entries.next_entry().await {
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with(SCRATCH_PREFIX)
        {
            let _ = tokio::fs::remove_dir_all(entry.path()).await;
        }
    }
}

#[cfg(unix)]
async fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || std::fs::DirBuilder::new().mode(0o700).create(dir))
        .await
        .map_err(std::io::Error::other)?
}

#[cfg(not(unix))]
async fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    tokio::fs::create_dir(dir).await
}

/// Restores `path` into the configured (empty) database. With `commit = false`, a dry run
/// against that database.
pub async fn restore_from(
    stores: &Stores,
    path: &Path,
    key: &BackupKey,
    master: MasterCheck,
    commit: bool,
    show_progress: bool,
) -> anyhow::Result<Checked> {
    check_sidecar(path).await?;
    let mut source = FileSource::open(path, key, master, show_progress).await?;
    let counts: RestoreCounts = match stores.data.restore_snapshot(&mut source, commit).await {
        Ok(c) => c,
        Err(StoreError::Snapshot(m)) => bail!("{}: {m}", path.display()),
        Err(StoreError::Conflict(m)) => bail!("{m}"),
        Err(e) => return Err(anyhow::Error::new(e).context("restoring")),
    };
    Ok(Checked {
        path: path.to_owned(),
        created_at: source.created_at,
        source: source.source,
        parked_jobs: counts.parked_jobs,
        rows: counts.tables.into_iter().collect(),
        master_keys: source.master_keys,
    })
}

// --- listing and rotation -------------------------------------------------------------------

/// A backup file in the backup directory.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BackupFile {
    pub path: PathBuf,
    pub created_at: Timestamp,
    pub bytes: u64,
}

/// The backups in `dir`, oldest first. Other files are ignored.
pub fn list(dir: &Path) -> anyhow::Result<Vec<BackupFile>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(at) = parse_name(&name) else {
            continue;
        };
        out.push(BackupFile {
            path: entry.path(),
            created_at: at,
            bytes: entry.metadata().map(|m| m.len()).unwrap_or(0),
        });
    }
    out.sort_by_key(|b| b.created_at);
    Ok(out)
}

fn parse_name(name: &str) -> Option<Timestamp> {
    let stamp = name
        .strip_prefix(PREFIX)?
        .strip_suffix(&format!(".{EXTENSION}"))?;
    jiff::civil::DateTime::strptime("%Y%m%dT%H%M%S%.fZ", stamp)
        .or_else(|_| jiff::civil::DateTime::strptime("%Y%m%dT%H%M%SZ", stamp))
        .ok()?
        .to_zoned(jiff::tz::TimeZone::UTC)
        .ok()
        .map(|z| z.timestamp())
}

/// The period (year and day, ISO week or month) a time falls in.
type PeriodOf = fn(&jiff::Zoned) -> (i32, i32);

/// Which backups a grandfather-father-son policy keeps: the newest of each of the last
/// `daily` days, `weekly` ISO weeks and `monthly` months that have a backup.
pub fn keep(created: &[Timestamp], retention: Retention) -> Vec<bool> {
    let mut keep = vec![false; created.len()];
    let mut order: Vec<usize> = (0..created.len()).collect();
    order.sort_by(|a, b| created[*b].cmp(&created[*a]));
    let periods: [(usize, PeriodOf); 3] = [
        (retention.daily, |z| {
            (i32::from(z.year()), i32::from(z.day_of_year()))
        }),
        (retention.weekly, |z| {
            let w = z.date().iso_week_date();
            (i32::from(w.year()), i32::from(w.week()))
        }),
        (retention.monthly, |z| {
            (i32::from(z.year()), i32::from(z.month()))
        }),
    ];
    for (count, period) in periods {
        let mut seen = Vec::new();
        for &i in &order {
            let p = period(&created[i].to_zoned(jiff::tz::TimeZone::UTC));
            if seen.contains(&p) {
                continue;
            }
            if seen.len() == count {
                break;
            }
            seen.push(p);
            keep[i] = true;
        }
    }
    keep
}

/// Renames a backup that failed verification out of the backup pattern, so rotation never
/// counts it as a backup; returns its new name.
async fn set_aside(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".unverified");
    let aside = PathBuf::from(name);
    match tokio::fs::rename(path, &aside).await {
        Ok(()) => {
            let _ = tokio::fs::remove_file(sidecar_path(path)).await;
            aside
        }
        Err(_) => path.to_owned(),
    }
}

/// Deletes the backups the policy does not keep, never `just_written`; returns them.
pub fn rotate(
    dir: &Path,
    retention: Retention,
    just_written: &Path,
) -> anyhow::Result<Vec<PathBuf>> {
    let files = list(dir)?;
    let created: Vec<Timestamp> = files.iter().map(|f| f.created_at).collect();
    let mut removed = Vec::new();
    for (file, kept) in files.iter().zip(keep(&created, retention)) {
        // A file named in the future (a clock step, a copy from another host) must not push
        // the backup just taken out.
        if kept || file.path.file_name() == just_written.file_name() {
            continue;
        }
        std::fs::remove_file(&file.path)
            .with_context(|| format!("removing {}", file.path.display()))?;
        let _ = std::fs::remove_file(sidecar_path(&file.path));
        removed.push(file.path.clone());
    }
    Ok(removed)
}

// --- the commands ---------------------------------------------------------------------------

#[derive(Debug, clap::Subcommand)]
pub enum BackupCommand {
    /// Back up the whole database now, verify the file by a restore dry run, then rotate.
    Create {
        /// Directory for this backup (default: backup.dir).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Skip the verification (not recommended).
        #[arg(long)]
        no_verify: bool,
        /// Keep every backup in the directory.
        #[arg(long)]
        no_rotate: bool,
    },
    /// The backups in the backup directory, oldest first.
    List {
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Check a backup: its checksum file, its encryption, and a full restore into a scratch
    /// database that is thrown away.
    Verify { file: PathBuf },
}

pub async fn run(
    settings: &Settings,
    command: BackupCommand,
    json: bool,
) -> anyhow::Result<std::process::ExitCode> {
    match command {
        BackupCommand::Create {
            dir,
            no_verify,
            no_rotate,
        } => {
            let mut config = BackupConfig::from_settings(settings)?;
            if let Some(dir) = dir {
                config.dir = dir;
            }
            let stores = crate::app::connect_store(settings, false).await?;
            let status = stores.data.migration_status().await?;
            if !status.is_current() {
                bail!(
                    "the database is not migrated ({} of {} migrations): run `concierge migrate` first",
                    status.applied,
                    status.known
                );
            }
            let created = create(&stores, &config, !json).await?;
            let verified = if no_verify {
                None
            } else {
                match verify(&created.path, &config.key, !json).await {
                    Ok(checked) => Some(checked),
                    Err(e) => {
                        let kept = set_aside(&created.path).await;
                        bail!(
                            "the backup was written but failed verification ({e:#}); kept for inspection as {}",
                            kept.display()
                        );
                    }
                }
            };
            let removed = if no_rotate {
                Vec::new()
            } else {
                rotate(&config.dir, config.retention, &created.path)?
            };
            if json {
                out!(
                    "{}",
                    json!({
                        "path": created.path,
                        "bytes": created.bytes,
                        "sha256": created.sha256,
                        "rows": created.rows,
                        "seconds": created.seconds,
                        "verified": verified.is_some(),
                        "key_id": config.key.id().to_string(),
                        "removed": removed,
                    })
                );
            } else {
                let total: u64 = created.rows.values().sum();
                out!(
                    "backup written: {} ({} bytes, {total} rows, {:.2} s, backup key {})",
                    created.path.display(),
                    created.bytes,
                    created.seconds,
                    config.key.id()
                );
                out!("sha256: {}", created.sha256);
                if verified.is_some() {
                    out!("verified: restored into a scratch database and checked");
                }
                for path in removed {
                    out!("rotated out: {}", path.display());
                }
            }
        }
        BackupCommand::List { dir } => {
            let dir = dir.unwrap_or_else(|| backup_dir(settings));
            let files = list(&dir)?;
            if json {
                out!("{}", serde_json::to_string(&files)?);
            } else if files.is_empty() {
                out!("no backups in {}", dir.display());
            } else {
                for f in files {
                    out!(
                        "{}  {:>12} bytes  {}",
                        f.created_at,
                        f.bytes,
                        f.path.display()
                    );
                }
            }
        }
        BackupCommand::Verify { file } => {
            let key = backup_key(settings, false)?;
            let checked = verify(&file, &key, !json).await?;
            print_checked(&checked, "verified", json)?;
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

fn print_checked(checked: &Checked, what: &str, json: bool) -> anyhow::Result<()> {
    if json {
        out!("{}", serde_json::to_string(checked)?);
    } else {
        let total: u64 = checked.rows.values().sum();
        out!(
            "{what}: {} (taken {} from {}, {total} rows)",
            checked.path.display(),
            checked.created_at,
            checked.source
        );
        for (table, n) in &checked.rows {
            out!("  {table:<22} {n}");
        }
        if checked.parked_jobs > 0 {
            out!(
                "{} jobs that were due or running at backup time were restored dead-lettered, not run again \
                 (they may have run since); see `concierge_queue_jobs{{state=\"dead\"}}`",
                checked.parked_jobs
            );
        }
        if !checked.master_keys.is_empty() {
            out!(
                "data keys wrapped by master key {}",
                checked.master_keys.join(", ")
            );
        }
    }
    Ok(())
}

/// `concierge restore FILE [--dry-run]`.
pub async fn restore(
    settings: &Settings,
    file: &Path,
    dry_run: bool,
    json: bool,
) -> anyhow::Result<std::process::ExitCode> {
    let key = backup_key(settings, false)?;
    // The restored rows are readable only with the master key that wrapped their data keys;
    // never generate a new one here.
    let master = match &settings.master_key {
        Some(key) => Some(key.expose_secret().to_owned()),
        None if settings.is_embedded() => {
            std::fs::read_to_string(settings.data_dir.join(crate::app::MASTER_KEY_FILE)).ok()
        }
        None => None,
    };
    let master = match master {
        Some(m) => MasterCheck::Expect(
            crypto::MasterKey::from_base64(&m)
                .map_err(|e| anyhow::anyhow!("CONCIERGE_MASTER_KEY: {e}"))?
                .id(),
        ),
        None => MasterCheck::Missing,
    };
    let stores = crate::app::open_store(settings).await?;
    let checked = restore_from(&stores, file, &key, master, !dry_run, !json).await?;
    print_checked(
        &checked,
        if dry_run {
            "dry run, nothing kept"
        } else {
            "restored"
        },
        json,
    )?;
    Ok(std::process::ExitCode::SUCCESS)
}

// --- doctor -----------------------------------------------------------------------------------

/// What `concierge doctor` says of backups: `(ok, required, detail)`. Reads only: it never
/// generates a key nor creates the directory.
pub fn doctor(settings: &Settings) -> (bool, bool, String) {
    let dir = backup_dir(settings);
    let schedule = settings.backup.daily_time();
    let key_file = settings.data_dir.join(BACKUP_KEY_FILE);
    let key = match &settings.backup.key {
        Some(k) => BackupKey::from_base64(k.expose_secret())
            .map(|k| k.id().to_string())
            .map_err(|e| e.to_string()),
        None if settings.is_embedded() && key_file.exists() => std::fs::read_to_string(&key_file)
            .map_err(|e| e.to_string())
            .and_then(|k| BackupKey::from_base64(&k).map_err(|e| e.to_string()))
            .map(|k| k.id().to_string()),
        None if settings.is_embedded() => Ok("generated by the first backup".to_owned()),
        None => Err("CONCIERGE_BACKUP__KEY is not set".to_owned()),
    };
    let key = match key {
        Ok(id) => id,
        // Without a key the scheduled backup cannot run, and the worker refuses to start.
        Err(e) => {
            return (
                false,
                schedule.is_some(),
                format!("no usable backup key: {e}"),
            );
        }
    };
    let files = match list(&dir) {
        Ok(f) => f,
        Err(e) => return (false, false, format!("{e:#}")),
    };
    let when = schedule.map_or_else(
        || "no schedule (backup.daily_at)".to_owned(),
        |t| format!("daily at {} UTC", t.strftime("%H:%M")),
    );
    let Some(newest) = files.last() else {
        return (
            schedule.is_none(),
            false,
            format!("none yet in {}; {when}; key {key}", dir.display()),
        );
    };
    let age = Timestamp::now().duration_since(newest.created_at);
    let hours = age.as_secs() / 3600;
    // A daily schedule that has not produced a backup for over a day is a problem.
    let fresh = schedule.is_none() || age < jiff::SignedDuration::from_hours(26);
    (
        fresh,
        false,
        format!(
            "{} in {}, newest {} ({hours} h ago); {when}; key {key}",
            files.len(),
            dir.display(),
            newest.created_at
        ),
    )
}

// --- the scheduled job ----------------------------------------------------------------------

/// What a worker runs for the daily backup job: create, verify, rotate.
pub struct ScheduledBackup {
    pub stores: Stores,
    pub config: BackupConfig,
}

#[async_trait]
impl jobs::Maintenance for ScheduledBackup {
    async fn backup(&self) -> Result<(), String> {
        let created = create(&self.stores, &self.config, false)
            .await
            .map_err(|e| format!("backup failed: {e:#}"))?;
        if let Err(e) = verify(&created.path, &self.config.key, false).await {
            metrics::counter!("concierge_backups_total", "outcome" => "verify_failed").increment(1);
            let kept = set_aside(&created.path).await;
            return Err(format!(
                "backup failed verification ({e:#}); kept for inspection as {}",
                kept.display()
            ));
        }
        metrics::gauge!("concierge_backup_last_success_timestamp_seconds")
            .set(Timestamp::now().as_second() as f64);
        metrics::gauge!("concierge_backup_last_size_bytes").set(created.bytes as f64);
        let removed = rotate(&self.config.dir, self.config.retention, &created.path)
            .map_err(|e| format!("rotating backups: {e:#}"))?;
        tracing::info!(
            path = %created.path.display(),
            bytes = created.bytes,
            seconds = created.seconds,
            removed = removed.len(),
            "backup taken and verified"
        );
        Ok(())
    }
}

/// Keeps the backup gauges true to the directory until `shutdown`: the newest backup's time
/// and size, whoever wrote it (the schedule, `backup create`, a restore of files). Before the
/// first backup the time is this worker's start, so a new installation gets a day of grace
/// rather than an alert. The outcome counters start at 0, so the first failure shows in
/// `increase()`.
pub async fn watch_directory(dir: PathBuf, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let started = Timestamp::now();
    for outcome in ["created", "verify_failed"] {
        metrics::counter!("concierge_backups_total", "outcome" => outcome).increment(0);
    }
    for outcome in ["retry", "dead"] {
        metrics::counter!("concierge_jobs_total", "kind" => "backup", "outcome" => outcome)
            .increment(0);
    }
    while !*shutdown.borrow() {
        let dir2 = dir.clone();
        let newest = tokio::task::spawn_blocking(move || list(&dir2))
            .await
            .ok()
            .and_then(Result::ok)
            .and_then(|files| files.into_iter().last());
        #[allow(clippy::cast_precision_loss)]
        match newest {
            Some(file) => {
                metrics::gauge!("concierge_backup_last_success_timestamp_seconds")
                    .set(file.created_at.as_second() as f64);
                metrics::gauge!("concierge_backup_last_size_bytes").set(file.bytes as f64);
            }
            None => metrics::gauge!("concierge_backup_last_success_timestamp_seconds")
                .set(started.as_second() as f64),
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(60)) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// Shared handle for the worker.
pub fn maintenance(stores: Stores, config: BackupConfig) -> Arc<dyn jobs::Maintenance> {
    Arc::new(ScheduledBackup { stores, config })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn names_round_trip() {
        let t = at("2026-11-22T03:15:09.250Z");
        assert_eq!(file_name(t), "concierge-20261122T031509.250Z.ccbk");
        assert_eq!(parse_name(&file_name(t)), Some(t));
        assert_eq!(
            parse_name("concierge-20261122T031509Z.ccbk"),
            Some(at("2026-11-22T03:15:09Z"))
        );
        assert_eq!(parse_name("concierge-20261122T031509Z.ccbk.sha256"), None);
        assert_eq!(parse_name(".concierge-20261122T031509Z.ccbk.partial"), None);
        assert_eq!(parse_name("notes.txt"), None);
    }

    #[test]
    fn retention_keeps_the_newest_per_day_week_and_month() {
        // Two backups a day for 400 days.
        let start = at("2025-10-19T01:00:00Z");
        let created: Vec<Timestamp> = (0..800)
            .map(|i| start + jiff::SignedDuration::from_hours(12 * i))
            .collect();
        let kept = keep(
            &created,
            Retention {
                daily: 7,
                weekly: 4,
                monthly: 12,
            },
        );
        let kept: Vec<Timestamp> = created
            .iter()
            .zip(&kept)
            .filter(|(_, k)| **k)
            .map(|(t, _)| *t)
            .collect();
        // 7 days, plus weeks and months not already covered: at most 7 + 4 + 12.
        assert!(kept.len() <= 23 && kept.len() >= 12, "{}", kept.len());
        let newest = *created.last().unwrap();
        assert!(kept.contains(&newest));
        // The newest backup of each of the last 7 days.
        for d in 0..7 {
            let day = newest - jiff::SignedDuration::from_hours(24 * d);
            assert!(kept.contains(&day), "day -{d}");
        }
        // Nothing older than 12 months (plus the month in progress).
        let oldest = kept.iter().min().unwrap();
        assert!(newest.duration_since(*oldest) < jiff::SignedDuration::from_hours(24 * 366));
        // The older of two backups of one day is never kept.
        assert!(!kept.contains(&(newest - jiff::SignedDuration::from_hours(12))));
    }

    #[test]
    fn rotation_never_removes_the_backup_just_written() {
        let dir = tempfile::tempdir().unwrap();
        let now = Timestamp::now();
        let written = dir.path().join(file_name(now));
        // A file dated tomorrow (a clock step, a copy from another host) and one unrelated.
        let future = dir
            .path()
            .join(file_name(now + jiff::SignedDuration::from_hours(30)));
        for path in [&written, &future] {
            std::fs::write(path, b"x").unwrap();
        }
        std::fs::write(dir.path().join("concierge-x.ccbk.unverified"), b"x").unwrap();
        let removed = rotate(
            dir.path(),
            Retention {
                daily: 1,
                weekly: 0,
                monthly: 0,
            },
            &written,
        )
        .unwrap();
        assert!(removed.is_empty(), "{removed:?}");
        assert!(written.exists() && future.exists());
    }

    #[tokio::test]
    async fn a_backup_set_aside_is_no_longer_a_backup() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(file_name(Timestamp::now()));
        std::fs::write(&path, b"x").unwrap();
        std::fs::write(sidecar_path(&path), b"y").unwrap();
        let aside = set_aside(&path).await;
        assert!(aside.to_string_lossy().ends_with(".ccbk.unverified"));
        assert!(!path.exists() && !sidecar_path(&path).exists());
        assert!(list(dir.path()).unwrap().is_empty());
    }

    #[test]
    fn retention_of_a_few_backups_keeps_them_all() {
        let created = vec![at("2026-11-20T03:00:00Z"), at("2026-11-21T03:00:00Z")];
        assert_eq!(
            keep(
                &created,
                Retention {
                    daily: 7,
                    weekly: 4,
                    monthly: 12
                }
            ),
            vec![true, true]
        );
    }
}
