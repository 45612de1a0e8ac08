//! Freeze windows: when starting deployments is refused. One-off (`startsAt..endsAt`) or
//! recurring (a 5-field cron read as wall-clock times in an IANA zone, and a duration in
//! elapsed minutes). Pure: the store reads the windows, this module decides.

use chrono::{Duration, LocalResult, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;
use uuid::Uuid;

use super::validation::{Problems, ValidationErrors, MAX_NAME_CHARS, MAX_TEXT_CHARS};
use super::{Blocker, BlockerKind, DeploymentEvent, Refusal, Timestamp};

pub const MIN_DURATION_MINUTES: i32 = 1;
pub const MAX_DURATION_MINUTES: i32 = 10_080;
/// Windows not removed, at most.
pub const MAX_FREEZE_WINDOWS: u64 = 1_000;
pub const DEFAULT_TIME_ZONE: &str = "UTC";

/// A freeze window as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FreezeWindow {
    pub id: Uuid,
    /// None: every environment.
    pub environment: Option<String>,
    pub reason: String,
    pub starts_at: Option<Timestamp>,
    pub ends_at: Option<Timestamp>,
    pub cron: Option<String>,
    pub duration_minutes: Option<i32>,
    pub time_zone: String,
    pub created_by: String,
    pub created_at: Timestamp,
    pub removed_by: Option<String>,
    pub removed_at: Option<Timestamp>,
    pub removal_note: Option<String>,
}

/// One period of a window: `[starts_at, ends_at)`, and whether it is in force at the
/// instant asked about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FreezePeriod {
    pub starts_at: Timestamp,
    pub ends_at: Timestamp,
    pub active: bool,
}

/// A freeze window as a client asked for it, nothing checked yet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FreezeWindowRequest {
    pub environment: Option<String>,
    pub reason: String,
    pub actor: String,
    pub starts_at: Option<Timestamp>,
    pub ends_at: Option<Timestamp>,
    pub cron: Option<String>,
    pub duration_minutes: Option<i32>,
    pub time_zone: Option<String>,
}

/// A request that passed every rule; strings trimmed. Built by [`NewFreezeWindow::validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewFreezeWindow {
    pub environment: Option<String>,
    pub reason: String,
    pub actor: String,
    pub starts_at: Option<Timestamp>,
    pub ends_at: Option<Timestamp>,
    pub cron: Option<String>,
    pub duration_minutes: Option<i32>,
    pub time_zone: String,
}

/// Why a start is refused by a freeze: the window whose period in force ends last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frozen {
    pub window_id: Uuid,
    pub until: Timestamp,
}

/// Parses a 5-field cron expression (minute hour day-of-month month day-of-week), with
/// ranges, lists, steps and names. Six fields, nicknames or anything croner refuses: Err.
pub fn parse_cron(expr: &str) -> Result<Cron, String> {
    let expr = expr.trim();
    let fields = expr.split_whitespace().count();
    if fields != 5 {
        return Err(format!(
            "must have 5 fields (minute hour day-of-month month day-of-week), not {fields}"
        ));
    }
    let cron = CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
        .parse(expr)
        .map_err(|e| format!("is not a valid cron expression: {e}"))?;
    // A pattern that can never match (30 February) is refused too.
    let probe = Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).unwrap();
    if cron.find_next_occurrence(&probe, true).is_err() {
        return Err("never matches".to_owned());
    }
    Ok(cron)
}

/// Parses an IANA time zone name.
pub fn parse_time_zone(name: &str) -> Result<Tz, String> {
    name.trim()
        .parse::<Tz>()
        .map_err(|_| format!("'{}' is not a known IANA time zone", name.trim()))
}

impl NewFreezeWindow {
    /// Every rule at once: names and reason as for deployments; exactly one form; the
    /// one-off's order; the cron, duration and zone of a recurring window.
    pub fn validate(request: &FreezeWindowRequest) -> Result<Self, ValidationErrors> {
        let mut p = Problems::default();
        let environment = request
            .environment
            .as_deref()
            .map(|e| p.line("environment", e, MAX_NAME_CHARS));
        let reason = p.text("reason", Some(&request.reason), MAX_TEXT_CHARS);
        if reason.is_none() {
            p.add("reason", "must not be blank");
        }
        let actor = p.line("actor", &request.actor, MAX_NAME_CHARS);

        let one_off = request.starts_at.is_some() || request.ends_at.is_some();
        let recurring = request.cron.is_some() || request.duration_minutes.is_some();
        if one_off && recurring {
            let msg = "give either startsAt and endsAt, or cron and durationMinutes, not both";
            for (field, given) in [
                ("startsAt", request.starts_at.is_some()),
                ("endsAt", request.ends_at.is_some()),
                ("cron", request.cron.is_some()),
                ("durationMinutes", request.duration_minutes.is_some()),
            ] {
                if given {
                    p.add(field, msg);
                }
            }
        } else if !one_off && !recurring {
            p.add(
                "startsAt",
                "give either startsAt and endsAt, or cron and durationMinutes",
            );
        }
        if one_off {
            match (request.starts_at, request.ends_at) {
                (Some(s), Some(e)) if e <= s => p.add("endsAt", "must be after startsAt"),
                (None, _) => p.add("startsAt", "is required with endsAt"),
                (_, None) => p.add("endsAt", "is required with startsAt"),
                _ => {}
            }
        }
        let mut cron = None;
        if recurring {
            match request.cron.as_deref() {
                None => p.add("cron", "is required with durationMinutes"),
                Some(c) => match parse_cron(c) {
                    Ok(_) => cron = Some(c.split_whitespace().collect::<Vec<_>>().join(" ")),
                    Err(m) => p.add("cron", m),
                },
            }
            match request.duration_minutes {
                None => p.add("durationMinutes", "is required with cron"),
                Some(d) if !(MIN_DURATION_MINUTES..=MAX_DURATION_MINUTES).contains(&d) => p.add(
                    "durationMinutes",
                    format!("must be between {MIN_DURATION_MINUTES} and {MAX_DURATION_MINUTES}"),
                ),
                _ => {}
            }
        }
        let time_zone = match request.time_zone.as_deref() {
            None => DEFAULT_TIME_ZONE.to_owned(),
            Some(z) => match parse_time_zone(z) {
                Ok(tz) => tz.name().to_owned(),
                Err(m) => {
                    p.add("timeZone", m);
                    z.trim().to_owned()
                }
            },
        };
        p.finish(NewFreezeWindow {
            environment,
            reason: reason.unwrap_or_default(),
            actor,
            starts_at: request.starts_at.filter(|_| !recurring),
            ends_at: request.ends_at.filter(|_| !recurring),
            cron,
            duration_minutes: request.duration_minutes.filter(|_| !one_off),
            time_zone,
        })
    }

    pub fn into_window(self, id: Uuid, now: Timestamp) -> FreezeWindow {
        FreezeWindow {
            id,
            environment: self.environment,
            reason: self.reason,
            starts_at: self.starts_at,
            ends_at: self.ends_at,
            cron: self.cron,
            duration_minutes: self.duration_minutes,
            time_zone: self.time_zone,
            created_by: self.actor,
            created_at: now,
            removed_by: None,
            removed_at: None,
            removal_note: None,
        }
    }
}

/// A checked removal: who and why (a note is required).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FreezeRemoval {
    pub actor: String,
    pub note: String,
}

impl FreezeRemoval {
    pub fn validate(actor: &str, note: &str) -> Result<Self, ValidationErrors> {
        let mut p = Problems::default();
        let actor = p.line("actor", actor, MAX_NAME_CHARS);
        let note = p.text("note", Some(note), MAX_TEXT_CHARS);
        if note.is_none() {
            p.add("note", "is required to remove a freeze window");
        }
        p.finish(FreezeRemoval {
            actor,
            note: note.unwrap_or_default(),
        })
    }
}

/// Why removing a window is refused: it already was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("this freeze window was already removed")]
pub struct AlreadyRemoved;

impl FreezeWindow {
    /// Marks the window removed.
    pub fn remove(
        &self,
        removal: &FreezeRemoval,
        now: Timestamp,
    ) -> Result<FreezeWindow, AlreadyRemoved> {
        if self.removed_at.is_some() {
            return Err(AlreadyRemoved);
        }
        let mut next = self.clone();
        next.removed_by = Some(removal.actor.clone());
        next.removed_at = Some(now);
        next.removal_note = Some(removal.note.clone());
        Ok(next)
    }

    pub fn is_removed(&self) -> bool {
        self.removed_at.is_some()
    }

    /// Whether it applies to `environment` (a global window applies everywhere).
    pub fn covers(&self, environment: &str) -> bool {
        !self.is_removed()
            && self
                .environment
                .as_deref()
                .is_none_or(|e| e == environment.trim())
    }

    /// The period in force at `at` (of overlapping ones, the one that ends last), else
    /// the next to begin, else None. A removed window has none.
    pub fn period(&self, at: Timestamp) -> Option<FreezePeriod> {
        if self.is_removed() {
            return None;
        }
        if let (Some(s), Some(e)) = (self.starts_at, self.ends_at) {
            return if at < s {
                Some(FreezePeriod {
                    starts_at: s,
                    ends_at: e,
                    active: false,
                })
            } else if at < e {
                Some(FreezePeriod {
                    starts_at: s,
                    ends_at: e,
                    active: true,
                })
            } else {
                None
            };
        }
        let cron = parse_cron(self.cron.as_deref()?).ok()?;
        let tz = parse_time_zone(&self.time_zone).ok()?;
        let duration = Duration::minutes(i64::from(self.duration_minutes?));
        recurring_period(&cron, tz, duration, at)
    }
}

/// The wall-clock start times of `cron` from `from` (inclusive), as naive local times,
/// forwards or backwards.
fn naive_occurrences(
    cron: &Cron,
    from: NaiveDateTime,
    forward: bool,
) -> impl Iterator<Item = NaiveDateTime> + '_ {
    let mut next = Some((from.and_utc(), true));
    std::iter::from_fn(move || {
        let (t, inclusive) = next?;
        let found = if forward {
            cron.find_next_occurrence(&t, inclusive)
        } else {
            cron.find_previous_occurrence(&t, inclusive)
        };
        match found {
            Ok(found) => {
                next = Some((found, false));
                Some(found.naive_utc())
            }
            Err(_) => {
                next = None;
                None
            }
        }
    })
}

/// The instant a wall-clock start time in `tz` starts a period: none when the time is
/// skipped that day, the first occurrence when it is repeated.
fn start_instant(tz: Tz, local: NaiveDateTime) -> Option<Timestamp> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
        LocalResult::Ambiguous(first, second) => Some(first.min(second).with_timezone(&Utc)),
        LocalResult::None => None,
    }
}

fn recurring_period(
    cron: &Cron,
    tz: Tz,
    duration: Duration,
    at: Timestamp,
) -> Option<FreezePeriod> {
    // Wall-clock times map to instants in order (a repeated time maps to its first
    // occurrence), so the latest start at or before `at` is found walking back from `at`'s
    // wall-clock time, and the next start walking forward. A start a little later on the
    // wall clock than `at` can be earlier as an instant (the repeated hour); SLACK covers
    // every daylight-saving shift.
    const SLACK: Duration = Duration::hours(3);
    let local_at = at.with_timezone(&tz).naive_local();
    let latest = naive_occurrences(cron, local_at + SLACK, false)
        .filter_map(|local| start_instant(tz, local))
        .find(|start| *start <= at);
    if let Some(start) = latest {
        // Every period lasts as long: of those in force, the latest start ends last.
        if start + duration > at {
            return Some(FreezePeriod {
                starts_at: start,
                ends_at: start + duration,
                active: true,
            });
        }
    }
    naive_occurrences(cron, local_at - SLACK, true)
        .filter_map(|local| start_instant(tz, local))
        .find(|start| *start > at)
        .map(|start| FreezePeriod {
            starts_at: start,
            ends_at: start + duration,
            active: false,
        })
}

/// Of the periods in force at `at` of the windows covering `environment`, the one that
/// ends last (its window and end), or None when nothing is frozen.
pub fn frozen(windows: &[FreezeWindow], environment: &str, at: Timestamp) -> Option<Frozen> {
    windows
        .iter()
        .filter(|w| w.covers(environment))
        .filter_map(|w| {
            w.period(at).filter(|p| p.active).map(|p| Frozen {
                window_id: w.id,
                until: p.ends_at,
            })
        })
        .max_by_key(|f| f.until)
}

/// The active period of the windows covering `environment` at `at` that ends last, with its
/// window (what `Environment.activeFreeze` shows).
pub fn active_period<'a>(
    windows: &'a [FreezeWindow],
    environment: &str,
    at: Timestamp,
) -> Option<(&'a FreezeWindow, FreezePeriod)> {
    windows
        .iter()
        .filter(|w| w.covers(environment))
        .filter_map(|w| w.period(at).filter(|p| p.active).map(|p| (w, p)))
        .max_by_key(|(_, p)| p.ends_at)
}

/// The FROZEN guard of a start: with `override_freeze`, a freeze in force is recorded as
/// overridden (`Ok(true)`); without it, a freeze in force refuses the start. Nothing in
/// force: `Ok(false)`.
pub fn decide_freeze(
    windows: &[FreezeWindow],
    environment: &str,
    at: Timestamp,
    override_freeze: bool,
) -> Result<bool, Frozen> {
    match frozen(windows, environment, at) {
        None => Ok(false),
        Some(_) if override_freeze => Ok(true),
        Some(f) => Err(f),
    }
}

/// The FROZEN blocker of a start in `environment` at `at`, if a freeze is in force: the
/// window whose period in force ends last, and that end.
pub fn frozen_blocker(
    windows: &[FreezeWindow],
    environment: &str,
    at: Timestamp,
) -> Option<Blocker> {
    let f = frozen(windows, environment, at)?;
    let window = windows.iter().find(|w| w.id == f.window_id)?.clone();
    Some(Blocker {
        kind: BlockerKind::Frozen,
        message: format!(
            "frozen until {}: {}; start with overrideFreeze and a note to override",
            f.until.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            window.reason
        ),
        deployment: None,
        freeze_window: Some(window),
        until: Some(f.until),
    })
}

/// The FROZEN guard applied to a start's event (after ENVIRONMENT_BUSY and OUTDATED):
/// refused while a freeze covering its environment is in force at its time, unless
/// overridden, in which case the event lists FROZEN in its overrides.
pub fn guard_start(
    event: &mut DeploymentEvent,
    windows: &[FreezeWindow],
    override_freeze: bool,
) -> Result<(), Refusal> {
    if decide_freeze(
        windows,
        &event.environment,
        event.occurred_at,
        override_freeze,
    )? {
        event.overrides.push(BlockerKind::Frozen);
    }
    Ok(())
}

impl From<Frozen> for Refusal {
    fn from(f: Frozen) -> Self {
        Refusal::Frozen {
            window_id: f.window_id,
            until: f.until,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn recurring(cron: &str, minutes: i32, zone: &str) -> FreezeWindow {
        NewFreezeWindow::validate(&FreezeWindowRequest {
            environment: Some("production".into()),
            reason: "freeze".into(),
            actor: "carol".into(),
            cron: Some(cron.into()),
            duration_minutes: Some(minutes),
            time_zone: Some(zone.into()),
            ..Default::default()
        })
        .unwrap()
        .into_window(Uuid::nil(), t("2030-01-01T00:00:00Z"))
    }

    /// (cron, minutes, zone, at, expected (start, end, active) or None)
    #[allow(clippy::type_complexity)]
    const CASES: &[(&str, i32, &str, &str, Option<(&str, &str, bool)>)] = &[
        // New York, spring forward 2026-03-08: 02:00 EST -> 03:00 EDT. 02:30 does not exist
        // that day: no period that day; the next is on the 9th.
        (
            "30 2 * * *",
            60,
            "America/New_York",
            "2026-03-08T06:00:00Z",
            Some(("2026-03-09T06:30:00Z", "2026-03-09T07:30:00Z", false)),
        ),
        // The day before: 02:30 EST = 07:30Z, in force at 07:45Z.
        (
            "30 2 * * *",
            60,
            "America/New_York",
            "2026-03-07T07:45:00Z",
            Some(("2026-03-07T07:30:00Z", "2026-03-07T08:30:00Z", true)),
        ),
        // 01:30 exists on the change day (EST, 06:30Z); 60 elapsed minutes end at 07:30Z
        // (03:30 EDT on the wall clock).
        (
            "30 1 * * *",
            60,
            "America/New_York",
            "2026-03-08T07:00:00Z",
            Some(("2026-03-08T06:30:00Z", "2026-03-08T07:30:00Z", true)),
        ),
        // New York, fall back 2026-11-01: 01:30 occurs twice (EDT 05:30Z, EST 06:30Z): one
        // period at the first.
        (
            "30 1 * * *",
            30,
            "America/New_York",
            "2026-11-01T05:00:00Z",
            Some(("2026-11-01T05:30:00Z", "2026-11-01T06:00:00Z", false)),
        ),
        // At the second 01:30 (06:30Z) nothing is in force; the next is the 2nd (EST).
        (
            "30 1 * * *",
            30,
            "America/New_York",
            "2026-11-01T06:40:00Z",
            Some(("2026-11-02T06:30:00Z", "2026-11-02T07:00:00Z", false)),
        ),
        // Berlin, spring forward 2026-03-29: 02:00 CET -> 03:00 CEST; 02:15 skipped.
        (
            "15 2 * * *",
            120,
            "Europe/Berlin",
            "2026-03-29T00:30:00Z",
            Some(("2026-03-30T00:15:00Z", "2026-03-30T02:15:00Z", false)),
        ),
        (
            "15 2 * * *",
            120,
            "Europe/Berlin",
            "2026-03-28T02:00:00Z",
            Some(("2026-03-28T01:15:00Z", "2026-03-28T03:15:00Z", true)),
        ),
        // Berlin, fall back 2026-10-25: 02:15 twice (CEST 00:15Z, CET 01:15Z): the first.
        (
            "15 2 * * *",
            120,
            "Europe/Berlin",
            "2026-10-25T01:30:00Z",
            Some(("2026-10-25T00:15:00Z", "2026-10-25T02:15:00Z", true)),
        ),
        (
            "15 2 * * *",
            30,
            "Europe/Berlin",
            "2026-10-25T01:20:00Z",
            Some(("2026-10-26T01:15:00Z", "2026-10-26T01:45:00Z", false)),
        ),
        // A weekend in Berlin: Friday 18:00 for 62 hours, found on Sunday (looked back).
        (
            "0 18 * * FRI",
            3720,
            "Europe/Berlin",
            "2026-11-29T12:00:00Z",
            Some(("2026-11-27T17:00:00Z", "2026-11-30T07:00:00Z", true)),
        ),
        // Month end: the last day at 22:00 UTC (L), spanning midnight into the next month.
        (
            "0 22 L * *",
            240,
            "UTC",
            "2026-05-01T01:00:00Z",
            Some(("2026-04-30T22:00:00Z", "2026-05-01T02:00:00Z", true)),
        ),
        (
            "0 22 31 * *",
            60,
            "UTC",
            "2026-04-15T00:00:00Z",
            Some(("2026-05-31T22:00:00Z", "2026-05-31T23:00:00Z", false)),
        ),
        // Leap day: 29 February, next in 2028.
        (
            "0 0 29 FEB *",
            1440,
            "UTC",
            "2026-03-01T00:00:00Z",
            Some(("2028-02-29T00:00:00Z", "2028-03-01T00:00:00Z", false)),
        ),
        (
            "0 0 29 2 *",
            1440,
            "Europe/Berlin",
            "2028-02-29T12:00:00Z",
            Some(("2028-02-28T23:00:00Z", "2028-02-29T23:00:00Z", true)),
        ),
        // Spanning midnight: 23:00 New York for 3 hours, asked at 01:00 the next day.
        (
            "0 23 * * *",
            180,
            "America/New_York",
            "2026-07-02T05:00:00Z",
            Some(("2026-07-02T03:00:00Z", "2026-07-02T06:00:00Z", true)),
        ),
        // At the end instant, not in force (half-open); the next one is the next day.
        (
            "0 23 * * *",
            180,
            "America/New_York",
            "2026-07-02T06:00:00Z",
            Some(("2026-07-03T03:00:00Z", "2026-07-03T06:00:00Z", false)),
        ),
        // Steps, ranges, lists: every 15 minutes from 9 to 17, Monday to Friday.
        (
            "*/15 9-17 * * MON-FRI",
            5,
            "UTC",
            "2026-11-28T12:00:00Z",
            Some(("2026-11-30T09:00:00Z", "2026-11-30T09:05:00Z", false)),
        ),
        // A Berlin weekend across the fall-back change: 62 elapsed hours from Friday
        // 18:00 CEST end on Monday 07:00 CET (06:00Z), not 08:00.
        (
            "0 18 * * FRI",
            3720,
            "Europe/Berlin",
            "2026-10-26T05:30:00Z",
            Some(("2026-10-23T16:00:00Z", "2026-10-26T06:00:00Z", true)),
        ),
        // At the very start instant: in force.
        (
            "0 9 * * *",
            60,
            "UTC",
            "2026-06-01T09:00:00Z",
            Some(("2026-06-01T09:00:00Z", "2026-06-01T10:00:00Z", true)),
        ),
        // Every minute for a week: the latest start is the one in force. At 01:30 EST (the
        // repeated hour's second pass) the latest start is 01:59 EDT: no minute of the
        // repeated hour starts twice.
        (
            "* * * * *",
            10080,
            "America/New_York",
            "2026-11-01T06:30:30Z",
            Some(("2026-11-01T05:59:00Z", "2026-11-08T05:59:00Z", true)),
        ),
        (
            "* * * * *",
            10080,
            "America/New_York",
            "2026-11-01T07:00:30Z",
            Some(("2026-11-01T07:00:00Z", "2026-11-08T07:00:00Z", true)),
        ),
        // During New York's repeated hour, every 10 minutes from 1 to 2 o'clock: the
        // second 01:10 (06:10Z) starts nothing; the 01:10 in force is the first (05:10Z).
        (
            "*/10 1 * * *",
            10,
            "America/New_York",
            "2026-11-01T06:15:00Z",
            Some(("2026-11-02T06:00:00Z", "2026-11-02T06:10:00Z", false)),
        ),
        (
            "*/10 1 * * *",
            10,
            "America/New_York",
            "2026-11-01T05:15:00Z",
            Some(("2026-11-01T05:10:00Z", "2026-11-01T05:20:00Z", true)),
        ),
        // Overlapping periods (hourly, 2 hours): the one that ends last.
        (
            "0 * * * *",
            120,
            "UTC",
            "2026-01-01T10:30:00Z",
            Some(("2026-01-01T10:00:00Z", "2026-01-01T12:00:00Z", true)),
        ),
    ];

    #[test]
    fn recurring_periods_across_dst_month_ends_and_leap_days() {
        for (cron, minutes, zone, at, expected) in CASES {
            let w = recurring(cron, *minutes, zone);
            let got = w.period(t(at));
            let want = expected.map(|(s, e, active)| FreezePeriod {
                starts_at: t(s),
                ends_at: t(e),
                active,
            });
            assert_eq!(got, want, "{cron} {minutes} {zone} at {at}");
        }
    }

    #[test]
    fn one_off_periods() {
        let w = NewFreezeWindow::validate(&FreezeWindowRequest {
            reason: "year end".into(),
            actor: "carol".into(),
            starts_at: Some(t("2026-12-24T00:00:00Z")),
            ends_at: Some(t("2027-01-02T00:00:00Z")),
            ..Default::default()
        })
        .unwrap()
        .into_window(Uuid::nil(), t("2030-01-01T00:00:00Z"));
        assert!(!w.period(t("2026-12-01T00:00:00Z")).unwrap().active);
        assert!(w.period(t("2026-12-24T00:00:00Z")).unwrap().active);
        assert_eq!(w.period(t("2027-01-02T00:00:00Z")), None);
        assert!(w.covers("anything"));
        let removed = w
            .remove(
                &FreezeRemoval::validate("dave", "done").unwrap(),
                t("2026-12-25T00:00:00Z"),
            )
            .unwrap();
        assert_eq!(removed.period(t("2026-12-25T00:00:00Z")), None);
        assert!(!removed.covers("production"));
        assert_eq!(
            removed.remove(
                &FreezeRemoval::validate("dave", "x").unwrap(),
                t("2026-12-26T00:00:00Z")
            ),
            Err(AlreadyRemoved)
        );
    }

    #[test]
    fn every_problem_at_once() {
        let err = NewFreezeWindow::validate(&FreezeWindowRequest {
            environment: Some(" ".into()),
            reason: " ".into(),
            actor: "".into(),
            starts_at: Some(t("2026-12-24T00:00:00Z")),
            cron: Some("0 0 0 * * *".into()),
            duration_minutes: Some(0),
            time_zone: Some("Mars/Olympus".into()),
            ..Default::default()
        })
        .unwrap_err();
        let fields: Vec<_> = err.0.iter().map(|e| e.field.as_str()).collect();
        for f in [
            "environment",
            "reason",
            "actor",
            "startsAt",
            "cron",
            "durationMinutes",
            "timeZone",
        ] {
            assert!(fields.contains(&f), "{f} in {fields:?}");
        }
        let neither = NewFreezeWindow::validate(&FreezeWindowRequest {
            reason: "r".into(),
            actor: "a".into(),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(neither.0.len(), 1);
        let backwards = NewFreezeWindow::validate(&FreezeWindowRequest {
            reason: "r".into(),
            actor: "a".into(),
            starts_at: Some(t("2026-12-24T00:00:00Z")),
            ends_at: Some(t("2026-12-24T00:00:00Z")),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(backwards.0[0].field, "endsAt");
    }

    #[test]
    fn cron_syntax() {
        for ok in [
            "0 18 * * FRI",
            "*/5 1-3,7 1 JAN-MAR 1-5",
            "0 0 L * *",
            "0 0 29 2 *",
        ] {
            assert!(parse_cron(ok).is_ok(), "{ok}");
        }
        for bad in [
            "0 0 0 * * *",
            "* * * *",
            "@daily",
            "61 * * * *",
            "0 0 30 2 *",
            "x y z a b",
            "",
        ] {
            assert!(parse_cron(bad).is_err(), "{bad}");
        }
        assert!(parse_time_zone("Europe/Berlin").is_ok());
        assert!(parse_time_zone("Europe/Nowhere").is_err());
    }

    #[test]
    fn frozen_picks_the_period_ending_last_and_override() {
        let mut a = recurring("0 * * * *", 30, "UTC");
        a.id = Uuid::from_u128(1);
        a.environment = None;
        let mut b = recurring("0 10 * * *", 240, "UTC");
        b.id = Uuid::from_u128(2);
        let at = t("2026-01-01T10:10:00Z");
        let windows = vec![a.clone(), b.clone()];
        assert_eq!(
            frozen(&windows, "production", at),
            Some(Frozen {
                window_id: b.id,
                until: t("2026-01-01T14:00:00Z")
            })
        );
        // b covers production only; a (global) covers staging.
        assert_eq!(frozen(&windows, "staging", at).unwrap().window_id, a.id);
        assert_eq!(frozen(&windows, "staging", t("2026-01-01T10:40:00Z")), None);
        let blocker = frozen_blocker(&windows, "production", at).unwrap();
        assert_eq!(blocker.kind, BlockerKind::Frozen);
        assert_eq!(blocker.freeze_window.as_ref().map(|w| w.id), Some(b.id));
        assert_eq!(blocker.until, Some(t("2026-01-01T14:00:00Z")));
        assert!(blocker
            .message
            .starts_with("frozen until 2026-01-01T14:00:00.000Z: freeze"));
        assert_eq!(
            frozen_blocker(&windows, "staging", t("2026-01-01T10:40:00Z")),
            None
        );
        assert_eq!(decide_freeze(&windows, "production", at, true), Ok(true));
        assert!(decide_freeze(&windows, "production", at, false).is_err());
        assert_eq!(
            decide_freeze(&windows, "staging", t("2026-01-01T10:40:00Z"), false),
            Ok(false)
        );
    }
}
