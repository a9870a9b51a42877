//! The scope rule: which sources a principal sees. One rule, used by the
//! REST handlers, the hub's fan-out and the alerts view alike.

use std::collections::BTreeSet;

/// The sources a principal may see, borrowed from its token's claim
/// (`None`: every source).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scope<'a>(Option<&'a BTreeSet<String>>);

impl<'a> Scope<'a> {
    /// The scope of a sources claim (`None`: unscoped).
    pub fn of(sources: Option<&'a BTreeSet<String>>) -> Self {
        Scope(sources)
    }

    /// Every source.
    pub fn unscoped() -> Self {
        Scope(None)
    }

    /// May it see `source`?
    pub fn sees(self, source: &str) -> bool {
        self.0.is_none_or(|s| s.contains(source))
    }

    /// May it see something about all of `sources` (an alert)? Something
    /// about every source (an empty list: an alert over all sources, or a
    /// system alert) is for unscoped principals only.
    pub fn sees_all(self, sources: &[String]) -> bool {
        match self.0 {
            None => true,
            Some(s) => !sources.is_empty() && sources.iter().all(|x| s.contains(x)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scope_sees_its_sources_and_only_unscoped_sees_everything() {
        let crm = BTreeSet::from(["crm".to_string()]);
        let scoped = Scope::of(Some(&crm));
        assert!(scoped.sees("crm") && !scoped.sees("erp"));
        assert!(scoped.sees_all(&["crm".into()]));
        assert!(!scoped.sees_all(&["crm".into(), "erp".into()]));
        assert!(
            !scoped.sees_all(&[]),
            "alerts over all sources: unscoped only"
        );
        assert!(Scope::unscoped().sees("erp") && Scope::unscoped().sees_all(&[]));
    }
}
