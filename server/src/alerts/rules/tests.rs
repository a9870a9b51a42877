//! Unit tests of the rules file: every example parses, every mistake names
//! its line.

use std::collections::BTreeSet;
use std::time::Duration;

use super::*;

fn err(text: &str) -> RulesError {
    RuleSet::parse(text).expect_err("should be refused")
}

#[test]
fn defaults_and_example_parse() {
    let d = RuleSet::parse(DEFAULT_RULES).expect("default rules");
    assert!(d.rules.len() >= 8, "a rule of every condition kind");
    let example = include_str!("../../../../alerts.example.toml");
    std::env::set_var("OPS_WEBHOOK_SECRET", "s3cret");
    let e = RuleSet::parse(example).expect("alerts.example.toml");
    let kinds: BTreeSet<&str> = e
        .rules
        .iter()
        .map(|r| r.condition.kind().as_str())
        .collect();
    assert_eq!(
        kinds.len(),
        9,
        "the example shows every condition: {kinds:?}"
    );
}

#[test]
fn a_full_rule_parses() {
    let s = RuleSet::parse(
        r#"
[settings]
interval = "250ms"

[[receivers]]
name = "ops"
url = "http://127.0.0.1:9/hook"
secret = "k"
format = "slack"
severities = ["critical"]

[[rules]]
name = "rejects"
condition = "reject_rate"
window = "30s"
above = 0.25
min_records = 10
sources = { each = ["b", "a"] }
for = "2s"
resolve_for = "1s"
hysteresis = 0.2
severity = "critical"
labels = { team = "data" }
receivers = ["ops"]

[[rules]]
name = "lag"
condition = "lag_p95"
above = "2.5s"
sources = ["x", "y"]
"#,
    )
    .expect("valid");
    assert_eq!(s.settings.interval, Duration::from_millis(250));
    let r = &s.rules[0];
    assert_eq!(
        r.condition,
        Condition::RejectRate {
            window: 30,
            above: 0.25,
            min_records: 10
        }
    );
    assert_eq!(r.selector, Selector::EachOf(vec!["a".into(), "b".into()]));
    assert_eq!(r.for_, Duration::from_secs(2));
    assert_eq!(s.receivers_for(r, StateName::Firing).len(), 1);
    assert_eq!(s.receivers_for(r, StateName::Pending).len(), 0);
    assert_eq!(
        s.rules[1].condition,
        Condition::LagP95 {
            window: 300,
            above_ms: 2500.0,
            min_records: 1
        }
    );
    assert_eq!(
        s.rules[1].selector,
        Selector::Together(vec!["x".into(), "y".into()])
    );
    assert_eq!(s.receivers[0].format, Format::Slack);
}

#[test]
fn errors_name_the_line_and_the_problem() {
    let cases: [(&str, usize, &str); 12] = [
            ("[[rules]]\nname = \"a\"\ncondition = \"nope\"\n", 3, "unknown condition \"nope\""),
            ("[[rules]]\nname = \"a\"\ncondition = \"backlog\"\n", 1, "needs `above`"),
            ("[[rules]]\nname = \"a\"\ncondition = \"backlog\"\nabove = 5\nwindow = \"1m\"\n", 5, "`window` does not apply"),
            ("[[rules]]\nname = \"a\"\ncondition = \"backlog\"\nabove = 5\nfor = \"ten\"\n", 5, "`for`"),
            ("[[rules]]\nname = \"a\"\ncondition = \"backlog\"\nabove = 5\nhysteresis = 1.5\n", 5, "hysteresis"),
            ("[[rules]]\nname = \"a\"\ncondition = \"backlog\"\nabove = 5\nseverity = \"meh\"\n", 5, "unknown severity"),
            ("\n\n[[rules]]\nname = \"a\"\ncondition = \"backlog\"\nabove = 5\nbogus = 1\n", 7, "bogus"),
            ("[[rules]]\nname = \"a\"\ncondition = \"backlog\"\nabove = 5\n\n[[rules]]\nname = \"a\"\ncondition = \"backlog\"\nabove = 6\n", 6, "defined twice"),
            ("[[rules]]\nname = \"a\"\ncondition = \"listener_disconnected\"\nlonger_than = \"5s\"\nsources = \"each\"\n", 5, "not about sources"),
            ("[[rules]]\nname = \"a\"\ncondition = \"reject_rate\"\nabove = 0.1\nwindow = \"7m30s\"\n", 5, "window"),
            ("[[rules]]\nname = \"a\"\ncondition = \"backlog\"\nabove = 5\nreceivers = [\"x\"]\n", 5, "no receiver named \"x\""),
            ("[[rules]\nname = \"a\"\n", 1, ""),
        ];
    for (text, line, needle) in cases {
        let e = err(text);
        assert_eq!(e.line, Some(line), "{text:?} -> {e}");
        assert!(e.to_string().contains(needle), "{text:?} -> {e}");
        assert!(e.to_string().starts_with(&format!("line {line}: ")), "{e}");
    }
}

#[test]
fn receivers_are_validated() {
    let e = err("[[receivers]]\nname = \"r\"\nurl = \"ftp://x\"\n");
    assert_eq!(e.line, Some(3));
    let e = err("[[receivers]]\nname = \"r\"\nurl = \"http://x\"\nsecret_env = \"IW_SURELY_UNSET_VAR_42\"\n");
    assert_eq!(e.line, Some(4));
    assert!(e.message.contains("IW_SURELY_UNSET_VAR_42"));
    let e = err("[[receivers]]\nname = \"r\"\nurl = \"http://x\"\nformat = \"xml\"\n");
    assert_eq!(e.line, Some(4));
}

#[test]
fn durations() {
    assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
    assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
    assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
    assert!(parse_duration("5").is_err());
    assert!(parse_duration("5w").is_err());
    assert!(parse_duration("-1s").is_err());
}
