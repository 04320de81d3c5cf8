//! Logical snapshots: every row of every table, in a form both backends read and write, so a
//! backup taken on one restores on the other (this is also how an embedded SQLite install
//! moves to PostgreSQL).
//!
//! [`TABLES`] is the list of record: tables in restore order (parents before children), each
//! with its columns and their portable kinds. The conformance suite checks that every table
//! of either schema is in it or in [`NOT_BACKED_UP`], so a new table cannot be forgotten.
//!
//! A column added to a table after backups of it existed says how the rows of such an older
//! backup fill it ([`Column::absent`]); [`TableSpec::layout`] maps a backup's column list onto
//! this release's, so those backups still restore.

use async_trait::async_trait;
use uuid::Uuid;

use crate::{StoreError, StoreResult};

/// The portable kind of a column. Both backends map their native type to one of these.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnKind {
    /// UUID (PostgreSQL `uuid`, SQLite 16-byte blob).
    Uuid,
    /// 64-bit integer (timestamps are unix milliseconds).
    Int,
    /// Boolean (SQLite stores 0/1).
    Bool,
    Text,
    Bytes,
    /// JSON document (PostgreSQL `jsonb`, SQLite text).
    Json,
}

#[derive(Clone, Copy, Debug)]
pub struct Column {
    pub name: &'static str,
    pub kind: ColumnKind,
    pub nullable: bool,
    /// The value the column gets in rows of a backup taken before it existed; None for a
    /// column every backup has.
    pub absent: Option<Fill>,
}

/// How a column missing from an older backup is filled.
#[derive(Clone, Copy, Debug)]
pub enum Fill {
    Null,
    Text(&'static str),
    /// Computed from the row's other columns (the backup's, already in place; the other
    /// missing ones are `Null` at that point).
    Derived(fn(&TableSpec, &Row) -> Cell),
}

impl Fill {
    fn cell(self, table: &TableSpec, row: &Row) -> Cell {
        match self {
            Self::Null => Cell::Null,
            Self::Text(text) => Cell::Text(text.to_owned()),
            Self::Derived(f) => f(table, row),
        }
    }
}

/// One table of a snapshot.
#[derive(Debug)]
pub struct TableSpec {
    pub name: &'static str,
    pub columns: &'static [Column],
    /// Under row-level security on PostgreSQL: read and written one tenant at a time.
    pub tenant_scoped: bool,
    /// Columns that order the rows (and make children follow their parents), comma-separated.
    pub order_by: &'static str,
}

impl TableSpec {
    /// The column list, comma-separated, for SQL.
    #[must_use]
    pub fn column_list(&self) -> String {
        self.columns
            .iter()
            .map(|c| c.name)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Index of the `tenant_id` column, when the table has one.
    #[must_use]
    pub fn tenant_column(&self) -> Option<usize> {
        self.columns.iter().position(|c| c.name == "tenant_id")
    }

    #[must_use]
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    /// How rows of a backup that lists `columns` for this table (in the order of its
    /// values) become rows of this release: the backup may list them in another order and
    /// lack columns added since (see [`Column::absent`]).
    ///
    /// # Errors
    /// A column this release does not know (a backup from a newer release), one listed
    /// twice, or one missing that every backup must have.
    pub fn layout(&'static self, columns: &[&str]) -> Result<Layout, String> {
        let mut backup = Vec::with_capacity(columns.len());
        for (i, name) in columns.iter().enumerate() {
            let Some(at) = self.column(name) else {
                return Err(format!(
                    "the backup has a column {}.{name} this release does not know; restore it with the release that wrote it",
                    self.name
                ));
            };
            if columns[..i].contains(name) {
                return Err(format!(
                    "the backup lists the column {}.{name} twice",
                    self.name
                ));
            }
            backup.push(at);
        }
        if let Some(missing) = self
            .columns
            .iter()
            .enumerate()
            .find(|(at, c)| c.absent.is_none() && !backup.contains(at))
        {
            return Err(format!(
                "the backup lacks the column {}.{}",
                self.name, missing.1.name
            ));
        }
        Ok(Layout {
            table: self,
            backup,
        })
    }
}

/// The columns of one table as a backup has them, and how its rows become rows of this
/// release's [`TableSpec`] (see [`TableSpec::layout`]).
#[derive(Clone, Debug)]
pub struct Layout {
    table: &'static TableSpec,
    /// For each of the backup's values, in order, its column in `table`.
    backup: Vec<usize>,
}

impl Layout {
    #[must_use]
    pub const fn table(&self) -> &'static TableSpec {
        self.table
    }

    /// The backup's columns, in the order of its values: the kind each value is read as.
    pub fn columns(&self) -> impl ExactSizeIterator<Item = &'static Column> + '_ {
        let table = self.table;
        self.backup.iter().map(move |&at| &table.columns[at])
    }

    /// Whether the backup's rows already are this release's (nothing to reorder or fill).
    #[must_use]
    pub fn is_current(&self) -> bool {
        self.backup.len() == self.table.columns.len()
            && self.backup.iter().enumerate().all(|(i, &at)| i == at)
    }

    /// A row of this release's table from a row of the backup's values.
    ///
    /// # Errors
    /// When the number of values is not the backup's number of columns.
    pub fn row(&self, values: Row) -> Result<Row, String> {
        if values.len() != self.backup.len() {
            return Err(format!(
                "{}: a row has {} values, expected {}",
                self.table.name,
                values.len(),
                self.backup.len()
            ));
        }
        if self.is_current() {
            return Ok(values);
        }
        let mut row = vec![Cell::Null; self.table.columns.len()];
        for (&at, value) in self.backup.iter().zip(values) {
            row[at] = value;
        }
        for (at, column) in self.table.columns.iter().enumerate() {
            if !self.backup.contains(&at)
                && let Some(fill) = column.absent
            {
                row[at] = fill.cell(self.table, &row);
            }
        }
        Ok(row)
    }
}

const fn col(name: &'static str, kind: ColumnKind) -> Column {
    Column {
        name,
        kind,
        nullable: false,
        absent: None,
    }
}

const fn opt(name: &'static str, kind: ColumnKind) -> Column {
    Column {
        name,
        kind,
        nullable: true,
        absent: None,
    }
}

/// A nullable column added after backups of its table existed: NULL in their rows.
const fn added_opt(name: &'static str, kind: ColumnKind) -> Column {
    Column {
        absent: Some(Fill::Null),
        ..opt(name, kind)
    }
}

/// A column added after backups of its table existed, filled in their rows by `fill`.
const fn added(name: &'static str, kind: ColumnKind, fill: Fill) -> Column {
    Column {
        absent: Some(fill),
        ..col(name, kind)
    }
}

/// `conversations.handoff` for a row of a backup from before hand-off states: a conversation
/// marked for staff (`handoff_at` set) waits for a person, as the migrations that added the
/// column decided for stored rows; any other is the agents'.
fn handoff_before_states(table: &TableSpec, row: &Row) -> Cell {
    let marked = table
        .column("handoff_at")
        .and_then(|i| row.get(i))
        .is_some_and(|at| *at != Cell::Null);
    Cell::Text(if marked { "pending" } else { "bot" }.to_owned())
}

use ColumnKind::{Bool, Bytes, Int, Json, Text, Uuid as Id};

/// Every backed-up table, parents first.
pub static TABLES: &[TableSpec] = &[
    TableSpec {
        name: "tenants",
        columns: &[col("id", Id), col("name", Text), col("created_at", Int)],
        tenant_scoped: false,
        order_by: "id",
    },
    TableSpec {
        name: "tenant_phone_numbers",
        columns: &[
            col("e164", Text),
            col("tenant_id", Id),
            col("created_at", Int),
        ],
        tenant_scoped: false,
        order_by: "e164",
    },
    TableSpec {
        name: "tenant_keys",
        columns: &[
            col("tenant_id", Id),
            col("key_id", Int),
            col("kek_id", Int),
            col("wrapped", Bytes),
            col("created_at", Int),
        ],
        tenant_scoped: true,
        order_by: "tenant_id",
    },
    TableSpec {
        name: "staff_users",
        columns: &[
            col("id", Id),
            col("tenant_id", Id),
            col("email_index", Bytes),
            col("email_cipher", Bytes),
            col("role", Text),
            col("created_at", Int),
        ],
        tenant_scoped: true,
        order_by: "id",
    },
    TableSpec {
        name: "api_keys",
        columns: &[
            col("id", Id),
            col("tenant_id", Id),
            col("prefix", Text),
            col("digest", Bytes),
            col("created_at", Int),
            opt("revoked_at", Int),
        ],
        tenant_scoped: false,
        order_by: "id",
    },
    TableSpec {
        name: "end_users",
        columns: &[
            col("id", Id),
            col("tenant_id", Id),
            opt("phone_index", Bytes),
            opt("phone_cipher", Bytes),
            opt("email_index", Bytes),
            opt("email_cipher", Bytes),
            col("opted_out", Bool),
            col("created_at", Int),
            col("last_seen_at", Int),
        ],
        tenant_scoped: true,
        order_by: "id",
    },
    TableSpec {
        name: "conversations",
        columns: &[
            col("id", Id),
            col("tenant_id", Id),
            col("end_user_id", Id),
            opt("tenant_number", Text),
            col("message_count", Int),
            col("created_at", Int),
            col("last_message_at", Int),
            opt("handoff_at", Int),
            added("handoff", Text, Fill::Derived(handoff_before_states)),
            added_opt("handoff_staff", Text),
        ],
        tenant_scoped: true,
        order_by: "id",
    },
    TableSpec {
        name: "messages",
        columns: &[
            col("id", Id),
            col("tenant_id", Id),
            col("conversation_id", Id),
            col("direction", Text),
            col("channel", Text),
            col("body_cipher", Bytes),
            col("status", Text),
            col("status_rank", Int),
            opt("provider_sid", Text),
            opt("in_reply_to", Id),
            opt("error_code", Text),
            col("created_at", Int),
            col("updated_at", Int),
            added_opt("sent_by", Text),
        ],
        tenant_scoped: true,
        // UUIDv7: an inbound message sorts before the reply that names it.
        order_by: "id",
    },
    TableSpec {
        name: "consent_events",
        columns: &[
            col("id", Id),
            col("tenant_id", Id),
            col("end_user_id", Id),
            col("keyword", Text),
            opt("message_id", Id),
            col("created_at", Int),
        ],
        tenant_scoped: true,
        order_by: "id",
    },
    TableSpec {
        name: "kb_entries",
        columns: &[
            col("id", Id),
            col("tenant_id", Id),
            col("title", Text),
            col("body", Text),
            col("created_at", Int),
            col("updated_at", Int),
        ],
        tenant_scoped: true,
        order_by: "id",
    },
    TableSpec {
        name: "model_usage_daily",
        columns: &[
            col("tenant_id", Id),
            col("day", Int),
            col("end_user_id", Id),
            col("calls", Int),
            col("input_tokens", Int),
            col("output_tokens", Int),
            col("cost_micros", Int),
        ],
        tenant_scoped: true,
        order_by: "tenant_id, day, end_user_id",
    },
    TableSpec {
        name: "agent_profiles",
        columns: &[
            col("tenant_id", Id),
            col("name", Text),
            col("version", Int),
            col("source", Text),
            col("created_at", Int),
        ],
        tenant_scoped: true,
        order_by: "tenant_id, name, version",
    },
    TableSpec {
        name: "tenant_settings",
        columns: &[
            col("tenant_id", Id),
            opt("default_profile", Text),
            col("updated_at", Int),
            added_opt("model_cipher", Bytes),
        ],
        tenant_scoped: true,
        order_by: "tenant_id",
    },
    TableSpec {
        name: "conversation_state",
        columns: &[
            col("conversation_id", Id),
            col("tenant_id", Id),
            opt("profile", Text),
            opt("agent", Text),
            opt("data", Bytes),
            col("revision", Int),
            col("updated_at", Int),
        ],
        tenant_scoped: true,
        order_by: "conversation_id",
    },
    TableSpec {
        name: "end_user_facts",
        columns: &[
            col("id", Id),
            col("tenant_id", Id),
            col("end_user_id", Id),
            col("text_cipher", Bytes),
            col("created_at", Int),
        ],
        tenant_scoped: true,
        order_by: "id",
    },
    TableSpec {
        name: "reminders",
        columns: &[
            col("id", Id),
            col("tenant_id", Id),
            col("end_user_id", Id),
            col("conversation_id", Id),
            col("channel", Text),
            col("text_cipher", Bytes),
            col("due_at", Int),
            col("status", Text),
            opt("message_id", Id),
            col("created_at", Int),
            col("updated_at", Int),
        ],
        tenant_scoped: true,
        order_by: "id",
    },
    TableSpec {
        name: "turn_steps",
        columns: &[
            col("tenant_id", Id),
            col("conversation_id", Id),
            col("message_id", Id),
            col("seq", Int),
            col("kind", Text),
            col("name", Text),
            col("is_error", Bool),
            opt("detail_cipher", Bytes),
            col("created_at", Int),
        ],
        tenant_scoped: true,
        order_by: "message_id, seq",
    },
    TableSpec {
        name: "jobs",
        columns: &[
            col("id", Id),
            opt("tenant_id", Id),
            col("kind", Text),
            col("payload", Json),
            opt("idempotency_key", Text),
            col("status", Text),
            col("run_at", Int),
            col("attempts", Int),
            col("max_attempts", Int),
            opt("locked_by", Text),
            opt("locked_until", Int),
            opt("last_error", Text),
            col("created_at", Int),
            col("updated_at", Int),
        ],
        tenant_scoped: false,
        order_by: "id",
    },
];

/// Tables that are deliberately not in a snapshot: migration bookkeeping (the target runs its
/// own migrations) and search indexes rebuilt from their source rows.
pub static NOT_BACKED_UP: &[&str] = &[
    "_sqlx_migrations",
    // Vectors of knowledge-base entries: derived data, large, and tied to an embedding
    // model the target may not use. After a restore the retrieval indexer recomputes them
    // (every entry lacks a vector), and search falls back to full text until it has.
    "kb_embeddings",
    "kb_fts",
    "kb_fts_config",
    "kb_fts_data",
    "kb_fts_docsize",
    "kb_fts_idx",
];

/// Columns that are deliberately not in a snapshot: SQLite's `kb_entries.rowid` only links
/// the full-text index, which is rebuilt from the rows; a conversation's turn lock belongs
/// to the processes running now (a restored conversation starts free).
pub static COLUMNS_NOT_BACKED_UP: &[(&str, &str)] = &[
    ("kb_entries", "rowid"),
    ("conversations", "turn_holder"),
    ("conversations", "turn_until"),
];

/// The table named `name`.
#[must_use]
pub fn table(name: &str) -> Option<&'static TableSpec> {
    TABLES.iter().find(|t| t.name == name)
}

/// One value of a row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cell {
    Null,
    Uuid(Uuid),
    Int(i64),
    Bool(bool),
    Text(String),
    Bytes(Vec<u8>),
    /// A JSON document, as its text.
    Json(String),
}

impl Cell {
    /// Whether the value fits a column of this kind.
    #[must_use]
    pub fn fits(&self, column: &Column) -> bool {
        matches!(
            (self, column.kind),
            (Self::Uuid(_), ColumnKind::Uuid)
                | (Self::Int(_), ColumnKind::Int)
                | (Self::Bool(_), ColumnKind::Bool)
                | (Self::Text(_), ColumnKind::Text)
                | (Self::Bytes(_), ColumnKind::Bytes)
                | (Self::Json(_), ColumnKind::Json)
        ) || (column.nullable && *self == Self::Null)
    }

    #[must_use]
    pub fn as_uuid(&self) -> Option<Uuid> {
        match self {
            Self::Uuid(u) => Some(*u),
            _ => None,
        }
    }
}

/// A row: one cell per column of its [`TableSpec`], in order.
pub type Row = Vec<Cell>;

/// Where an export goes. Errors are strings: the sink reports them and the export stops.
#[async_trait]
pub trait SnapshotSink: Send {
    /// The rows that follow belong to `table`. Called once per entry of [`TABLES`], in order,
    /// even for an empty table.
    async fn table(&mut self, table: &'static TableSpec) -> Result<(), String>;
    async fn row(&mut self, row: Row) -> Result<(), String>;
}

/// Where a restore reads from. The source validates what it reads (an authenticated,
/// checksummed file, say); its error aborts the restore and nothing is kept.
#[async_trait]
pub trait SnapshotSource: Send {
    /// The next table, or `None` after the last one. Tables come in [`TABLES`] order.
    async fn next_table(&mut self) -> Result<Option<&'static TableSpec>, String>;
    /// Up to `max` rows of the current table; an empty batch ends the table.
    async fn next_rows(&mut self, max: usize) -> Result<Vec<Row>, String>;
    /// Called after the last table, before the restore commits: the last chance to refuse
    /// (a checksum that does not match, data after the end).
    async fn finish(&mut self) -> Result<(), String>;
}

/// Why a restored job was parked instead of queued.
pub const PARKED_ON_RESTORE: &str = "restored from a backup: it was due or running when the backup was taken and may have run since, so it is not run again automatically";

/// Adjusts a row before it is restored; returns whether it is a job that was parked.
///
/// A job that was due or running when the snapshot was taken may have run after it (an SMS
/// sent, a turn answered): running it again could repeat it, so it is restored dead-lettered
/// with [`PARKED_ON_RESTORE`]. A job scheduled after `now_ms` (a reminder, tomorrow's backup)
/// cannot have run: it is queued again, unlocked.
pub fn prepare_for_restore(table: &TableSpec, row: &mut Row, now_ms: i64) -> bool {
    if table.name != "jobs" {
        return false;
    }
    let (Some(status), Some(run_at), Some(by), Some(until), Some(error)) = (
        table.column("status"),
        table.column("run_at"),
        table.column("locked_by"),
        table.column("locked_until"),
        table.column("last_error"),
    ) else {
        return false;
    };
    row[by] = Cell::Null;
    row[until] = Cell::Null;
    let pending = matches!(&row[status], Cell::Text(s) if s == "queued" || s == "running");
    let future = matches!(row[run_at], Cell::Int(at) if at > now_ms);
    if !pending {
        return false;
    }
    if future && row[status] == Cell::Text("queued".to_owned()) {
        return false;
    }
    row[status] = Cell::Text("dead".to_owned());
    row[error] = Cell::Text(PARKED_ON_RESTORE.to_owned());
    true
}

/// Checks a row against its table: arity and kinds.
///
/// # Errors
/// A description of the first mismatch.
pub fn check_row(table: &TableSpec, row: &Row) -> Result<(), String> {
    if row.len() != table.columns.len() {
        return Err(format!(
            "{}: a row has {} values, expected {}",
            table.name,
            row.len(),
            table.columns.len()
        ));
    }
    for (cell, column) in row.iter().zip(table.columns) {
        if !cell.fits(column) {
            return Err(format!(
                "{}.{}: value does not fit a {:?}{} column",
                table.name,
                column.name,
                column.kind,
                if column.nullable { " (nullable)" } else { "" }
            ));
        }
    }
    Ok(())
}

/// Where a backend's restore writes, inside its one transaction.
#[async_trait]
pub trait RestoreTarget: Send {
    /// Inserts a batch of checked rows of `table`.
    async fn insert(&mut self, table: &'static TableSpec, rows: Vec<Row>) -> StoreResult<()>;
}

/// The backend-neutral part of a restore: tables in [`TABLES`] order (a snapshot from an older
/// release may lack newer tables, which stay empty), every row checked and prepared, batches
/// of at most `batch` rows handed to `target`, and the source's last word before commit.
///
/// # Errors
/// The source's or the target's; the caller rolls its transaction back.
pub async fn drive_restore(
    source: &mut dyn SnapshotSource,
    target: &mut dyn RestoreTarget,
    batch: usize,
) -> StoreResult<RestoreCounts> {
    let now = jiff::Timestamp::now().as_millisecond();
    let mut counts = RestoreCounts::default();
    let mut expected = TABLES.iter();
    while let Some(table) = source.next_table().await.map_err(StoreError::Snapshot)? {
        if !expected.any(|t| t.name == table.name) {
            return Err(StoreError::Snapshot(format!(
                "table {} is unknown or out of order",
                table.name
            )));
        }
        let mut written = 0u64;
        loop {
            let mut rows = source
                .next_rows(batch)
                .await
                .map_err(StoreError::Snapshot)?;
            if rows.is_empty() {
                break;
            }
            for row in &mut rows {
                check_row(table, row).map_err(StoreError::Snapshot)?;
                if prepare_for_restore(table, row, now) {
                    counts.parked_jobs += 1;
                }
            }
            written += rows.len() as u64;
            target.insert(table, rows).await?;
        }
        counts.tables.push((table.name, written));
    }
    source.finish().await.map_err(StoreError::Snapshot)?;
    Ok(counts)
}

/// Rows written per table by a restore.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RestoreCounts {
    pub tables: Vec<(&'static str, u64)>,
    /// Jobs restored dead-lettered (see [`prepare_for_restore`]).
    pub parked_jobs: u64,
}

impl RestoreCounts {
    #[must_use]
    pub fn total(&self) -> u64 {
        self.tables.iter().map(|(_, n)| n).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(table: &TableSpec) -> Vec<&'static str> {
        table.columns.iter().map(|c| c.name).collect()
    }

    /// A value that fits `column`.
    fn sample(column: &Column) -> Cell {
        match column.kind {
            ColumnKind::Uuid => Cell::Uuid(Uuid::now_v7()),
            ColumnKind::Int => Cell::Int(7),
            ColumnKind::Bool => Cell::Bool(true),
            ColumnKind::Text => Cell::Text(column.name.to_owned()),
            ColumnKind::Bytes => Cell::Bytes(vec![1]),
            ColumnKind::Json => Cell::Json("{}".to_owned()),
        }
    }

    #[test]
    fn a_current_backup_passes_through() {
        let spec = table("conversations").unwrap();
        let layout = spec.layout(&names(spec)).unwrap();
        assert!(layout.is_current());
        assert_eq!(layout.columns().len(), spec.columns.len());
        let row: Row = spec.columns.iter().map(|_| Cell::Int(1)).collect();
        assert_eq!(layout.row(row.clone()).unwrap(), row);
        assert!(layout.row(row[1..].to_vec()).is_err(), "arity is checked");
    }

    /// A backup taken before hand-off states: the migrations' rule (a conversation marked
    /// for staff waits for a person) applies to its rows too.
    #[test]
    fn an_older_backup_fills_the_columns_added_since() {
        let spec = table("conversations").unwrap();
        let old: Vec<&str> = names(spec)
            .into_iter()
            .filter(|c| !matches!(*c, "handoff" | "handoff_staff"))
            .collect();
        let layout = spec.layout(&old).unwrap();
        assert!(!layout.is_current());
        let values = |handoff_at: Cell| -> Row {
            layout
                .columns()
                .map(|c| {
                    if c.name == "handoff_at" {
                        handoff_at.clone()
                    } else {
                        sample(c)
                    }
                })
                .collect()
        };
        let get = |row: &Row, name: &str| row[spec.column(name).unwrap()].clone();
        let agents = layout.row(values(Cell::Null)).unwrap();
        check_row(spec, &agents).unwrap();
        assert_eq!(get(&agents, "handoff"), Cell::Text("bot".into()));
        assert_eq!(get(&agents, "handoff_staff"), Cell::Null);
        assert_eq!(
            get(&agents, "tenant_number"),
            Cell::Text("tenant_number".into())
        );
        let marked = layout.row(values(Cell::Int(1_700_000_000_000))).unwrap();
        check_row(spec, &marked).unwrap();
        assert_eq!(get(&marked, "handoff"), Cell::Text("pending".into()));
        assert_eq!(get(&marked, "handoff_at"), Cell::Int(1_700_000_000_000));

        let messages = table("messages").unwrap();
        let old: Vec<&str> = names(messages)
            .into_iter()
            .filter(|c| *c != "sent_by")
            .collect();
        let layout = messages.layout(&old).unwrap();
        let row = layout.row(layout.columns().map(sample).collect()).unwrap();
        check_row(messages, &row).unwrap();
        assert_eq!(row[messages.column("sent_by").unwrap()], Cell::Null);
    }

    #[test]
    fn columns_may_come_in_another_order() {
        let spec = table("tenants").unwrap();
        let layout = spec.layout(&["name", "created_at", "id"]).unwrap();
        assert!(!layout.is_current());
        let kinds: Vec<ColumnKind> = layout.columns().map(|c| c.kind).collect();
        assert_eq!(kinds, [ColumnKind::Text, ColumnKind::Int, ColumnKind::Uuid]);
        let id = Cell::Uuid(Uuid::nil());
        let row = layout
            .row(vec![Cell::Text("Acme".into()), Cell::Int(5), id.clone()])
            .unwrap();
        assert_eq!(row, [id, Cell::Text("Acme".into()), Cell::Int(5)]);
    }

    #[test]
    fn unknown_duplicate_and_required_columns_are_refused() {
        let spec = table("tenants").unwrap();
        let err = spec
            .layout(&["id", "name", "created_at", "colour"])
            .unwrap_err();
        assert!(err.contains("tenants.colour"), "{err}");
        let err = spec
            .layout(&["id", "name", "name", "created_at"])
            .unwrap_err();
        assert!(err.contains("twice"), "{err}");
        // Only a column added since backups existed may be missing.
        let err = spec.layout(&["id", "created_at"]).unwrap_err();
        assert!(err.contains("tenants.name"), "{err}");
        let conversations = table("conversations").unwrap();
        let without: Vec<&str> = names(conversations)
            .into_iter()
            .filter(|c| *c != "handoff_at")
            .collect();
        assert!(conversations.layout(&without).is_err());
    }
}
