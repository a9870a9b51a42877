//! The raw material of payloads: people, titles, places, time zones, a
//! generated [`Meeting`], and the seeded random picks used throughout.

use super::*;

/// (display name, mailbox) of the people who organize and attend.
pub(crate) const PEOPLE: [(&str, &str); 16] = [
    ("Ana García", "ana.garcia"),
    ("Jürgen Weiß", "juergen.weiss"),
    ("Zoë Dubois", "zoe.dubois"),
    ("Søren Madsen", "soren.madsen"),
    ("Priya Natarajan", "priya.natarajan"),
    ("Kenji Watanabe (渡辺健二)", "kenji.watanabe"),
    ("Siobhán O'Connor", "siobhan.oconnor"),
    ("Mateus Araújo", "mateus.araujo"),
    ("Olamide Adeyemi", "olamide.adeyemi"),
    ("Li Wei (李伟)", "li.wei"),
    ("Fatma Yılmaz", "fatma.yilmaz"),
    ("Dmitri Ivanov", "dmitri.ivanov"),
    ("Chloé Martin", "chloe.martin"),
    ("Tomás Novák", "tomas.novak"),
    ("Aroha Ngata", "aroha.ngata"),
    ("Nguyễn Thị Mai", "mai.nguyen"),
];
pub(crate) const DOMAINS: [&str; 5] = [
    "acme.example",
    "globex.example",
    "initech.example",
    "umbrella-corp.example",
    "hooli.example",
];
pub(crate) const TITLES: [&str; 18] = [
    "Weekly sync, platform team",
    "Q4 planning — budget & headcount",
    "1:1 Ana / Jürgen",
    "Kundentermin: Müller & Söhne GmbH",
    "\"Ask me anything\" with the CTO",
    "Réunion d'équipe – Paris",
    "会議: 予算レビュー",
    "Sprint 48 retro 🚀",
    "Interview: Senior Data Engineer (round 2)",
    "Board prep, part 3 of 4",
    "Offsite logistics; hotel, travel, dinner",
    "Renewal call — O'Brien & Sons, Ltd.",
    "Design review: \"ingest v2\" schema",
    "Incident review INC-2291 (ingest lag)",
    "Стендап команды",
    "Café ☕ chat",
    "Onboarding: new hires, cohort 11/26",
    "Pricing workshop \"EMEA\", day 2",
];
pub(crate) const DESCRIPTIONS: [&str; 8] = [
    "Agenda:\n1. Status\n2. Risks, blockers\n3. \"Next steps\"",
    "Dial-in: +1 555 0100, PIN 4711#\nPlease join 5 min early.",
    "Notes from last time: see doc \"Q4 plan, v3\".",
    "",
    "Bitte Unterlagen mitbringen.\nDanke!",
    "Lunch provided 🍕 — tell us about dietary needs, allergies, etc.",
    "Follow-up to thread: \"Re: Re: contract, rev. 2\"",
    "Ordre du jour :\n- bilan T3\n- « feuille de route »",
];
pub(crate) const LOCATIONS: [&str; 7] = [
    "Room 4.12, Building B",
    "Zoom",
    "Microsoft Teams",
    "Konferenzraum „Alpen“",
    "HQ / Floor 3 / \"Fishbowl\"",
    "Café Central, Wien",
    "東京オフィス 5F",
];
/// Time zones with their November UTC offsets in minutes.
pub(crate) const ZONES: [(&str, i64); 9] = [
    ("Europe/Berlin", 60),
    ("Europe/London", 0),
    ("America/New_York", -300),
    ("America/Los_Angeles", -480),
    ("Asia/Tokyo", 540),
    ("Asia/Kolkata", 330),
    ("Europe/Vienna", 60),
    ("America/Sao_Paulo", -180),
    ("Australia/Sydney", 660),
];
pub(crate) const BAD_ZONES: [&str; 5] = [
    "Mars/Olympus_Mons",
    "W. Europe Standard Time",
    "GMT+25",
    "CEST+1",
    "Europe/Berln",
];

/// A meeting before it is rendered in a source's shape.
#[derive(Debug)]
pub(crate) struct Meeting {
    pub(crate) title: String,
    pub(crate) description: &'static str,
    /// Local start time in `zone`.
    pub(crate) local_start: NaiveDateTime,
    /// Length; negative for "ends before it starts".
    pub(crate) minutes: i64,
    pub(crate) zone: (&'static str, i64),
    pub(crate) organizer: (&'static str, String),
    pub(crate) attendees: Vec<String>,
    pub(crate) location: &'static str,
}

impl Meeting {
    pub(crate) fn generate(
        rng: &mut StdRng,
        defect: Option<Defect>,
        quirk: Option<Quirk>,
    ) -> Meeting {
        let zone = ZONES[rng.random_range(0..ZONES.len())];
        let day = Utc::now().date_naive() + chrono::Days::new(rng.random_range(0..21));
        let minute_of_day = rng.random_range(8 * 4..18 * 4) * 15;
        let local_start = day.and_time(NaiveTime::MIN) + chrono::Duration::minutes(minute_of_day);
        let mut minutes = [15, 30, 30, 45, 60, 60, 90, 120][rng.random_range(0..8)];
        if defect == Some(Defect::EndBeforeStart) {
            minutes = -minutes;
        }
        let (name, mailbox) = PEOPLE[rng.random_range(0..PEOPLE.len())];
        let organizer = (
            name,
            format!("{mailbox}@{}", DOMAINS[rng.random_range(0..2)]),
        );
        let count = match defect {
            Some(Defect::AttendeeLimit) => {
                rng.random_range(ATTENDEE_LIMIT + 1..=ATTENDEE_LIMIT + 60)
            }
            _ => rng.random_range(1..=12),
        };
        let mut attendees: Vec<String> = (0..count)
            .map(|i| {
                let (_, mailbox) = PEOPLE[rng.random_range(0..PEOPLE.len())];
                let domain = DOMAINS[rng.random_range(0..DOMAINS.len())];
                if count > 16 {
                    format!("guest{i}@{domain}")
                } else {
                    format!("{mailbox}@{domain}")
                }
            })
            .collect();
        attendees.sort();
        attendees.dedup();
        if quirk == Some(Quirk::DuplicateAttendee) {
            if let Some(first) = attendees.first().cloned() {
                attendees.push(first);
            }
        }
        let mut title = TITLES[rng.random_range(0..TITLES.len())].to_string();
        if quirk == Some(Quirk::LongTitle) {
            title.push_str(" — pasted agenda: ");
            while title.chars().count() <= TITLE_LIMIT + 20 {
                title.push_str(
                    &DESCRIPTIONS[rng.random_range(0..DESCRIPTIONS.len())].replace('\n', " "),
                );
                title.push_str("; ");
            }
        }
        Meeting {
            title,
            description: DESCRIPTIONS[rng.random_range(0..DESCRIPTIONS.len())],
            local_start,
            minutes,
            zone,
            organizer,
            attendees,
            location: LOCATIONS[rng.random_range(0..LOCATIONS.len())],
        }
    }

    pub(crate) fn utc_start(&self) -> NaiveDateTime {
        self.local_start - chrono::Duration::minutes(self.zone.1)
    }

    pub(crate) fn utc_end(&self) -> NaiveDateTime {
        self.utc_start() + chrono::Duration::minutes(self.minutes)
    }

    pub(crate) fn local_end(&self) -> NaiveDateTime {
        self.local_start + chrono::Duration::minutes(self.minutes)
    }

    /// `2026-11-26T10:00:00+01:00`
    pub(crate) fn local_rfc3339(&self, t: NaiveDateTime) -> String {
        let off = self.zone.1;
        let sign = if off < 0 { '-' } else { '+' };
        format!(
            "{}{sign}{:02}:{:02}",
            t.format("%Y-%m-%dT%H:%M:%S"),
            off.abs() / 60,
            off.abs() % 60
        )
    }
}

pub(crate) fn pick_weighted(rng: &mut StdRng, items: &[(Defect, u32)]) -> Defect {
    let total: u32 = items.iter().map(|(_, w)| w).sum();
    let mut x = rng.random_range(0..total.max(1));
    for &(d, w) in items {
        if x < w {
            return d;
        }
        x -= w;
    }
    Defect::MissingField
}

/// A random element of a non-empty slice.
pub(crate) fn pick<T: Copy>(rng: &mut StdRng, items: &[T]) -> T {
    items[rng.random_range(0..items.len())]
}

pub(crate) fn random_chars(rng: &mut StdRng, n: usize, alphabet: &[u8]) -> String {
    (0..n)
        .map(|_| char::from(alphabet[rng.random_range(0..alphabet.len())]))
        .collect()
}
