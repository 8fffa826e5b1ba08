//! The data tables a move copies: columns with their kinds, page keys, and the generic read,
//! write and checksum over rows of either backend.

use sha2::{Digest, Sha256};

#[derive(Clone, Copy, Debug)]
pub(super) enum Kind {
    Text,
    OptText,
    Int,
    OptInt,
    Int4,
    Bytes,
}
use Kind::*;

/// How a table is read in pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Page {
    /// Small: read whole, and re-copied whole under the fence.
    Whole,
    /// `kb_chunks`: by id, 1,000 at a time; under the fence, the ids past the copy.
    ById,
    /// Audit records and bodies: by seq windows; under the fence, the seqs past the copy.
    BySeq,
}

pub(super) struct Table {
    pub(super) name: &'static str,
    pub(super) cols: &'static [(&'static str, Kind)],
    pub(super) order: &'static str,
    pub(super) page: Page,
}

/// Every data table (`DATA_TABLES`), in copy order: records before the checkpoints the
/// target's triggers check them against.
pub(super) const TABLES: &[Table] = &[
    Table {
        name: "tenant_keks",
        cols: &[
            ("tenant_id", Text),
            ("version", Int),
            ("wrapped", Bytes),
            ("is_current", Int),
            ("created_at_ms", Int),
        ],
        order: "version",
        page: Page::Whole,
    },
    Table {
        name: "tenant_data_keys",
        cols: &[
            ("tenant_id", Text),
            ("id", Bytes),
            ("purpose", Text),
            ("kek_version", Int),
            ("wrapped", Bytes),
            ("created_at_ms", Int),
        ],
        order: "id",
        page: Page::Whole,
    },
    Table {
        name: "tenant_secrets",
        cols: &[
            ("tenant_id", Text),
            ("name", Text),
            ("sealed", Bytes),
            ("updated_at_ms", Int),
        ],
        order: "name",
        page: Page::Whole,
    },
    Table {
        name: "prompt_templates",
        cols: &[
            ("tenant_id", Text),
            ("name", Text),
            ("active_version", OptInt),
            ("created_at_ms", Int),
            ("updated_at_ms", Int),
        ],
        order: "name",
        page: Page::Whole,
    },
    Table {
        name: "prompt_versions",
        cols: &[
            ("tenant_id", Text),
            ("name", Text),
            ("version", Int),
            ("uid", Text),
            ("body_sealed", Bytes),
            ("body_sha256", Text),
            ("author", Text),
            ("created_at_ms", Int),
        ],
        order: "name, version",
        page: Page::Whole,
    },
    Table {
        name: "kb_documents",
        cols: &[
            ("id", Text),
            ("tenant_id", Text),
            ("kb_id", Text),
            ("name", Text),
            ("content_type", Text),
            ("bytes", Int),
            ("sha256", Text),
            ("chunks", Int4),
            ("created_at_ms", Int),
        ],
        order: "id",
        page: Page::Whole,
    },
    Table {
        name: "kb_chunks",
        cols: &[
            ("id", Int),
            ("tenant_id", Text),
            ("kb_id", Text),
            ("doc_id", Text),
            ("ord", Int4),
            ("tokens", Int4),
            ("sealed", Bytes),
        ],
        order: "id",
        page: Page::ById,
    },
    Table {
        name: "kb_sources",
        cols: &[
            ("id", Int),
            ("tenant_id", Text),
            ("kb_id", Text),
            ("doc_id", Text),
            ("part", Int4),
            ("sealed", Bytes),
        ],
        order: "id",
        page: Page::ById,
    },
    Table {
        name: "ft_files",
        cols: &[
            ("tenant_id", Text),
            ("id", Text),
            ("filename", Text),
            ("purpose", Text),
            ("bytes", Int),
            ("lines", Int),
            ("sha256", Text),
            ("provider", Text),
            ("provider_file_id", Text),
            ("created_at_ms", Int),
        ],
        order: "id",
        page: Page::Whole,
    },
    Table {
        name: "ft_file_parts",
        cols: &[
            ("id", Int),
            ("tenant_id", Text),
            ("file_id", Text),
            ("part", Int4),
            ("sealed", Bytes),
        ],
        order: "id",
        page: Page::ById,
    },
    Table {
        name: "audit_records",
        cols: &[
            ("tenant_id", Text),
            ("seq", Int),
            ("ts_ms", Int),
            ("request_id", Text),
            ("event", Text),
            ("key_id", OptText),
            ("user_id", OptText),
            ("model", OptText),
            ("status", Int4),
            ("input_tokens", OptInt),
            ("output_tokens", OptInt),
            ("cost_micros", OptInt),
            ("record", Text),
            ("hash", Bytes),
        ],
        order: "seq",
        page: Page::BySeq,
    },
    Table {
        name: "audit_bodies",
        cols: &[
            ("tenant_id", Text),
            ("seq", Int),
            ("part", Text),
            ("sealed", Bytes),
        ],
        order: "seq, part",
        page: Page::BySeq,
    },
    Table {
        name: "audit_checkpoints",
        cols: &[
            ("tenant_id", Text),
            ("seq", Int),
            ("hash", Bytes),
            ("ts_ms", Int),
            ("key_id", Text),
            ("sig", Text),
        ],
        order: "seq",
        page: Page::BySeq,
    },
    Table {
        name: "audit_heads",
        cols: &[("tenant_id", Text), ("seq", Int), ("hash", Bytes)],
        order: "tenant_id",
        page: Page::Whole,
    },
];

pub(super) const PAGE: i64 = 1000;

#[derive(Clone, Debug, PartialEq)]
pub(super) enum Val {
    Text(String),
    OptText(Option<String>),
    Int(i64),
    OptInt(Option<i64>),
    Int4(i32),
    Bytes(Vec<u8>),
}

pub(super) type Rows = Vec<Vec<Val>>;

pub(super) fn digest(h: &mut Sha256, rows: &Rows) {
    for row in rows {
        for v in row {
            let (tag, bytes): (u8, Vec<u8>) = match v {
                Val::Text(s) | Val::OptText(Some(s)) => (1, s.as_bytes().to_vec()),
                Val::OptText(None) | Val::OptInt(None) => (0, Vec::new()),
                Val::Int(i) | Val::OptInt(Some(i)) => (2, i.to_be_bytes().to_vec()),
                Val::Int4(i) => (2, i64::from(*i).to_be_bytes().to_vec()),
                Val::Bytes(b) => (3, b.clone()),
            };
            h.update([tag]);
            h.update((bytes.len() as u64).to_be_bytes());
            h.update(&bytes);
        }
    }
}

/// Reads the rows a bound query returns, decoding each column by its kind (per backend:
/// expands inside a `with_tx!` body).
macro_rules! read_rows {
    ($tx:ident, $q:expr, $cols:expr) => {{
        let rows = $q.fetch_all(&mut *$tx).await?;
        let mut out: Rows = Vec::with_capacity(rows.len());
        for r in &rows {
            let mut v = Vec::with_capacity($cols.len());
            for (i, (_, k)) in $cols.iter().enumerate() {
                v.push(match k {
                    Kind::Text => Val::Text(r.try_get(i)?),
                    Kind::OptText => Val::OptText(r.try_get(i)?),
                    Kind::Int => Val::Int(r.try_get(i)?),
                    Kind::OptInt => Val::OptInt(r.try_get(i)?),
                    Kind::Int4 => Val::Int4(r.try_get(i)?),
                    Kind::Bytes => Val::Bytes(r.try_get(i)?),
                });
            }
            out.push(v);
        }
        out
    }};
}

pub(super) use read_rows;

/// Inserts rows into `$table` in chunks that stay under SQLite's parameter limit.
macro_rules! insert_rows {
    ($tx:ident, $table:expr, $rows:expr) => {{
        let t: &Table = $table;
        let cols: Vec<&str> = t.cols.iter().map(|c| c.0).collect();
        let per = (900 / t.cols.len()).max(1);
        for chunk in $rows.chunks(per) {
            let mut qb =
                sqlx::QueryBuilder::new(format!("INSERT INTO {} ({}) ", t.name, cols.join(", ")));
            qb.push_values(chunk, |mut b, row| {
                for v in row {
                    match v {
                        Val::Text(s) => b.push_bind(s.clone()),
                        Val::OptText(s) => b.push_bind(s.clone()),
                        Val::Int(i) => b.push_bind(*i),
                        Val::OptInt(i) => b.push_bind(*i),
                        Val::Int4(i) => b.push_bind(*i),
                        Val::Bytes(x) => b.push_bind(x.clone()),
                    };
                }
            });
            qb.build().execute(&mut *$tx).await?;
        }
    }};
}

pub(super) use insert_rows;

pub(super) fn select(t: &Table, page: Option<Page>) -> String {
    let cols: Vec<&str> = t.cols.iter().map(|c| c.0).collect();
    let cols = cols.join(", ");
    match page {
        None | Some(Page::Whole) => format!(
            "SELECT {cols} FROM {} WHERE tenant_id = $1 ORDER BY {}",
            t.name, t.order
        ),
        Some(Page::ById) => format!(
            "SELECT {cols} FROM {} WHERE tenant_id = $1 AND id > $2 ORDER BY {} LIMIT {}",
            t.name,
            t.order,
            // A source part is up to 1 MiB: a page of them stays a few MiB.
            if matches!(t.name, "kb_sources" | "ft_file_parts") {
                4
            } else {
                PAGE
            }
        ),
        Some(Page::BySeq) => format!(
            "SELECT {cols} FROM {} WHERE tenant_id = $1 AND seq > $2 AND seq <= $3 ORDER BY {}",
            t.name, t.order
        ),
    }
}
