//! Keyset (cursor) pagination: the sortable columns of each list, the
//! `ORDER BY` and the "after this row" predicate for a sort, and the opaque
//! cursor that carries the last row's (sort value, id).
//!
//! Every order is tie-broken by the primary key, so `(sort value, id)` is a
//! total order and a page boundary names exactly one row: rows inserted while
//! a client pages land before or after it, and no row that existed is ever
//! skipped or served twice (unlike `OFFSET`, which shifts under inserts).
//! Nullable columns sort NULLs last ascending and first descending (the
//! PostgreSQL defaults, so plain b-tree indexes serve both directions).
//!
//! The cursor is base64url (no padding) of the JSON `[sort, value, id]`;
//! timestamps travel as epoch microseconds, PostgreSQL's own precision, so a
//! cursor round-trips exactly. It names its sort, and a cursor minted for
//! another sort is refused.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::queries::Query;

/// The SQL type of a sortable column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColType {
    /// `timestamptz`.
    Ts,
    /// `text`.
    Text,
    /// `bigint`.
    Int,
}

/// A column a list may be sorted by.
#[derive(Debug, Clone, Copy)]
pub struct SortCol {
    /// Name in the API (`sort=-started_at`).
    pub name: &'static str,
    /// SQL expression over the list's table alias.
    pub expr: &'static str,
    /// Its type.
    pub ty: ColType,
    /// Whether it may be NULL.
    pub nullable: bool,
}

impl SortCol {
    /// A non-null column.
    pub const fn new(name: &'static str, expr: &'static str, ty: ColType) -> Self {
        SortCol {
            name,
            expr,
            ty,
            nullable: false,
        }
    }

    /// A nullable column.
    pub const fn nullable(name: &'static str, expr: &'static str, ty: ColType) -> Self {
        SortCol {
            name,
            expr,
            ty,
            nullable: true,
        }
    }
}

/// A sort: one whitelisted column and a direction, tie-broken by `id_expr`.
#[derive(Debug, Clone, Copy)]
pub struct Order {
    /// The column.
    pub col: SortCol,
    /// Descending?
    pub desc: bool,
    /// The primary key expression (`u.id`).
    pub id_expr: &'static str,
}

impl Order {
    /// Parses `sort=` (`col` or `-col`) against `cols`.
    pub fn parse(s: &str, cols: &[SortCol], id_expr: &'static str) -> Result<Order, String> {
        let (desc, name) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s.strip_prefix('+').unwrap_or(s)),
        };
        let col = cols.iter().find(|c| c.name == name).ok_or_else(|| {
            let names: Vec<&str> = cols.iter().map(|c| c.name).collect();
            format!(
                "unknown sort column {name:?}; use one of {} (prefix `-` for descending)",
                names.join(", ")
            )
        })?;
        Ok(Order {
            col: *col,
            desc,
            id_expr,
        })
    }

    /// The `sort=` spelling of this order.
    pub fn spelling(&self) -> String {
        format!("{}{}", if self.desc { "-" } else { "" }, self.col.name)
    }

    /// `ORDER BY` body.
    pub fn order_by(&self) -> String {
        let dir = if self.desc { "desc" } else { "asc" };
        format!("{} {dir}, {} {dir}", self.col.expr, self.id_expr)
    }

    /// Appends the predicate "strictly after `after` in this order".
    pub fn after(&self, q: &mut Query, after: &Cursor) -> String {
        let (e, id) = (self.col.expr, self.id_expr);
        let pid = q.bind(after.id);
        let op = if self.desc { "<" } else { ">" };
        match &after.value {
            CursorValue::Null => {
                if self.desc {
                    // NULLs come first: the rest of the NULLs, then every non-null.
                    format!("(({e} is null and {id} < {pid}) or {e} is not null)")
                } else {
                    // NULLs come last: only the rest of the NULLs.
                    format!("({e} is null and {id} > {pid})")
                }
            }
            v => {
                let pv = match v {
                    CursorValue::Ts(t) => q.bind(*t),
                    CursorValue::Text(s) => q.bind(s.clone()),
                    CursorValue::Int(i) => q.bind(*i),
                    CursorValue::Null => unreachable!("handled above"),
                };
                if self.col.nullable && !self.desc {
                    format!("(({e}, {id}) > ({pv}, {pid}) or {e} is null)")
                } else {
                    // Descending, NULLs (first) are behind us; a NULL compares
                    // as unknown and drops out of the row comparison.
                    format!("({e}, {id}) {op} ({pv}, {pid})")
                }
            }
        }
    }
}

/// The sort value of a row as carried in a cursor.
#[derive(Debug, Clone, PartialEq)]
pub enum CursorValue {
    /// SQL NULL (nullable columns).
    Null,
    /// A timestamp (microsecond precision).
    Ts(DateTime<Utc>),
    /// A text value.
    Text(String),
    /// An integer.
    Int(i64),
}

/// The position after a row: its sort value and id, under one sort.
#[derive(Debug, Clone, PartialEq)]
pub struct Cursor {
    /// `sort=` spelling the cursor was minted for.
    pub sort: String,
    /// The row's sort value.
    pub value: CursorValue,
    /// The row's id.
    pub id: i64,
}

impl Cursor {
    /// The opaque string.
    pub fn encode(&self) -> String {
        let v = match &self.value {
            CursorValue::Null => Value::Null,
            CursorValue::Ts(t) => json!(t.timestamp_micros()),
            CursorValue::Text(s) => json!(s),
            CursorValue::Int(i) => json!(i),
        };
        base64url_encode(json!([self.sort, v, self.id]).to_string().as_bytes())
    }

    /// Decodes `s` for `order`; the error says why it is refused.
    pub fn decode(s: &str, order: &Order) -> Result<Cursor, String> {
        const BAD: &str = "not a cursor returned by this list";
        let bytes = base64url_decode(s).ok_or(BAD)?;
        let v: Value = serde_json::from_slice(&bytes).map_err(|_| BAD)?;
        let arr = v.as_array().filter(|a| a.len() == 3).ok_or(BAD)?;
        let sort = arr[0].as_str().ok_or(BAD)?;
        if sort != order.spelling() {
            return Err(format!(
                "the cursor belongs to sort={sort}, not sort={}",
                order.spelling()
            ));
        }
        let id = arr[2].as_i64().ok_or(BAD)?;
        let value = match (&arr[1], order.col.ty) {
            (Value::Null, _) if order.col.nullable => CursorValue::Null,
            (v, ColType::Ts) => v
                .as_i64()
                .and_then(DateTime::from_timestamp_micros)
                .map(CursorValue::Ts)
                .ok_or(BAD)?,
            (Value::String(s), ColType::Text) => CursorValue::Text(s.clone()),
            (v, ColType::Int) => CursorValue::Int(v.as_i64().ok_or(BAD)?),
            _ => return Err(BAD.into()),
        };
        Ok(Cursor {
            sort: sort.to_string(),
            value,
            id,
        })
    }
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// base64url without padding (RFC 4648 §5). Cursors are tiny; a crate for
/// this would be more code to audit than these lines.
pub fn base64url_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// Decodes base64url without padding; `None` when malformed.
pub fn base64url_decode(s: &str) -> Option<Vec<u8>> {
    if s.len() % 4 == 1 || s.len() > 4096 {
        return None;
    }
    let val = |c: u8| ALPHABET.iter().position(|&a| a == c).map(|p| p as u32);
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    for chunk in s.as_bytes().chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= val(c)? << (18 - 6 * i);
        }
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        let keep = chunk.len() - 1;
        // Non-canonical trailing bits mean a tampered or truncated cursor.
        if bytes[keep..].iter().any(|&b| b != 0) && keep < 3 {
            return None;
        }
        out.extend_from_slice(&bytes[..keep]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const COLS: [SortCol; 3] = [
        SortCol::new("started_at", "u.started_at", ColType::Ts),
        SortCol::nullable("finished_at", "u.finished_at", ColType::Ts),
        SortCol::new("status", "u.status", ColType::Text),
    ];

    #[test]
    fn base64url_round_trips_every_length() {
        for len in 0..40 {
            let data: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let enc = base64url_encode(&data);
            assert!(!enc.contains(['=', '+', '/']), "{enc}");
            assert_eq!(base64url_decode(&enc).as_deref(), Some(&data[..]));
        }
        assert_eq!(base64url_encode(b"foob"), "Zm9vYg");
        assert_eq!(
            base64url_decode("Zm9vYmFy").as_deref(),
            Some(&b"foobar"[..])
        );
        assert!(base64url_decode("Zm9vYh").is_none(), "non-canonical bits");
        assert!(base64url_decode("a").is_none());
        assert!(base64url_decode("ab!d").is_none());
    }

    #[test]
    fn cursors_round_trip_and_name_their_sort() {
        let order = Order::parse("-started_at", &COLS, "u.id").expect("sort");
        let t = DateTime::from_timestamp_micros(1_795_687_530_123_456).expect("ts");
        let c = Cursor {
            sort: order.spelling(),
            value: CursorValue::Ts(t),
            id: 42,
        };
        assert_eq!(Cursor::decode(&c.encode(), &order), Ok(c.clone()));
        let asc = Order::parse("started_at", &COLS, "u.id").expect("sort");
        assert!(Cursor::decode(&c.encode(), &asc)
            .unwrap_err()
            .contains("sort=-started_at"));
        assert!(Cursor::decode("garbage", &order).is_err());
        let nullable = Order::parse("finished_at", &COLS, "u.id").expect("sort");
        let n = Cursor {
            sort: "finished_at".into(),
            value: CursorValue::Null,
            id: 7,
        };
        assert_eq!(Cursor::decode(&n.encode(), &nullable), Ok(n));
        let bad_null = Cursor {
            sort: "-started_at".into(),
            value: CursorValue::Null,
            id: 7,
        };
        assert!(Cursor::decode(&bad_null.encode(), &order).is_err());
    }

    #[test]
    fn unknown_sort_columns_are_refused_with_the_choices() {
        let e = Order::parse("-nope", &COLS, "u.id").unwrap_err();
        assert!(e.contains("started_at, finished_at, status"), "{e}");
        assert_eq!(
            Order::parse("+status", &COLS, "u.id")
                .expect("asc")
                .spelling(),
            "status"
        );
    }
}
