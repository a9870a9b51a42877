//! What a simulator run did ([`SimStats`]): counts of committed work,
//! printed by `ingestwatch simulate` and logged by the demo.

/// What the simulator did. Counts cover committed work, except `statements`
/// (which also counts the one statement of each deliberately rolled-back
/// transaction) and `rolled_back`; so `statements - rolled_back` is the
/// number of monitor events the pipeline caused.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct SimStats {
    /// Data-changing statements executed on `ingest.*` tables.
    pub statements: u64,
    /// Raw records received (`ingest.raw_records` rows inserted).
    pub records: u64,
    /// Raw records marked `normalized` (each with an `ingest.meetings` row).
    pub normalized: u64,
    /// Raw records marked `rejected`.
    pub rejected: u64,
    /// `ingest.errors` rows with severity `error`.
    pub errors: u64,
    /// `ingest.errors` rows with severity `warning`.
    pub warnings: u64,
    /// Runs started (`ingest.runs` rows inserted).
    pub runs: u64,
    /// Transactions rolled back on purpose.
    pub rolled_back: u64,
}

impl SimStats {
    /// Adds `other` to `self`.
    pub(crate) fn add(&mut self, other: &SimStats) {
        self.statements += other.statements;
        self.records += other.records;
        self.normalized += other.normalized;
        self.rejected += other.rejected;
        self.errors += other.errors;
        self.warnings += other.warnings;
        self.runs += other.runs;
        self.rolled_back += other.rolled_back;
    }
}
