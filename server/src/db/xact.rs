//! Transaction ids and the lock holders of `monitor.events`: what the
//! listener's hole resolution (`listen::sequencer`) and the warm-up
//! (`db::warm::settle`) both use to prove that no transaction that could
//! still add a seq is running.

/// 32-bit xids of the transactions holding a lock on `monitor.events` in this
/// database (prepared transactions included: they share `virtualtransaction`).
pub const LOCK_HOLDERS_SQL: &str = "select distinct t.transactionid::text::bigint
    from pg_locks r join pg_locks t on t.virtualtransaction = r.virtualtransaction
   where r.locktype = 'relation' and r.relation = 'monitor.events'::regclass
     and r.database = (select oid from pg_database where datname = current_database())
     and t.locktype = 'transactionid'";

/// True when the 32-bit transaction id `xid` is older than the full id `marker`.
pub fn older_than(xid: u32, marker: i64) -> bool {
    let m32 = (marker as u64 & 0xFFFF_FFFF) as u32;
    (xid.wrapping_sub(m32) as i32) < 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xid_comparison_survives_wraparound() {
        assert!(older_than(5, 10));
        assert!(!older_than(10, 10));
        assert!(!older_than(11, 10));
        let m = (3i64 << 32) | 5; // epoch 3, xid 5
        assert!(older_than(u32::MAX - 2, m), "just before the wrap");
        assert!(!older_than(6, m));
    }
}
