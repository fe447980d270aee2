//! Graph's export jobs (`deviceManagement/reports/exportJobs`, `docs/exports.md`): the
//! `deviceManagementExportJob` entity and its enums (model data, like `crate::model`), the two
//! reports remediate exports with their columns in a fixed order, the small filter grammar of an
//! export job (`PolicyId eq '…' and DetectionStatus eq 2`), `select`, the rules of a new job, the
//! changes a job's runner makes, and one exported row with the value of each column.
//!
//! Nothing here writes CSV or JSON or reads the database: storage fills [`ExportRow`]s page by
//! page (`store::exports`), the API's runner writes them (`api::exports`).

use std::borrow::Cow;

use crate::model::{
    limited, not_filterable, prop, read_only, DefaultValue as D, EntityType, EnumType, Kind as K,
    JOIN_TYPE, REMEDIATION_STATE, RUN_STATE,
};
use crate::ops::RuleError;
use crate::time::Instant;
use crate::write::Write;
use crate::{new_id, Record, Value};

pub static REPORT_STATUS: EnumType = EnumType {
    name: "deviceManagementReportStatus",
    members: &[
        ("unknown", 0),
        ("notStarted", 1),
        ("inProgress", 2),
        ("completed", 3),
        ("failed", 4),
    ],
};

pub static REPORT_FILE_FORMAT: EnumType = EnumType {
    name: "deviceManagementReportFileFormat",
    members: &[
        ("csv", 0),
        ("pdf", 1),
        ("json", 2),
        ("unknownFutureValue", 3),
    ],
};

pub static EXPORT_LOCALIZATION_TYPE: EnumType = EnumType {
    name: "deviceManagementExportJobLocalizationType",
    members: &[
        ("localizedValuesAsAdditionalColumn", 0),
        ("replaceLocalizableValues", 1),
    ],
};

/// Member values of `deviceManagementReportStatus`.
pub mod status {
    pub const NOT_STARTED: i64 = 1;
    pub const IN_PROGRESS: i64 = 2;
    pub const COMPLETED: i64 = 3;
    pub const FAILED: i64 = 4;
}

/// `deviceManagementExportJob` (`/deviceManagement/reports/exportJobs`), Graph's properties in
/// the order of its resource page (`search`, beta only, is not served).
pub static EXPORT_JOB: EntityType = EntityType {
    name: "deviceManagementExportJob",
    table: "export_jobs",
    accepted_types: &[],
    links: &[],
    navigations: &[],
    shared_builtins: false,
    properties: &[
        read_only(prop("id", K::String, false, D::Server)),
        limited(prop("reportName", K::String, false, D::Null), 2000),
        not_filterable(limited(prop("filter", K::String, true, D::Null), 2000)),
        not_filterable(limited(
            prop("select", K::StringCollection, true, D::StrList(&[])),
            1000,
        )),
        prop(
            "format",
            K::Enum(&REPORT_FILE_FORMAT),
            false,
            D::Enum("csv"),
        ),
        not_filterable(limited(prop("snapshotId", K::String, true, D::Null), 128)),
        prop(
            "localizationType",
            K::Enum(&EXPORT_LOCALIZATION_TYPE),
            false,
            D::Enum("localizedValuesAsAdditionalColumn"),
        ),
        read_only(prop(
            "status",
            K::Enum(&REPORT_STATUS),
            false,
            D::Enum("notStarted"),
        )),
        not_filterable(read_only(prop("url", K::String, true, D::Null))),
        read_only(prop("requestDateTime", K::DateTimeOffset, false, D::Server)),
        read_only(prop(
            "expirationDateTime",
            K::DateTimeOffset,
            false,
            D::MinDate,
        )),
    ],
};

/// Most names `select` may hold (Graph: "up to 256").
pub const MAX_SELECT: usize = 256;

/// How long the download link of a finished job is valid (Graph's links expire ~6 h after the
/// request).
pub const LINK_LIFETIME_SECS: i64 = 6 * 3600;

/// The reports remediate exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    /// One script's device status: one row per run state (`PolicyId` required in the filter).
    DeviceRunStates,
    /// Every script of the tenant: one row per (script, run state), no filter required.
    PolicyRunStates,
}

impl Report {
    pub const ALL: [Report; 2] = [Report::DeviceRunStates, Report::PolicyRunStates];

    pub fn name(self) -> &'static str {
        match self {
            Report::DeviceRunStates => "DeviceRunStatesByProactiveRemediation",
            Report::PolicyRunStates => "PolicyRunStatesByProactiveRemediation",
        }
    }

    /// The report named `name` (case-insensitive, as report names are matched by the service).
    pub fn parse(name: &str) -> Option<Report> {
        Report::ALL
            .into_iter()
            .find(|r| r.name().eq_ignore_ascii_case(name.trim()))
    }

    /// Every column, in the order an export without `select` writes them (`docs/exports.md`):
    /// the 20 columns of the 2021 documentation in its order, then the 9 added since, in
    /// alphabetical order. The policy report names its script column `PolicyName`.
    pub fn columns(self) -> &'static [Column] {
        use Column as C;
        const DEVICE: [Column; 29] = [
            C::PolicyId,
            C::DeviceId,
            C::UserId,
            C::InternalVersion,
            C::ModifiedTime,
            C::PostRemediationDetectionScriptError,
            C::PostRemediationDetectionScriptOutput,
            C::PreRemediationDetectionScriptError,
            C::PreRemediationDetectionScriptOutput,
            C::RemediationScriptErrorDetails,
            C::RemediationStatus,
            C::DeviceName,
            C::OSVersion,
            C::UPN,
            C::UserEmail,
            C::UserName,
            C::DetectionStatus,
            C::UniqueKustoKey,
            C::DetectionScriptStatus,
            C::RemediationScriptStatus,
            C::DisplayName,
            C::FilterIdsCSV,
            C::JoinType,
            C::LastAgentUpdateTime,
            C::Model,
            C::NextExecutionDateTime,
            C::OSDescription,
            C::PrimaryUser,
            C::RemediationScriptOutputDetails,
        ];
        const POLICY: [Column; 29] = {
            let mut columns = DEVICE;
            columns[20] = C::PolicyName;
            columns
        };
        match self {
            Report::DeviceRunStates => &DEVICE,
            Report::PolicyRunStates => &POLICY,
        }
    }
}

/// A column of the reports (names as Intune's report documentation writes them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Column {
    PolicyId,
    DeviceId,
    UserId,
    InternalVersion,
    ModifiedTime,
    PostRemediationDetectionScriptError,
    PostRemediationDetectionScriptOutput,
    PreRemediationDetectionScriptError,
    PreRemediationDetectionScriptOutput,
    RemediationScriptErrorDetails,
    RemediationStatus,
    DeviceName,
    OSVersion,
    UPN,
    UserEmail,
    UserName,
    DetectionStatus,
    UniqueKustoKey,
    DetectionScriptStatus,
    RemediationScriptStatus,
    DisplayName,
    PolicyName,
    FilterIdsCSV,
    JoinType,
    LastAgentUpdateTime,
    Model,
    NextExecutionDateTime,
    OSDescription,
    PrimaryUser,
    RemediationScriptOutputDetails,
}

/// The type of a column's values (the `json` format's schema).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    String,
    Int32,
    DateTime,
}

impl Column {
    pub fn name(self) -> &'static str {
        match self {
            Column::PolicyId => "PolicyId",
            Column::DeviceId => "DeviceId",
            Column::UserId => "UserId",
            Column::InternalVersion => "InternalVersion",
            Column::ModifiedTime => "ModifiedTime",
            Column::PostRemediationDetectionScriptError => "PostRemediationDetectionScriptError",
            Column::PostRemediationDetectionScriptOutput => "PostRemediationDetectionScriptOutput",
            Column::PreRemediationDetectionScriptError => "PreRemediationDetectionScriptError",
            Column::PreRemediationDetectionScriptOutput => "PreRemediationDetectionScriptOutput",
            Column::RemediationScriptErrorDetails => "RemediationScriptErrorDetails",
            Column::RemediationStatus => "RemediationStatus",
            Column::DeviceName => "DeviceName",
            Column::OSVersion => "OSVersion",
            Column::UPN => "UPN",
            Column::UserEmail => "UserEmail",
            Column::UserName => "UserName",
            Column::DetectionStatus => "DetectionStatus",
            Column::UniqueKustoKey => "UniqueKustoKey",
            Column::DetectionScriptStatus => "DetectionScriptStatus",
            Column::RemediationScriptStatus => "RemediationScriptStatus",
            Column::DisplayName => "DisplayName",
            Column::PolicyName => "PolicyName",
            Column::FilterIdsCSV => "FilterIdsCSV",
            Column::JoinType => "JoinType",
            Column::LastAgentUpdateTime => "LastAgentUpdateTime",
            Column::Model => "Model",
            Column::NextExecutionDateTime => "NextExecutionDateTime",
            Column::OSDescription => "OSDescription",
            Column::PrimaryUser => "PrimaryUser",
            Column::RemediationScriptOutputDetails => "RemediationScriptOutputDetails",
        }
    }

    /// The type of the column's values under `localization`: the two status columns are numeric
    /// codes unless the localizable values are replaced by their text.
    pub fn value_type(self, localization: Localization) -> ColumnType {
        match self {
            Column::DetectionStatus | Column::RemediationStatus => match localization {
                Localization::AdditionalColumn => ColumnType::Int32,
                Localization::Replace => ColumnType::String,
            },
            Column::ModifiedTime | Column::LastAgentUpdateTime | Column::NextExecutionDateTime => {
                ColumnType::DateTime
            }
            _ => ColumnType::String,
        }
    }
}

/// `localizationType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Localization {
    /// `localizedValuesAsAdditionalColumn` (the default): status columns hold numeric codes; their
    /// text is in `DetectionScriptStatus` / `RemediationScriptStatus`.
    AdditionalColumn,
    /// `replaceLocalizableValues`: the status columns hold the text too.
    Replace,
}

/// The file format of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Json,
}

impl Format {
    pub fn extension(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Json => "json",
        }
    }
}

/// The text of a detection state (`runState` member value), as the portal words it.
pub fn detection_text(state: i64) -> &'static str {
    match state {
        1 => "Without issues",
        2 => "With issues",
        3 => "Failed",
        4 => "Pending",
        5 => "Not applicable",
        _ => "Unknown",
    }
}

/// The text of a remediation state (`remediationState` member value), as the portal words it.
pub fn remediation_text(state: i64) -> &'static str {
    match state {
        1 => "Not run",
        2 => "Issue fixed",
        3 => "Failed",
        4 => "Error",
        _ => "Unknown",
    }
}

/// One exported row: a run state with its script and its device (what storage reads per row).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportRow {
    pub policy_id: String,
    pub policy_name: Option<String>,
    pub policy_version: Option<String>,
    /// The run state's id (`{scriptId}:{deviceId}`), unique in the tenant.
    pub state_id: String,
    pub device_id: Option<String>,
    /// `runState` member value.
    pub detection: i64,
    /// `remediationState` member value.
    pub remediation: i64,
    pub modified: Option<Instant>,
    pub next_execution: Option<Instant>,
    pub last_sync: Option<Instant>,
    pub pre_output: Option<String>,
    pub pre_error: Option<String>,
    pub remediation_error: Option<String>,
    pub post_output: Option<String>,
    pub post_error: Option<String>,
    /// `assignmentFilterIds` as stored (a JSON array of strings).
    pub filter_ids: Option<String>,
    pub user_id: Option<String>,
    pub device_name: Option<String>,
    pub os_version: Option<String>,
    pub upn: Option<String>,
    pub email: Option<String>,
    pub user_name: Option<String>,
    pub model: Option<String>,
    pub os: Option<String>,
    /// `joinType` member value.
    pub join_type: Option<i64>,
}

/// The value of one cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field<'a> {
    /// No value (an empty CSV field, JSON `null`).
    Empty,
    Text(Cow<'a, str>),
    Int(i64),
    Time(Instant),
}

impl ExportRow {
    /// Rough size in bytes (to size pages by bytes, not only rows).
    pub fn weight(&self) -> usize {
        let len = |s: &Option<String>| s.as_ref().map_or(0, String::len);
        200 + self.policy_id.len()
            + self.state_id.len()
            + len(&self.policy_name)
            + len(&self.pre_output)
            + len(&self.pre_error)
            + len(&self.remediation_error)
            + len(&self.post_output)
            + len(&self.post_error)
            + len(&self.filter_ids)
            + len(&self.device_name)
            + len(&self.upn)
    }

    /// The value of `column` in this row.
    pub fn field(&self, column: Column, localization: Localization) -> Field<'_> {
        fn text(s: &Option<String>) -> Field<'_> {
            match s {
                Some(s) => Field::Text(Cow::Borrowed(s)),
                None => Field::Empty,
            }
        }
        fn time(t: Option<Instant>) -> Field<'static> {
            t.map_or(Field::Empty, Field::Time)
        }
        match column {
            Column::PolicyId => Field::Text(Cow::Borrowed(&self.policy_id)),
            Column::DeviceId => text(&self.device_id),
            Column::UserId => text(&self.user_id),
            Column::InternalVersion => text(&self.policy_version),
            Column::ModifiedTime => time(self.modified),
            Column::PostRemediationDetectionScriptError => text(&self.post_error),
            Column::PostRemediationDetectionScriptOutput => text(&self.post_output),
            Column::PreRemediationDetectionScriptError => text(&self.pre_error),
            Column::PreRemediationDetectionScriptOutput => text(&self.pre_output),
            Column::RemediationScriptErrorDetails => text(&self.remediation_error),
            Column::RemediationStatus => match localization {
                Localization::AdditionalColumn => Field::Int(self.remediation),
                Localization::Replace => {
                    Field::Text(Cow::Borrowed(remediation_text(self.remediation)))
                }
            },
            Column::DeviceName => text(&self.device_name),
            Column::OSVersion => text(&self.os_version),
            Column::UPN | Column::PrimaryUser => text(&self.upn),
            Column::UserEmail => text(&self.email),
            Column::UserName => text(&self.user_name),
            Column::DetectionStatus => match localization {
                Localization::AdditionalColumn => Field::Int(self.detection),
                Localization::Replace => Field::Text(Cow::Borrowed(detection_text(self.detection))),
            },
            Column::UniqueKustoKey => Field::Text(Cow::Borrowed(&self.state_id)),
            Column::DetectionScriptStatus => {
                Field::Text(Cow::Borrowed(detection_text(self.detection)))
            }
            Column::RemediationScriptStatus => {
                Field::Text(Cow::Borrowed(remediation_text(self.remediation)))
            }
            Column::DisplayName | Column::PolicyName => text(&self.policy_name),
            Column::FilterIdsCSV => match self.filter_ids.as_deref() {
                None | Some("") | Some("[]") => Field::Empty,
                Some(json) => match serde_json::from_str::<Vec<String>>(json) {
                    Ok(ids) => Field::Text(Cow::Owned(ids.join(","))),
                    Err(_) => Field::Text(Cow::Borrowed(json)),
                },
            },
            Column::JoinType => match self.join_type.and_then(|v| JOIN_TYPE.name_of(v)) {
                Some(name) => Field::Text(Cow::Borrowed(name)),
                None => Field::Empty,
            },
            Column::LastAgentUpdateTime => time(self.last_sync),
            Column::Model => text(&self.model),
            Column::NextExecutionDateTime => time(self.next_execution),
            Column::OSDescription => text(&self.os),
            // Graph's run state has no remediation output (only its error).
            Column::RemediationScriptOutputDetails => Field::Empty,
        }
    }
}

// ------------------------------------------------------------------------------ the filter

/// What an export job's filter selects: a script (required by the device report), and the
/// detection and remediation states (member values; `None` for any).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportFilter {
    pub policy: Option<String>,
    pub detection: Option<Vec<i64>>,
    pub remediation: Option<Vec<i64>>,
}

/// Where in the text a token starts (0-based character position), for messages.
type Pos = usize;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Name(String),
    Str(String),
    Int(i64),
    Open,
    Close,
    Comma,
}

fn describe(token: &Token) -> String {
    match token {
        Token::Name(n) => format!("'{n}'"),
        Token::Str(s) => format!("the string '{s}'"),
        Token::Int(i) => format!("the number {i}"),
        Token::Open => "'('".into(),
        Token::Close => "')'".into(),
        Token::Comma => "','".into(),
    }
}

fn filter_error(message: impl Into<String>) -> RuleError {
    RuleError(format!(
        "The export job's filter is not valid: {}",
        message.into()
    ))
}

fn lex(text: &str) -> Result<Vec<(Pos, Token)>, RuleError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => {
                out.push((start, Token::Open));
                i += 1;
            }
            ')' => {
                out.push((start, Token::Close));
                i += 1;
            }
            ',' => {
                out.push((start, Token::Comma));
                i += 1;
            }
            '\'' => {
                let mut value = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => {
                            return Err(filter_error(format!(
                                "the string starting at position {start} has no closing quote."
                            )))
                        }
                        Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                            value.push('\'');
                            i += 2;
                        }
                        Some('\'') => {
                            i += 1;
                            break;
                        }
                        Some(c) => {
                            value.push(*c);
                            i += 1;
                        }
                    }
                }
                out.push((start, Token::Str(value)));
            }
            c if c.is_ascii_digit() || c == '-' => {
                i += 1;
                while chars.get(i).is_some_and(char::is_ascii_digit) {
                    i += 1;
                }
                let digits: String = chars[start..i].iter().collect();
                let value = digits.parse::<i64>().map_err(|_| {
                    filter_error(format!("'{digits}' at position {start} is not an integer."))
                })?;
                out.push((start, Token::Int(value)));
            }
            c if c.is_alphabetic() || c == '_' => {
                i += 1;
                while chars
                    .get(i)
                    .is_some_and(|c| c.is_alphanumeric() || *c == '_')
                {
                    i += 1;
                }
                out.push((start, Token::Name(chars[start..i].iter().collect())));
            }
            other => {
                return Err(filter_error(format!(
                    "unexpected '{other}' at position {start}."
                )))
            }
        }
    }
    Ok(out)
}

/// The columns a filter may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FilterColumn {
    PolicyId,
    DetectionStatus,
    RemediationStatus,
}

impl FilterColumn {
    fn parse(name: &str) -> Option<FilterColumn> {
        [
            ("PolicyId", FilterColumn::PolicyId),
            ("DetectionStatus", FilterColumn::DetectionStatus),
            ("RemediationStatus", FilterColumn::RemediationStatus),
        ]
        .into_iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, c)| c)
    }

    fn name(self) -> &'static str {
        match self {
            FilterColumn::PolicyId => "PolicyId",
            FilterColumn::DetectionStatus => "DetectionStatus",
            FilterColumn::RemediationStatus => "RemediationStatus",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operator {
    Eq,
    Ne,
    In,
}

/// One comparison of the filter's conjunction.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Comparison {
    column: FilterColumn,
    operator: Operator,
    values: Vec<(Pos, Token)>,
}

/// The parser: `filter := term ('and' term)*`, `term := '(' filter ')' | comparison`,
/// `comparison := column ('eq' | 'ne') literal | column 'in' '(' literal (',' literal)* ')'`.
struct Parser {
    tokens: Vec<(Pos, Token)>,
    next: usize,
    end: Pos,
}

fn keyword(token: &Token, word: &str) -> bool {
    matches!(token, Token::Name(n) if n.eq_ignore_ascii_case(word))
}

impl Parser {
    fn peek(&self) -> Option<&(Pos, Token)> {
        self.tokens.get(self.next)
    }

    fn take(&mut self, what: &str) -> Result<(Pos, Token), RuleError> {
        match self.tokens.get(self.next) {
            Some(t) => {
                self.next += 1;
                Ok(t.clone())
            }
            None => Err(filter_error(format!(
                "expected {what} at position {}, but the filter ends.",
                self.end
            ))),
        }
    }

    fn filter(&mut self, depth: usize, out: &mut Vec<Comparison>) -> Result<(), RuleError> {
        if depth > 16 {
            return Err(filter_error("the parentheses are nested too deeply."));
        }
        self.term(depth, out)?;
        while let Some((pos, token)) = self.peek() {
            let pos = *pos;
            if keyword(token, "and") {
                self.next += 1;
                self.term(depth, out)?;
            } else if keyword(token, "or") {
                return Err(filter_error(format!(
                    "'or' at position {pos} is not supported: the filter is a conjunction ('and') of comparisons; use 'in' for several values of a column."
                )));
            } else {
                return Ok(());
            }
        }
        Ok(())
    }

    fn term(&mut self, depth: usize, out: &mut Vec<Comparison>) -> Result<(), RuleError> {
        let (pos, token) = self.take("a comparison such as PolicyId eq '…'")?;
        match token {
            Token::Open => {
                self.filter(depth + 1, out)?;
                match self.take("')'")? {
                    (_, Token::Close) => Ok(()),
                    (pos, other) => Err(filter_error(format!(
                        "expected ')' at position {pos}, found {}.",
                        describe(&other)
                    ))),
                }
            }
            Token::Name(name) if keyword(&Token::Name(name.clone()), "not") => Err(filter_error(
                format!("'not' at position {pos} is not supported; use 'ne'."),
            )),
            Token::Name(name) => {
                let column = FilterColumn::parse(&name).ok_or_else(|| {
                    filter_error(format!(
                        "'{name}' at position {pos} is not a column this filter supports; use PolicyId, DetectionStatus or RemediationStatus."
                    ))
                })?;
                let (op_pos, op) = self.take("'eq', 'ne' or 'in'")?;
                let operator = if keyword(&op, "eq") {
                    Operator::Eq
                } else if keyword(&op, "ne") {
                    Operator::Ne
                } else if keyword(&op, "in") {
                    Operator::In
                } else {
                    return Err(filter_error(format!(
                        "expected 'eq', 'ne' or 'in' after {} at position {op_pos}, found {}.",
                        column.name(),
                        describe(&op)
                    )));
                };
                let values = if operator == Operator::In {
                    self.list()?
                } else {
                    vec![self.literal()?]
                };
                out.push(Comparison {
                    column,
                    operator,
                    values,
                });
                Ok(())
            }
            other => Err(filter_error(format!(
                "expected a column name at position {pos}, found {}.",
                describe(&other)
            ))),
        }
    }

    fn literal(&mut self) -> Result<(Pos, Token), RuleError> {
        match self.take("a value")? {
            (pos, t @ (Token::Str(_) | Token::Int(_))) => Ok((pos, t)),
            (pos, other) => Err(filter_error(format!(
                "expected a value ('text' or a number) at position {pos}, found {}.",
                describe(&other)
            ))),
        }
    }

    fn list(&mut self) -> Result<Vec<(Pos, Token)>, RuleError> {
        match self.take("'('")? {
            (_, Token::Open) => {}
            (pos, other) => {
                return Err(filter_error(format!(
                    "expected '(' after 'in' at position {pos}, found {}.",
                    describe(&other)
                )))
            }
        }
        let mut values = vec![self.literal()?];
        loop {
            match self.take("',' or ')'")? {
                (_, Token::Comma) => values.push(self.literal()?),
                (_, Token::Close) => return Ok(values),
                (pos, other) => {
                    return Err(filter_error(format!(
                        "expected ',' or ')' at position {pos}, found {}.",
                        describe(&other)
                    )))
                }
            }
        }
    }
}

/// A status value: a number (`2`), a quoted number (`'2'`, what Intune tooling sends) or the
/// member name of Graph's enum (`'fail'`, case-insensitive).
fn status_value(
    column: FilterColumn,
    members: &EnumType,
    (pos, token): &(Pos, Token),
) -> Result<i64, RuleError> {
    let bad = || {
        filter_error(format!(
            "{} at position {pos} is not a value of {}: use a number from {} to {} or a member of microsoft.graph.{} ({}).",
            describe(token),
            column.name(),
            members.members.first().map_or(0, |m| m.1),
            members.members.last().map_or(0, |m| m.1),
            members.name,
            members.member_list()
        ))
    };
    let value = match token {
        Token::Int(v) => *v,
        Token::Str(s) => match s.trim().parse::<i64>() {
            Ok(v) => v,
            Err(_) => members
                .members
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(s.trim()))
                .map(|(_, v)| *v)
                .ok_or_else(bad)?,
        },
        _ => return Err(bad()),
    };
    if members.name_of(value).is_none() {
        return Err(bad());
    }
    Ok(value)
}

/// Parse an export job's filter for `report`. An empty filter selects everything, which only
/// the policy report allows.
pub fn parse_filter(report: Report, text: Option<&str>) -> Result<ExportFilter, RuleError> {
    let text = text.unwrap_or("").trim();
    let mut comparisons = Vec::new();
    if !text.is_empty() {
        let tokens = lex(text)?;
        let mut parser = Parser {
            tokens,
            next: 0,
            end: text.chars().count(),
        };
        parser.filter(0, &mut comparisons)?;
        if let Some((pos, token)) = parser.peek() {
            return Err(filter_error(format!(
                "unexpected {} at position {pos}; comparisons are joined with 'and'.",
                describe(token)
            )));
        }
    }
    let mut filter = ExportFilter::default();
    for comparison in comparisons {
        match comparison.column {
            FilterColumn::PolicyId => {
                let value = match (comparison.operator, comparison.values.as_slice()) {
                    (Operator::Eq, [(_, Token::Str(id))]) => id.clone(),
                    (Operator::Eq, [(pos, other)]) => {
                        return Err(filter_error(format!(
                            "PolicyId must be compared with a quoted script id, e.g. PolicyId eq '…'; found {} at position {pos}.",
                            describe(other)
                        )))
                    }
                    _ => {
                        return Err(filter_error(
                            "PolicyId supports only 'eq' (one script per job; the PolicyRunStatesByProactiveRemediation report covers every script).",
                        ))
                    }
                };
                if filter.policy.as_ref().is_some_and(|p| *p != value) {
                    return Err(filter_error("PolicyId may name only one script."));
                }
                filter.policy = Some(value);
            }
            FilterColumn::DetectionStatus | FilterColumn::RemediationStatus => {
                let members = if comparison.column == FilterColumn::DetectionStatus {
                    &RUN_STATE
                } else {
                    &REMEDIATION_STATE
                };
                let values = comparison
                    .values
                    .iter()
                    .map(|v| status_value(comparison.column, members, v))
                    .collect::<Result<Vec<i64>, RuleError>>()?;
                let chosen: Vec<i64> = match comparison.operator {
                    Operator::Eq | Operator::In => values,
                    Operator::Ne => members
                        .members
                        .iter()
                        .map(|(_, v)| *v)
                        .filter(|v| !values.contains(v))
                        .collect(),
                };
                let slot = if comparison.column == FilterColumn::DetectionStatus {
                    &mut filter.detection
                } else {
                    &mut filter.remediation
                };
                // Comparisons of one column are all true at once: their values intersect.
                let mut merged = match slot.take() {
                    Some(before) => chosen.into_iter().filter(|v| before.contains(v)).collect(),
                    None => chosen,
                };
                merged.sort_unstable();
                merged.dedup();
                *slot = Some(merged);
            }
        }
    }
    if report == Report::DeviceRunStates && filter.policy.is_none() {
        return Err(filter_error(format!(
            "the report {} needs the script in its filter: PolicyId eq '<deviceHealthScript id>'.",
            report.name()
        )));
    }
    Ok(filter)
}

/// The columns `select` names, in its order (names are matched case-insensitively); every
/// column of the report when it is empty.
pub fn parse_select(report: Report, select: &[String]) -> Result<Vec<Column>, RuleError> {
    if select.is_empty() {
        return Ok(report.columns().to_vec());
    }
    if select.len() > MAX_SELECT {
        return Err(RuleError(format!(
            "'select' names {} columns; at most {MAX_SELECT} are allowed.",
            select.len()
        )));
    }
    let mut columns = Vec::with_capacity(select.len());
    for name in select {
        let Some(column) = report
            .columns()
            .iter()
            .copied()
            .find(|c| c.name().eq_ignore_ascii_case(name.trim()))
        else {
            return Err(RuleError(format!(
                "'select' names '{name}', which is not a column of {}; its columns are {}.",
                report.name(),
                report
                    .columns()
                    .iter()
                    .map(|c| c.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        };
        if columns.contains(&column) {
            return Err(RuleError(format!(
                "'select' names the column '{}' more than once.",
                column.name()
            )));
        }
        columns.push(column);
    }
    Ok(columns)
}

/// Everything a runner needs to write a job's file, derived from the stored job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportSpec {
    pub report: Report,
    pub filter: ExportFilter,
    pub columns: Vec<Column>,
    pub format: Format,
    pub localization: Localization,
}

/// The spec of a stored (or new) job; the same checks as its create.
pub fn spec(record: &Record) -> Result<ExportSpec, RuleError> {
    let report = match record.get("reportName") {
        Value::Str(name) => Report::parse(name).ok_or_else(|| {
            RuleError(format!(
                "The report '{name}' is not supported; remediate exports {}.",
                Report::ALL
                    .iter()
                    .map(|r| format!("'{}'", r.name()))
                    .collect::<Vec<_>>()
                    .join(" and ")
            ))
        })?,
        _ => {
            return Err(RuleError(format!(
                "'reportName' is required: {}.",
                Report::ALL
                    .iter()
                    .map(|r| format!("'{}'", r.name()))
                    .collect::<Vec<_>>()
                    .join(" or ")
            )))
        }
    };
    let filter = parse_filter(report, record.get("filter").as_str())?;
    let select = match record.get("select") {
        Value::StrList(names) => names.as_slice(),
        _ => &[],
    };
    let columns = parse_select(report, select)?;
    let format = match record.get("format") {
        Value::Enum(0) => Format::Csv,
        Value::Enum(2) => Format::Json,
        Value::Enum(v) => {
            return Err(RuleError(format!(
                "The format '{}' is not supported for {}; use 'csv' or 'json'.",
                REPORT_FILE_FORMAT.name_of(*v).unwrap_or("?"),
                report.name()
            )))
        }
        _ => Format::Csv,
    };
    let localization = match record.get("localizationType") {
        Value::Enum(1) => Localization::Replace,
        _ => Localization::AdditionalColumn,
    };
    Ok(ExportSpec {
        report,
        filter,
        columns,
        format,
        localization,
    })
}

/// A new export job from the decoded body: checked (report, filter, select, format), named
/// `<reportName>_<guid>`, `notStarted`. `origin` is the server's base URL the request reached
/// (`http://host:port`), which the download link of the finished job starts with.
pub fn create_job(fields: Vec<(usize, Value)>, origin: String) -> Result<Write, RuleError> {
    let mut record = Record::with_defaults(&EXPORT_JOB);
    for (index, value) in fields {
        record.values[index] = value;
    }
    match record.get("snapshotId") {
        Value::Null => {}
        Value::Str(s) if s.is_empty() => {}
        Value::Str(s) => {
            return Err(RuleError(format!(
                "'snapshotId' ('{s}') is not supported: remediate exports the current data; leave it out."
            )))
        }
        _ => {}
    }
    let spec = spec(&record)?;
    record.set("reportName", Value::Str(spec.report.name().to_owned()));
    if let Value::StrList(names) = record.get("select") {
        if !names.is_empty() {
            let canonical = spec.columns.iter().map(|c| c.name().to_owned()).collect();
            record.set("select", Value::StrList(canonical));
        }
    }
    record.set(
        "id",
        Value::Str(format!("{}_{}", spec.report.name(), new_id())),
    );
    record.set("status", Value::Enum(status::NOT_STARTED));
    record.set("url", Value::Null);
    record.set("requestDateTime", Value::Time(Instant::now()));
    record.set("expirationDateTime", Value::Time(Instant::MIN));
    Ok(Write::CreateExportJob { record, origin })
}

/// What a job's runner changes (`Write::UpdateExportJob`). `runner` names the server process
/// running it; every change but a claim applies only while that process holds the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobChange {
    /// Take a `notStarted` job, or an `inProgress` one whose runner's heartbeat is older than
    /// `stale_before` (its process died): it becomes `inProgress`.
    Claim {
        runner: String,
        now: Instant,
        stale_before: Instant,
    },
    /// The runner is alive.
    Heartbeat { runner: String, now: Instant },
    /// Give a job back (`notStarted`) when the server stops before finishing it.
    Release { runner: String },
    /// The file is written: `completed`, with its link and when the link expires.
    Complete {
        runner: String,
        url: String,
        expires: Instant,
        rows: i64,
    },
    /// `failed`, with the reason (kept with the job, shown as `status@remediate.reason`).
    Fail { runner: String, reason: String },
}

/// The internal state of a stored job, besides its record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobState {
    /// The base URL the create reached.
    pub origin: String,
    /// Why it failed.
    pub reason: Option<String>,
    /// Rows written (completed jobs).
    pub rows: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(report: Report, text: &str) -> Result<ExportFilter, String> {
        parse_filter(report, Some(text)).map_err(|e| e.0)
    }

    #[test]
    fn the_filters_intune_tooling_sends_parse() {
        let f = filter(Report::DeviceRunStates, "PolicyId eq 'a-b'").unwrap();
        assert_eq!(f.policy.as_deref(), Some("a-b"));
        assert_eq!(f.detection, None);
        let f = filter(
            Report::DeviceRunStates,
            "(PolicyId eq 'a') and (DetectionStatus eq '1')",
        )
        .unwrap();
        assert_eq!(f.policy.as_deref(), Some("a"));
        assert_eq!(f.detection, Some(vec![1]));
        let f = filter(
            Report::DeviceRunStates,
            "policyid EQ 'x''y' AND RemediationStatus in (2, 'remediationFailed') and DetectionStatus eq 'fail'",
        )
        .unwrap();
        assert_eq!(f.policy.as_deref(), Some("x'y"));
        assert_eq!(f.remediation, Some(vec![2, 3]));
        assert_eq!(f.detection, Some(vec![2]));
    }

    #[test]
    fn ne_and_repeated_columns_combine_as_and() {
        let f = filter(
            Report::PolicyRunStates,
            "DetectionStatus ne 1 and DetectionStatus in (1, 2, 3)",
        )
        .unwrap();
        assert_eq!(f.detection, Some(vec![2, 3]));
        assert_eq!(f.policy, None);
        let f = filter(
            Report::PolicyRunStates,
            "DetectionStatus eq 1 and DetectionStatus eq 2",
        )
        .unwrap();
        assert_eq!(f.detection, Some(vec![]));
        assert_eq!(
            filter(Report::PolicyRunStates, "").unwrap(),
            ExportFilter::default()
        );
    }

    #[test]
    fn bad_filters_say_what_is_wrong() {
        let cases = [
            ("", "needs the script"),
            ("DetectionStatus eq 1", "needs the script"),
            ("PolicyId eq 'a' or PolicyId eq 'b'", "'or' at position 16"),
            ("PolicyId eq 'a", "no closing quote"),
            ("PolicyId eq", "expected a value"),
            ("PolicyId eq 'a' and", "expected a comparison"),
            ("Nope eq 'a'", "'Nope' at position 0 is not a column"),
            ("PolicyId gt 'a'", "expected 'eq', 'ne' or 'in'"),
            ("PolicyId eq 1", "quoted script id"),
            ("PolicyId ne 'a'", "only 'eq'"),
            ("PolicyId eq 'a' and PolicyId eq 'b'", "only one script"),
            (
                "PolicyId eq 'a' and DetectionStatus eq 9",
                "not a value of DetectionStatus",
            ),
            (
                "PolicyId eq 'a' and RemediationStatus eq 'nope'",
                "not a value of RemediationStatus",
            ),
            ("(PolicyId eq 'a'", "expected ')'"),
            ("PolicyId eq 'a')", "unexpected ')'"),
            ("PolicyId eq 'a' PolicyId eq 'a'", "joined with 'and'"),
            ("PolicyId eq 'a' and DetectionStatus in 1", "expected '('"),
            (
                "PolicyId eq 'a' and DetectionStatus in (1 2)",
                "expected ',' or ')'",
            ),
            ("not PolicyId eq 'a'", "'not' at position 0"),
            ("PolicyId = 'a'", "unexpected '='"),
            (
                "PolicyId eq 'a' and DetectionStatus eq 99999999999999999999",
                "not an integer",
            ),
        ];
        for (text, needle) in cases {
            let message = filter(Report::DeviceRunStates, text).unwrap_err();
            assert!(
                message.contains(needle),
                "{text:?}: {message:?} should contain {needle:?}"
            );
        }
        let deep = format!("{}PolicyId eq 'a'{}", "(".repeat(40), ")".repeat(40));
        assert!(filter(Report::DeviceRunStates, &deep)
            .unwrap_err()
            .contains("too deeply"));
    }

    #[test]
    fn select_orders_and_checks_columns() {
        let names = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let columns =
            parse_select(Report::DeviceRunStates, &names(&["devicename", "PolicyId"])).unwrap();
        assert_eq!(columns, vec![Column::DeviceName, Column::PolicyId]);
        assert_eq!(
            parse_select(Report::DeviceRunStates, &[]).unwrap().len(),
            29
        );
        assert!(
            parse_select(Report::DeviceRunStates, &names(&["PolicyName"]))
                .unwrap_err()
                .0
                .contains("'PolicyName', which is not a column")
        );
        assert!(parse_select(Report::PolicyRunStates, &names(&["PolicyName"])).is_ok());
        assert!(
            parse_select(Report::DeviceRunStates, &names(&["UPN", "upn"]))
                .unwrap_err()
                .0
                .contains("more than once")
        );
    }

    #[test]
    fn every_report_has_29_distinct_columns() {
        for report in Report::ALL {
            let mut names: Vec<_> = report.columns().iter().map(|c| c.name()).collect();
            assert_eq!(names.len(), 29);
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), 29, "{report:?}");
        }
        assert_eq!(Report::DeviceRunStates.columns()[0], Column::PolicyId);
        assert!(Report::PolicyRunStates
            .columns()
            .contains(&Column::PolicyName));
    }

    fn body(pairs: &[(&str, Value)]) -> Vec<(usize, Value)> {
        pairs
            .iter()
            .map(|(n, v)| (EXPORT_JOB.index(n), v.clone()))
            .collect()
    }

    #[test]
    fn a_new_job_is_named_after_its_report_and_not_started() {
        let write = create_job(
            body(&[
                (
                    "reportName",
                    Value::Str("devicerunstatesbyproactiveremediation".into()),
                ),
                ("filter", Value::Str("PolicyId eq 's'".into())),
                ("select", Value::StrList(vec!["deviceName".into()])),
            ]),
            "http://h".into(),
        )
        .unwrap();
        let Write::CreateExportJob { record, origin } = write else {
            panic!("not a create");
        };
        assert_eq!(origin, "http://h");
        let id = record.id();
        let guid = id
            .strip_prefix("DeviceRunStatesByProactiveRemediation_")
            .unwrap();
        assert_eq!(guid.len(), 36);
        assert_eq!(record.get("status"), &Value::Enum(status::NOT_STARTED));
        assert_eq!(
            record.get("select"),
            &Value::StrList(vec!["DeviceName".into()])
        );
        for (fields, needle) in [
            (body(&[]), "'reportName' is required"),
            (
                body(&[("reportName", Value::Str("Devices".into()))]),
                "The report 'Devices' is not supported",
            ),
            (
                body(&[
                    (
                        "reportName",
                        Value::Str(Report::PolicyRunStates.name().into()),
                    ),
                    ("format", Value::Enum(1)),
                ]),
                "'pdf' is not supported",
            ),
            (
                body(&[
                    (
                        "reportName",
                        Value::Str(Report::PolicyRunStates.name().into()),
                    ),
                    ("snapshotId", Value::Str("x".into())),
                ]),
                "'snapshotId'",
            ),
        ] {
            let message = create_job(fields, String::new()).unwrap_err().0;
            assert!(message.contains(needle), "{message:?} / {needle:?}");
        }
    }

    #[test]
    fn fields_follow_the_localization() {
        let row = ExportRow {
            detection: 2,
            remediation: 2,
            filter_ids: Some(r#"["a","b"]"#.into()),
            join_type: Some(1),
            ..ExportRow::default()
        };
        let l = Localization::AdditionalColumn;
        assert_eq!(row.field(Column::DetectionStatus, l), Field::Int(2));
        assert_eq!(
            row.field(Column::DetectionStatus, Localization::Replace),
            Field::Text("With issues".into())
        );
        assert_eq!(
            row.field(Column::RemediationScriptStatus, l),
            Field::Text("Issue fixed".into())
        );
        assert_eq!(
            row.field(Column::FilterIdsCSV, l),
            Field::Text("a,b".into())
        );
        assert_eq!(
            row.field(Column::JoinType, l),
            Field::Text("azureADJoined".into())
        );
        assert_eq!(row.field(Column::ModifiedTime, l), Field::Empty);
    }
}
