//! The operator lists: `GET /api/sources`, `/api/runs`, `/api/records` and
//! `/api/errors`, with filters, a whitelisted sort and keyset pagination.
//!
//! Each list module turns its query struct into a [`ListRequest`]; the code
//! here resolves source names against the caller's scope and reads one page
//! (limit + 1 rows: the extra row only says whether a next page exists). The
//! CSV exports (`crate::export`) read the same requests in batches.
//!
//! Response: `{"items":[...],"next_cursor":"..."|null,"limit":N}`.

pub mod errors;
pub mod records;
pub mod runs;
pub mod sources;

use serde::Serialize;

use crate::auth::Principal;
use crate::db::keyset::{Cursor, Order};
use crate::db::queries::{self, Filters, Kind, PageSpec};
use crate::db::rows::Item;
use crate::error::AppError;
use crate::http::params;
use crate::state::AppState;

/// A validated list (or export) request, source names not yet resolved.
#[derive(Debug, Clone)]
pub struct ListRequest {
    /// Which list.
    pub kind: Kind,
    /// Source names asked for (`None` = every source in scope).
    pub sources: Option<Vec<String>>,
    /// The other filters (`source_ids` is filled in by [`resolve`]).
    pub filters: Filters,
    /// Sort.
    pub order: Order,
    /// Start after this row.
    pub cursor: Option<Cursor>,
    /// Page size.
    pub limit: i64,
    /// Records export: include the payload column.
    pub include_payload: bool,
}

/// The parameters every list shares, already split out of its query struct.
pub struct Common<'a> {
    /// `source`.
    pub source: Option<&'a str>,
    /// `from`.
    pub from: Option<&'a str>,
    /// `to`.
    pub to: Option<&'a str>,
    /// `sort`.
    pub sort: Option<&'a str>,
    /// `cursor`.
    pub cursor: Option<&'a str>,
    /// `limit`.
    pub limit: Option<&'a str>,
}

/// Declares a list's query struct: the parameters every list shares
/// (`source`, `from`, `to`, `sort`, `cursor`, `limit`) plus the list's own,
/// all optional strings validated later, unknown keys refused; and
/// `common()`, the shared part borrowed for [`ListRequest::common`].
macro_rules! list_params {
    ($(#[$meta:meta])* pub struct $name:ident { $($(#[$fmeta:meta])* pub $field:ident,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Default, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(missing_docs)]
        pub struct $name {
            pub source: Option<String>,
            $($(#[$fmeta])* pub $field: Option<String>,)*
            pub from: Option<String>,
            pub to: Option<String>,
            pub sort: Option<String>,
            pub cursor: Option<String>,
            pub limit: Option<String>,
        }

        impl $name {
            /// The shared parameters.
            fn common(&self) -> $crate::http::lists::Common<'_> {
                $crate::http::lists::Common {
                    source: self.source.as_deref(),
                    from: self.from.as_deref(),
                    to: self.to.as_deref(),
                    sort: self.sort.as_deref(),
                    cursor: self.cursor.as_deref(),
                    limit: self.limit.as_deref(),
                }
            }
        }
    };
}
pub(crate) use list_params;

impl ListRequest {
    /// The shared part of a request of `kind`; the caller adds its own filters.
    pub fn common(kind: Kind, c: &Common<'_>) -> Result<ListRequest, AppError> {
        let (from, to) = params::range(c.from, c.to)?;
        let order = params::sort(c.sort, kind.default_sort(), kind.sorts(), kind.id_expr())?;
        Ok(ListRequest {
            kind,
            sources: params::names("source", c.source)?,
            filters: Filters {
                from,
                to,
                ..Filters::default()
            },
            cursor: params::cursor(c.cursor, &order)?,
            order,
            limit: params::limit(c.limit)?,
            include_payload: false,
        })
    }
}

/// One page of a list.
#[derive(Debug, Serialize)]
pub struct Page<T> {
    /// The rows.
    pub items: Vec<T>,
    /// Pass as `cursor=` for the next page; null on the last page.
    pub next_cursor: Option<String>,
    /// The page size used.
    pub limit: i64,
}

/// `filters` with `source_ids` resolved from `sources` and the caller's scope.
pub async fn resolve(
    client: &tokio_postgres::Client,
    principal: &Principal,
    sources: Option<&[String]>,
    mut filters: Filters,
) -> Result<Filters, AppError> {
    filters.source_ids = queries::resolve_sources(client, sources, principal.sources.as_ref())
        .await?
        .map_err(|name| {
            let shown: String = name.chars().take(60).collect();
            AppError::invalid("source", format!("unknown source {shown:?}"))
        })?;
    Ok(filters)
}

/// Reads one page of `req` for `principal`.
pub async fn fetch_page(
    st: &AppState,
    principal: &Principal,
    req: &ListRequest,
) -> Result<Page<Item>, AppError> {
    let client = st.read_pool().get().await?;
    let filters = resolve(
        &client,
        principal,
        req.sources.as_deref(),
        req.filters.clone(),
    )
    .await?;
    let q = queries::page_query(&PageSpec {
        kind: req.kind,
        filters: &filters,
        order: req.order,
        after: req.cursor.as_ref(),
        limit: req.limit + 1,
        upto_id: None,
        include_payload: false,
    });
    let rows = client.query(&q.sql, &q.params()).await?;
    let mut items = rows
        .iter()
        .map(|r| Item::from_row(req.kind, r))
        .collect::<Result<Vec<_>, _>>()?;
    let next_cursor = if items.len() as i64 > req.limit {
        items.truncate(req.limit as usize);
        items.last().map(|i| i.cursor(&req.order).encode())
    } else {
        None
    };
    Ok(Page {
        items,
        next_cursor,
        limit: req.limit,
    })
}
