//! When a script runs next: Graph's `runSchedule` of a `deviceHealthScriptAssignment`
//! (run-once, hourly, daily; UTC or the machine's local time zone) as pure functions of the
//! last run, the assignment time and "now" (`docs/agent-runs.md`, "Schedule").
//!
//! - hourly (and the default, every 24 hours): first at assignment, then `interval` hours
//!   after the last run — plain elapsed time, so DST changes nothing;
//! - daily: at `time` every `interval` days, on a grid of dates that starts at the first
//!   `time` on or after the assignment;
//! - run-once: at `date` + `time`, or as soon as possible when that was already past at
//!   assignment; never again once it has run.
//!
//! A local time in a spring-forward gap runs at the first valid instant after the gap (the
//! transition itself); a local time repeated by a fall-back runs once, at its first
//! occurrence. Runs missed while the machine was off collapse into one run.

use jiff::civil::{Date, DateTime, Time};
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::{SignedDuration, Span, Timestamp};
use serde_json::Value;

/// A parsed `runSchedule`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    /// `deviceHealthScriptRunOnceSchedule`: once, at `date` + `time` (a missing `time` is
    /// midnight; a missing `date` is the first `time` on or after the assignment; both
    /// missing: at assignment).
    RunOnce {
        date: Option<Date>,
        time: Option<Time>,
        utc: bool,
    },
    /// `deviceHealthScriptHourlySchedule`: every `interval` hours (1–23).
    Hourly { interval: u32 },
    /// `deviceHealthScriptDailySchedule`: every `interval` days (≥ 1) at `time` (midnight
    /// when Graph has none).
    Daily {
        interval: u32,
        time: Time,
        utc: bool,
    },
    /// No `runSchedule` (`null` or absent): every 24 hours, as Intune does.
    Default,
}

const PREFIX: &str = "microsoft.graph.";

/// Reads a `runSchedule` value as Graph serves it. `None` and JSON `null` are
/// [`Schedule::Default`]; a missing `interval` is 1, a missing `useUtc` false.
pub fn parse(run_schedule: Option<&Value>) -> Result<Schedule, String> {
    let value = match run_schedule {
        None | Some(Value::Null) => return Ok(Schedule::Default),
        Some(v) => v,
    };
    let Value::Object(map) = value else {
        return Err(format!("runSchedule must be an object, not {value}"));
    };
    let type_name = match map.get("@odata.type") {
        Some(Value::String(t)) => t.trim_start_matches('#'),
        _ => return Err("runSchedule has no '@odata.type'".to_owned()),
    };
    let type_name = type_name.strip_prefix(PREFIX).unwrap_or(type_name);
    let interval = match map.get("interval") {
        None | Some(Value::Null) => 1,
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(|| format!("runSchedule.interval {n} is not a positive integer"))?,
        Some(other) => return Err(format!("runSchedule.interval {other} is not an integer")),
    };
    let time = match map.get("time") {
        None | Some(Value::Null) => None,
        Some(Value::String(t)) => Some(
            t.parse::<Time>()
                .map_err(|e| format!("runSchedule.time '{t}' is not a time of day: {e}"))?,
        ),
        Some(other) => return Err(format!("runSchedule.time {other} is not a string")),
    };
    let utc = match map.get("useUtc") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => return Err(format!("runSchedule.useUtc {other} is not a boolean")),
    };
    match type_name {
        "deviceHealthScriptRunOnceSchedule" => {
            let date = match map.get("date") {
                None | Some(Value::Null) => None,
                Some(Value::String(d)) => Some(
                    d.parse::<Date>()
                        .map_err(|e| format!("runSchedule.date '{d}' is not a date: {e}"))?,
                ),
                Some(other) => return Err(format!("runSchedule.date {other} is not a string")),
            };
            Ok(Schedule::RunOnce { date, time, utc })
        }
        "deviceHealthScriptHourlySchedule" if (1..=23).contains(&interval) => {
            Ok(Schedule::Hourly { interval })
        }
        "deviceHealthScriptHourlySchedule" => Err(format!(
            "runSchedule.interval is {interval}; an hourly schedule needs 1 to 23 hours"
        )),
        "deviceHealthScriptDailySchedule" if interval >= 1 => Ok(Schedule::Daily {
            interval,
            time: time.unwrap_or(Time::midnight()),
            utc,
        }),
        "deviceHealthScriptDailySchedule" => {
            Err("runSchedule.interval is 0; a daily schedule needs at least 1 day".to_owned())
        }
        other => Err(format!("runSchedule has the unknown type '{other}'")),
    }
}

/// The next time the script is due strictly after `last_run` (or, never run, the first due
/// time at or after `assigned`), in the zone `tz` for local schedules; `None` when it will
/// never run again (a run-once that has run).
///
/// `last_run` belongs to this assignment and schedule: the caller forgets it when either
/// changes (so that an edited run-once runs again).
pub fn next_due(
    s: &Schedule,
    last_run: Option<Timestamp>,
    assigned: Timestamp,
    tz: &TimeZone,
) -> Option<Timestamp> {
    match *s {
        Schedule::Default => every_hours(24, last_run, assigned),
        Schedule::Hourly { interval } => every_hours(interval, last_run, assigned),
        Schedule::Daily {
            interval,
            time,
            utc,
        } => daily(interval, time, last_run, assigned, zone(utc, tz)),
        Schedule::RunOnce { date, time, utc } => {
            if last_run.is_some() {
                return None;
            }
            let tz = zone(utc, tz);
            let at = match (date, time) {
                (Some(date), time) => {
                    resolve(tz, date.to_datetime(time.unwrap_or(Time::midnight())))?
                }
                (None, Some(time)) => first_at_or_after(tz, time, assigned)?.1,
                (None, None) => assigned,
            };
            Some(at.max(assigned))
        }
    }
}

/// Is it due now? Runs missed while the machine was off run once when it comes back: the
/// next due time is always the first slot after the last run, so however many slots were
/// missed, one run (which becomes the new `last_run`) catches up on all of them.
pub fn is_due(
    s: &Schedule,
    last_run: Option<Timestamp>,
    assigned: Timestamp,
    now: Timestamp,
    tz: &TimeZone,
) -> bool {
    next_due(s, last_run, assigned, tz).is_some_and(|due| due <= now)
}

static UTC: TimeZone = TimeZone::UTC;

fn zone(utc: bool, tz: &TimeZone) -> &TimeZone {
    if utc {
        &UTC
    } else {
        tz
    }
}

fn every_hours(hours: u32, last_run: Option<Timestamp>, assigned: Timestamp) -> Option<Timestamp> {
    match last_run {
        None => Some(assigned),
        Some(last) => last
            .checked_add(SignedDuration::from_hours(i64::from(hours)))
            .ok(),
    }
}

/// Daily slots: the dates `anchor + k·interval` (k ≥ 0) at `time`, where `anchor` is the
/// date of the first `time` at or after the assignment.
fn daily(
    interval: u32,
    time: Time,
    last_run: Option<Timestamp>,
    assigned: Timestamp,
    tz: &TimeZone,
) -> Option<Timestamp> {
    let (anchor, first) = first_at_or_after(tz, time, assigned)?;
    let Some(last) = last_run else {
        return Some(first);
    };
    if last < first {
        return Some(first);
    }
    let interval = i64::from(interval);
    let elapsed_days = anchor.duration_until(tz.to_datetime(last).date()).as_secs() / 86_400;
    // The slot on or before the last run's local date, then forward until strictly after it
    // (one or two steps; more only around a fold at midnight).
    let mut k = (elapsed_days / interval).max(0);
    loop {
        let date = anchor
            .checked_add(Span::new().try_days(k * interval).ok()?)
            .ok()?;
        let slot = resolve(tz, date.to_datetime(time))?;
        if slot > last {
            return Some(slot);
        }
        k += 1;
    }
}

/// The first instant at local `time` at or after `from`, with its local date.
fn first_at_or_after(tz: &TimeZone, time: Time, from: Timestamp) -> Option<(Date, Timestamp)> {
    let mut date = tz.to_datetime(from).date();
    loop {
        let at = resolve(tz, date.to_datetime(time))?;
        if at >= from {
            return Some((date, at));
        }
        date = date.tomorrow().ok()?;
    }
}

/// The instant of a local date and time: in a fold (fall-back) the first occurrence; in a
/// gap (spring-forward) the first valid instant after the gap, i.e. the transition.
fn resolve(tz: &TimeZone, dt: DateTime) -> Option<Timestamp> {
    let ambiguous = tz.to_ambiguous_timestamp(dt);
    match ambiguous.offset() {
        AmbiguousOffset::Gap { after, .. } => {
            // Read with the later offset, the local time is an instant before the gap; the
            // next transition from there is where the gap ends.
            let before_gap = after.to_timestamp(dt).ok()?;
            match tz.following(before_gap).next() {
                Some(transition) => Some(transition.timestamp()),
                None => ambiguous.compatible().ok(),
            }
        }
        _ => ambiguous.earlier().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn berlin() -> TimeZone {
        TimeZone::get("Europe/Berlin").unwrap()
    }

    fn new_york() -> TimeZone {
        TimeZone::get("America/New_York").unwrap()
    }

    fn t(s: &str) -> Time {
        s.parse().unwrap()
    }

    fn d(s: &str) -> Date {
        s.parse().unwrap()
    }

    #[test]
    fn parse_table() {
        let ok: &[(Option<Value>, Schedule)] = &[
            (None, Schedule::Default),
            (Some(Value::Null), Schedule::Default),
            (
                Some(
                    json!({"@odata.type":"#microsoft.graph.deviceHealthScriptRunOnceSchedule","interval":1,"time":"08:30:00.0000000","useUtc":false,"date":"2025-06-01"}),
                ),
                Schedule::RunOnce {
                    date: Some(d("2025-06-01")),
                    time: Some(t("08:30")),
                    utc: false,
                },
            ),
            (
                Some(
                    json!({"@odata.type":"#microsoft.graph.deviceHealthScriptRunOnceSchedule","time":null,"date":null,"useUtc":true}),
                ),
                Schedule::RunOnce {
                    date: None,
                    time: None,
                    utc: true,
                },
            ),
            (
                Some(
                    json!({"@odata.type":"#microsoft.graph.deviceHealthScriptHourlySchedule","interval":4}),
                ),
                Schedule::Hourly { interval: 4 },
            ),
            (
                Some(json!({"@odata.type":"microsoft.graph.deviceHealthScriptHourlySchedule"})),
                Schedule::Hourly { interval: 1 },
            ),
            (
                Some(
                    json!({"@odata.type":"#microsoft.graph.deviceHealthScriptDailySchedule","interval":2,"time":"20:00:00","useUtc":true}),
                ),
                Schedule::Daily {
                    interval: 2,
                    time: t("20:00"),
                    utc: true,
                },
            ),
            (
                Some(
                    json!({"@odata.type":"#microsoft.graph.deviceHealthScriptDailySchedule","interval":1,"time":"11:58:36.255"}),
                ),
                Schedule::Daily {
                    interval: 1,
                    time: t("11:58:36.255"),
                    utc: false,
                },
            ),
            (
                Some(
                    json!({"@odata.type":"#microsoft.graph.deviceHealthScriptDailySchedule","time":null}),
                ),
                Schedule::Daily {
                    interval: 1,
                    time: Time::midnight(),
                    utc: false,
                },
            ),
        ];
        for (value, want) in ok {
            assert_eq!(parse(value.as_ref()), Ok(*want), "{value:?}");
        }
        let bad = [
            json!(3),
            json!({}),
            json!({"@odata.type":"#microsoft.graph.deviceHealthScriptWeeklySchedule"}),
            json!({"@odata.type":"#microsoft.graph.deviceHealthScriptHourlySchedule","interval":0}),
            json!({"@odata.type":"#microsoft.graph.deviceHealthScriptHourlySchedule","interval":24}),
            json!({"@odata.type":"#microsoft.graph.deviceHealthScriptHourlySchedule","interval":-1}),
            json!({"@odata.type":"#microsoft.graph.deviceHealthScriptDailySchedule","interval":0}),
            json!({"@odata.type":"#microsoft.graph.deviceHealthScriptDailySchedule","interval":"1"}),
            json!({"@odata.type":"#microsoft.graph.deviceHealthScriptDailySchedule","time":"25:00:00"}),
            json!({"@odata.type":"#microsoft.graph.deviceHealthScriptDailySchedule","useUtc":"yes"}),
            json!({"@odata.type":"#microsoft.graph.deviceHealthScriptRunOnceSchedule","date":"2025-02-30"}),
        ];
        for value in bad {
            assert!(parse(Some(&value)).is_err(), "{value}");
        }
    }

    struct Case {
        name: &'static str,
        schedule: Schedule,
        tz: TimeZone,
        assigned: &'static str,
        last_run: Option<&'static str>,
        want: Option<&'static str>,
    }

    #[test]
    fn next_due_table() {
        let utc = TimeZone::UTC;
        let daily = |interval, time: &str, utc| Schedule::Daily {
            interval,
            time: t(time),
            utc,
        };
        let once = |date: Option<&str>, time: Option<&str>, utc| Schedule::RunOnce {
            date: date.map(d),
            time: time.map(t),
            utc,
        };
        let cases = [
            // Hourly and default: first at assignment, then elapsed hours after the last run.
            Case {
                name: "hourly first run at assignment",
                schedule: Schedule::Hourly { interval: 4 },
                tz: utc.clone(),
                assigned: "2025-06-01T10:17:00Z",
                last_run: None,
                want: Some("2025-06-01T10:17:00Z"),
            },
            Case {
                name: "hourly after a run",
                schedule: Schedule::Hourly { interval: 4 },
                tz: utc.clone(),
                assigned: "2025-06-01T10:17:00Z",
                last_run: Some("2025-06-01T11:00:00Z"),
                want: Some("2025-06-01T15:00:00Z"),
            },
            Case {
                name: "hourly across spring-forward is elapsed time",
                schedule: Schedule::Hourly { interval: 2 },
                tz: berlin(),
                assigned: "2025-03-29T00:00:00Z",
                last_run: Some("2025-03-30T00:30:00Z"),
                want: Some("2025-03-30T02:30:00Z"),
            },
            Case {
                name: "default is every 24 hours",
                schedule: Schedule::Default,
                tz: berlin(),
                assigned: "2025-03-29T09:00:00Z",
                last_run: Some("2025-03-29T09:00:00Z"),
                want: Some("2025-03-30T09:00:00Z"),
            },
            Case {
                name: "default first run at assignment",
                schedule: Schedule::Default,
                tz: berlin(),
                assigned: "2025-03-29T09:00:00Z",
                last_run: None,
                want: Some("2025-03-29T09:00:00Z"),
            },
            // Daily in UTC.
            Case {
                name: "daily utc, first time later the same day",
                schedule: daily(1, "08:30", true),
                tz: berlin(),
                assigned: "2025-06-01T07:00:00Z",
                last_run: None,
                want: Some("2025-06-01T08:30:00Z"),
            },
            Case {
                name: "daily utc, assigned exactly at the time",
                schedule: daily(1, "08:30", true),
                tz: berlin(),
                assigned: "2025-06-01T08:30:00Z",
                last_run: None,
                want: Some("2025-06-01T08:30:00Z"),
            },
            Case {
                name: "daily utc, assigned after the time: next day",
                schedule: daily(1, "08:30", true),
                tz: berlin(),
                assigned: "2025-06-01T09:00:00Z",
                last_run: None,
                want: Some("2025-06-02T08:30:00Z"),
            },
            Case {
                name: "daily utc, strictly after the last run",
                schedule: daily(1, "08:30", true),
                tz: utc.clone(),
                assigned: "2025-06-01T07:00:00Z",
                last_run: Some("2025-06-01T08:30:00Z"),
                want: Some("2025-06-02T08:30:00Z"),
            },
            Case {
                name: "daily every 3 days stays on the grid",
                schedule: daily(3, "08:30", true),
                tz: utc.clone(),
                assigned: "2025-06-01T07:00:00Z",
                last_run: Some("2025-06-01T08:30:00Z"),
                want: Some("2025-06-04T08:30:00Z"),
            },
            Case {
                name: "daily every 3 days, late catch-up run keeps the grid",
                schedule: daily(3, "08:30", true),
                tz: utc.clone(),
                assigned: "2025-06-01T07:00:00Z",
                last_run: Some("2025-06-05T12:00:00Z"),
                want: Some("2025-06-07T08:30:00Z"),
            },
            Case {
                name: "daily, a run long after several missed slots",
                schedule: daily(1, "08:30", true),
                tz: utc.clone(),
                assigned: "2025-06-01T07:00:00Z",
                last_run: Some("2025-06-09T10:00:00Z"),
                want: Some("2025-06-10T08:30:00Z"),
            },
            Case {
                name: "daily, last run before the assignment",
                schedule: daily(1, "08:30", true),
                tz: utc.clone(),
                assigned: "2025-06-01T09:00:00Z",
                last_run: Some("2025-05-01T08:30:00Z"),
                want: Some("2025-06-02T08:30:00Z"),
            },
            Case {
                name: "daily, midnight",
                schedule: daily(1, "00:00", true),
                tz: utc.clone(),
                assigned: "2025-12-31T23:59:00Z",
                last_run: None,
                want: Some("2026-01-01T00:00:00Z"),
            },
            // Daily in local time (Europe/Berlin: +01 in winter, +02 in summer).
            Case {
                name: "daily local summer",
                schedule: daily(1, "08:30", false),
                tz: berlin(),
                assigned: "2025-06-01T05:00:00Z",
                last_run: None,
                want: Some("2025-06-01T06:30:00Z"),
            },
            Case {
                name: "daily local across spring-forward keeps wall time",
                schedule: daily(1, "08:30", false),
                tz: berlin(),
                assigned: "2025-03-01T00:00:00Z",
                last_run: Some("2025-03-29T07:30:00Z"),
                want: Some("2025-03-30T06:30:00Z"),
            },
            Case {
                name: "daily local across fall-back keeps wall time",
                schedule: daily(1, "08:30", false),
                tz: berlin(),
                assigned: "2025-10-01T00:00:00Z",
                last_run: Some("2025-10-25T06:30:00Z"),
                want: Some("2025-10-26T07:30:00Z"),
            },
            Case {
                name: "daily local time in the spring-forward gap runs when the gap ends",
                schedule: daily(1, "02:30", false),
                tz: berlin(),
                assigned: "2025-03-01T00:00:00Z",
                last_run: Some("2025-03-29T01:30:00Z"),
                want: Some("2025-03-30T01:00:00Z"),
            },
            Case {
                name: "daily after the gap day, back to the wall time",
                schedule: daily(1, "02:30", false),
                tz: berlin(),
                assigned: "2025-03-01T00:00:00Z",
                last_run: Some("2025-03-30T01:00:00Z"),
                want: Some("2025-03-31T00:30:00Z"),
            },
            Case {
                name: "daily first run in the gap",
                schedule: daily(1, "02:30", false),
                tz: berlin(),
                assigned: "2025-03-29T23:00:00Z",
                last_run: None,
                want: Some("2025-03-30T01:00:00Z"),
            },
            Case {
                name: "daily repeated hour: first occurrence",
                schedule: daily(1, "02:30", false),
                tz: berlin(),
                assigned: "2025-10-01T00:00:00Z",
                last_run: Some("2025-10-25T00:30:00Z"),
                want: Some("2025-10-26T00:30:00Z"),
            },
            Case {
                name: "daily repeated hour runs once: not again at the second 02:30",
                schedule: daily(1, "02:30", false),
                tz: berlin(),
                assigned: "2025-10-01T00:00:00Z",
                last_run: Some("2025-10-26T00:30:00Z"),
                want: Some("2025-10-27T01:30:00Z"),
            },
            Case {
                name: "daily new york gap 02:15 → 03:00 EDT",
                schedule: daily(1, "02:15", false),
                tz: new_york(),
                assigned: "2025-03-01T00:00:00Z",
                last_run: Some("2025-03-08T07:15:00Z"),
                want: Some("2025-03-09T07:00:00Z"),
            },
            Case {
                name: "daily new york fold 01:30 first (EDT)",
                schedule: daily(1, "01:30", false),
                tz: new_york(),
                assigned: "2025-10-01T00:00:00Z",
                last_run: Some("2025-11-01T05:30:00Z"),
                want: Some("2025-11-02T05:30:00Z"),
            },
            Case {
                name: "daily new york fold runs once",
                schedule: daily(1, "01:30", false),
                tz: new_york(),
                assigned: "2025-10-01T00:00:00Z",
                last_run: Some("2025-11-02T05:30:00Z"),
                want: Some("2025-11-03T06:30:00Z"),
            },
            Case {
                name: "daily every 2 days local across DST",
                schedule: daily(2, "08:30", false),
                tz: berlin(),
                assigned: "2025-03-28T00:00:00Z",
                last_run: Some("2025-03-28T07:30:00Z"),
                want: Some("2025-03-30T06:30:00Z"),
            },
            // Run-once.
            Case {
                name: "run-once in the future",
                schedule: once(Some("2025-06-01"), Some("08:30"), false),
                tz: berlin(),
                assigned: "2025-05-01T00:00:00Z",
                last_run: None,
                want: Some("2025-06-01T06:30:00Z"),
            },
            Case {
                name: "run-once utc",
                schedule: once(Some("2025-06-01"), Some("08:30"), true),
                tz: berlin(),
                assigned: "2025-05-01T00:00:00Z",
                last_run: None,
                want: Some("2025-06-01T08:30:00Z"),
            },
            Case {
                name: "run-once already past at assignment: as soon as possible",
                schedule: once(Some("2025-06-01"), Some("08:30"), true),
                tz: utc.clone(),
                assigned: "2025-07-01T12:00:00Z",
                last_run: None,
                want: Some("2025-07-01T12:00:00Z"),
            },
            Case {
                name: "run-once that has run: never again",
                schedule: once(Some("2025-06-01"), Some("08:30"), true),
                tz: utc.clone(),
                assigned: "2025-05-01T00:00:00Z",
                last_run: Some("2025-06-01T08:30:00Z"),
                want: None,
            },
            Case {
                name: "run-once in the gap",
                schedule: once(Some("2025-03-30"), Some("02:30"), false),
                tz: berlin(),
                assigned: "2025-03-01T00:00:00Z",
                last_run: None,
                want: Some("2025-03-30T01:00:00Z"),
            },
            Case {
                name: "run-once in the fold: first occurrence",
                schedule: once(Some("2025-10-26"), Some("02:30"), false),
                tz: berlin(),
                assigned: "2025-03-01T00:00:00Z",
                last_run: None,
                want: Some("2025-10-26T00:30:00Z"),
            },
            Case {
                name: "run-once without time: midnight",
                schedule: once(Some("2025-06-01"), None, true),
                tz: utc.clone(),
                assigned: "2025-05-01T00:00:00Z",
                last_run: None,
                want: Some("2025-06-01T00:00:00Z"),
            },
            Case {
                name: "run-once without date: next time of day",
                schedule: once(None, Some("08:30"), true),
                tz: utc.clone(),
                assigned: "2025-05-01T09:00:00Z",
                last_run: None,
                want: Some("2025-05-02T08:30:00Z"),
            },
            Case {
                name: "run-once without date and time: at assignment",
                schedule: once(None, None, false),
                tz: berlin(),
                assigned: "2025-05-01T09:00:00Z",
                last_run: None,
                want: Some("2025-05-01T09:00:00Z"),
            },
        ];
        for case in cases {
            let got = next_due(
                &case.schedule,
                case.last_run.map(ts),
                ts(case.assigned),
                &case.tz,
            );
            assert_eq!(got, case.want.map(ts), "{}", case.name);
        }
    }

    #[test]
    fn is_due_table() {
        let utc = TimeZone::UTC;
        let daily = Schedule::Daily {
            interval: 1,
            time: t("08:30"),
            utc: false,
        };
        let once = Schedule::RunOnce {
            date: Some(d("2025-06-01")),
            time: Some(t("08:30")),
            utc: true,
        };
        /// (name, schedule, tz, assigned, last_run, now, want)
        type Row = (
            &'static str,
            Schedule,
            TimeZone,
            &'static str,
            Option<&'static str>,
            &'static str,
            bool,
        );
        let cases: [Row; 14] = [
            (
                "hourly never run",
                Schedule::Hourly { interval: 1 },
                utc.clone(),
                "2025-06-01T10:00:00Z",
                None,
                "2025-06-01T10:00:00Z",
                true,
            ),
            (
                "hourly before the assignment",
                Schedule::Hourly { interval: 1 },
                utc.clone(),
                "2025-06-01T10:00:00Z",
                None,
                "2025-06-01T09:59:59Z",
                false,
            ),
            (
                "hourly not yet",
                Schedule::Hourly { interval: 1 },
                utc.clone(),
                "2025-06-01T10:00:00Z",
                Some("2025-06-01T10:00:00Z"),
                "2025-06-01T10:59:59Z",
                false,
            ),
            (
                "hourly exactly due",
                Schedule::Hourly { interval: 1 },
                utc.clone(),
                "2025-06-01T10:00:00Z",
                Some("2025-06-01T10:00:00Z"),
                "2025-06-01T11:00:00Z",
                true,
            ),
            (
                "hourly, off for three days: due",
                Schedule::Hourly { interval: 1 },
                utc.clone(),
                "2025-06-01T10:00:00Z",
                Some("2025-06-01T10:00:00Z"),
                "2025-06-04T10:00:00Z",
                true,
            ),
            (
                "hourly, after the catch-up run: not due again",
                Schedule::Hourly { interval: 1 },
                utc.clone(),
                "2025-06-01T10:00:00Z",
                Some("2025-06-04T10:00:00Z"),
                "2025-06-04T10:00:01Z",
                false,
            ),
            (
                "daily, off for a week: due once",
                daily,
                berlin(),
                "2025-06-01T00:00:00Z",
                Some("2025-06-01T06:30:00Z"),
                "2025-06-08T12:00:00Z",
                true,
            ),
            (
                "daily, after the catch-up run: not due until the next slot",
                daily,
                berlin(),
                "2025-06-01T00:00:00Z",
                Some("2025-06-08T12:00:00Z"),
                "2025-06-09T06:29:59Z",
                false,
            ),
            (
                "daily, next slot after the catch-up",
                daily,
                berlin(),
                "2025-06-01T00:00:00Z",
                Some("2025-06-08T12:00:00Z"),
                "2025-06-09T06:30:00Z",
                true,
            ),
            (
                "daily repeated hour: not at the second occurrence",
                Schedule::Daily {
                    interval: 1,
                    time: t("02:30"),
                    utc: false,
                },
                berlin(),
                "2025-10-01T00:00:00Z",
                Some("2025-10-26T00:30:00Z"),
                "2025-10-26T01:30:00Z",
                false,
            ),
            (
                "run-once before its time",
                once,
                utc.clone(),
                "2025-05-01T00:00:00Z",
                None,
                "2025-06-01T08:29:59Z",
                false,
            ),
            (
                "run-once at its time",
                once,
                utc.clone(),
                "2025-05-01T00:00:00Z",
                None,
                "2025-06-01T08:30:00Z",
                true,
            ),
            (
                "run-once, machine was off: due when back",
                once,
                utc.clone(),
                "2025-05-01T00:00:00Z",
                None,
                "2025-09-01T00:00:00Z",
                true,
            ),
            (
                "run-once that has run",
                once,
                utc.clone(),
                "2025-05-01T00:00:00Z",
                Some("2025-06-01T08:30:00Z"),
                "2026-01-01T00:00:00Z",
                false,
            ),
        ];
        for (name, schedule, tz, assigned, last_run, now, want) in cases {
            let got = is_due(&schedule, last_run.map(ts), ts(assigned), ts(now), &tz);
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn missed_slots_collapse_into_one_run() {
        // A daily script on a machine that was off for ten days: simulate the agent loop
        // checking every 10 minutes from the moment it is back.
        let s = Schedule::Daily {
            interval: 1,
            time: t("08:30"),
            utc: true,
        };
        let assigned = ts("2025-06-01T00:00:00Z");
        let mut last = Some(ts("2025-06-01T08:30:00Z"));
        let mut now = ts("2025-06-11T12:00:00Z");
        let mut runs = vec![];
        while now < ts("2025-06-13T00:00:00Z") {
            if is_due(&s, last, assigned, now, &TimeZone::UTC) {
                runs.push(now);
                last = Some(now);
            }
            now = now.checked_add(SignedDuration::from_mins(10)).unwrap();
        }
        assert_eq!(
            runs,
            [ts("2025-06-11T12:00:00Z"), ts("2025-06-12T08:30:00Z")]
        );
    }
}
