//! One rule engine for two dialects over the properties of a device: Entra dynamic membership
//! rules of device groups (`group.membershipRule`) and Intune assignment filter rules
//! (`deviceAndAppManagementAssignmentFilter.rule`).
//!
//! [`parse`] checks a rule completely (properties, operators, value types, regular expressions,
//! length and nesting limits) and returns a [`Rule`] that [`Rule::matches`] evaluates against the
//! [`DeviceFacts`] of one device without further failure. The grammar, the operators and
//! properties of each dialect and what evaluates as null are documented in `docs/rules.md`.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;

use regex::{Regex, RegexBuilder};

use crate::model::Kind;
use crate::value::{Record, Value};
use Op::*;

/// The longest rule accepted, in characters (Entra's limit for a membership rule).
pub const MAX_RULE_CHARS: usize = 3072;
/// The deepest nesting of parentheses, `-not` and `-any`/`-all` conditions accepted.
pub const MAX_DEPTH: usize = 64;
/// Compiled size limit of one `-match`/`-notMatch` regular expression, in bytes.
const REGEX_SIZE_LIMIT: usize = 1 << 20;
/// `deviceManagementAppId` of a device managed by Intune.
const INTUNE_APP_ID: &str = "0000000a-0000-0000-c000-000000000000";
/// `deviceManagementAppId` of a device co-managed by Configuration Manager.
const CONFIGMGR_APP_ID: &str = "54b943f8-d761-4f8d-951e-9cea1846db5a";

/// Which rule language a text is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// Entra dynamic membership rule of a device group (`device.displayName -startsWith "LAB-"`).
    Membership,
    /// Intune assignment filter rule for managed devices (`(device.deviceName -startsWith "LAB")`).
    Filter,
}

/// A rule that cannot be parsed: `message` is one complete sentence naming what is wrong and
/// where; `position` is the 0-based character offset it refers to, when there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSyntaxError {
    pub message: String,
    pub position: Option<usize>,
}

impl fmt::Display for RuleSyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for RuleSyntaxError {}

fn error(position: usize, message: String) -> RuleSyntaxError {
    RuleSyntaxError {
        message,
        position: Some(position),
    }
}

/// A parsed, fully checked rule.
#[derive(Debug, Clone)]
pub struct Rule {
    dialect: Dialect,
    root: Node,
}

impl Rule {
    /// Whether `device` satisfies the rule.
    pub fn matches(&self, device: &DeviceFacts) -> bool {
        eval(&self.root, device)
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }
}

/// Everything a rule may read of a device, in canonical form.
///
/// Text is kept as stored (comparisons ignore case); `None` is null. Two fields hold the member
/// names of `managedDevice` enums and each dialect spells them its own way: see [`ownership`]
/// and [`join_type`].
///
/// [`ownership`]: DeviceFacts::ownership
/// [`join_type`]: DeviceFacts::join_type
#[derive(Debug, Clone, Default)]
pub struct DeviceFacts {
    /// `managedDevice.deviceName`: Entra `displayName`, filter `deviceName`.
    pub device_name: Option<String>,
    /// The Entra device id (`managedDevice.azureADDeviceId`): Entra `deviceId`.
    pub device_id: Option<String>,
    /// The object id of the Entra `device`: Entra `objectId`.
    pub object_id: Option<String>,
    /// `managedDevice.operatingSystem` ("Windows", "macOS", "iOS", "Android", "Linux"): Entra
    /// `deviceOSType`, which reads "macOS" as "MacMDM" (the type Entra records for Intune Macs).
    pub operating_system: Option<String>,
    /// `managedDevice.osVersion`: Entra `deviceOSVersion`, filter `osVersion` and (compared as a
    /// version) filter `operatingSystemVersion`.
    pub os_version: Option<String>,
    /// `managedDevice.manufacturer`: Entra `deviceManufacturer`, filter `manufacturer`.
    pub manufacturer: Option<String>,
    /// `managedDevice.model`: Entra `deviceModel`, filter `model`.
    pub model: Option<String>,
    /// `managedDevice.ownerType` member name ("company", "personal", "unknown"): `deviceOwnership`,
    /// which Entra reads as Company/Personal/Unknown and filters as Corporate/Personal/Unknown.
    pub ownership: Option<String>,
    /// `managedDevice.joinType` member name ("azureADJoined", "azureADRegistered",
    /// "hybridAzureADJoined", "unknown"): `deviceTrustType`, which Entra reads as
    /// AzureAD/Workplace/ServerAD (unknown: null) and filters as "Azure AD joined",
    /// "Azure AD registered", "Hybrid Azure AD joined", "Unknown".
    pub join_type: Option<String>,
    /// Entra `managementType` ("MDM" for a managed device).
    pub management_type: Option<String>,
    /// Entra `deviceManagementAppId`.
    pub device_management_app_id: Option<String>,
    /// Entra and filter `enrollmentProfileName`.
    pub enrollment_profile_name: Option<String>,
    /// Entra and filter `deviceCategory`.
    pub device_category: Option<String>,
    /// Entra `accountEnabled`.
    pub account_enabled: Option<bool>,
    /// Entra and filter `isRooted`.
    pub is_rooted: Option<bool>,
    /// Entra `profileType`.
    pub profile_type: Option<String>,
    /// Entra `systemLabels`.
    pub system_labels: Option<String>,
    /// Entra `extensionAttribute1` … `extensionAttribute15` (index 0 is `extensionAttribute1`).
    pub extension_attributes: [Option<String>; 15],
    /// Filter `cpuArchitecture`.
    pub cpu_architecture: Option<String>,
    /// Filter `operatingSystemSKU`.
    pub operating_system_sku: Option<String>,
    /// Filter `deviceManagementType`.
    pub device_management_type: Option<String>,
    /// Entra `devicePhysicalIds` (read only through `-any`/`-all`).
    pub physical_ids: Vec<String>,
    /// Object ids of the groups the device is a direct member of: Entra `memberOf`.
    pub member_of: Vec<String>,
}

impl DeviceFacts {
    /// From a stored managedDevice record (entity `crate::model::MANAGED_DEVICE`) and the object id of its Entra `device`.
    ///
    /// Empty strings are null; what a managedDevice does not hold is null (or empty).
    pub fn of_managed_device(device: &Record, object_id: &str) -> DeviceFacts {
        let owner = enum_member(device, "ownerType")
            .filter(|m| !is_unknown(m))
            .or_else(|| enum_member(device, "managedDeviceOwnerType").filter(|m| !is_unknown(m)))
            .unwrap_or("unknown");
        let co_managed = enum_member(device, "managementAgent")
            .is_some_and(|agent| agent.starts_with("configurationManagerClient"));
        DeviceFacts {
            device_name: text(device, "deviceName"),
            device_id: text(device, "azureADDeviceId"),
            object_id: Some(object_id.to_owned()).filter(|id| !id.is_empty()),
            operating_system: text(device, "operatingSystem"),
            os_version: text(device, "osVersion"),
            manufacturer: text(device, "manufacturer"),
            model: text(device, "model"),
            ownership: Some(owner.to_owned()),
            join_type: enum_member(device, "joinType").map(str::to_owned),
            management_type: Some("MDM".to_owned()),
            device_management_app_id: Some(
                if co_managed {
                    CONFIGMGR_APP_ID
                } else {
                    INTUNE_APP_ID
                }
                .to_owned(),
            ),
            account_enabled: Some(true),
            ..DeviceFacts::default()
        }
    }
}

fn is_unknown(member: &str) -> bool {
    member == "unknown" || member == "unknownFutureValue"
}

/// A property value of a record of any entity; `None` when the entity has no such property.
fn field<'a>(record: &'a Record, name: &str) -> Option<&'a Value> {
    let (index, _) = record.entity.property(name)?;
    record.values.get(index)
}

fn text(record: &Record, name: &str) -> Option<String> {
    match field(record, name)? {
        Value::Str(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

fn enum_member(record: &Record, name: &str) -> Option<&'static str> {
    let (index, property) = record.entity.property(name)?;
    match (property.kind, record.values.get(index)?) {
        (Kind::Enum(e), Value::Enum(v)) => e.name_of(*v),
        _ => None,
    }
}

/// Parses and checks `text` as a rule of `dialect`.
pub fn parse(text: &str, dialect: Dialect) -> Result<Rule, RuleSyntaxError> {
    let chars = text.chars().count();
    if chars > MAX_RULE_CHARS {
        return Err(RuleSyntaxError {
            message: format!(
                "The rule is {chars} characters long; the maximum is {MAX_RULE_CHARS}."
            ),
            position: Some(MAX_RULE_CHARS),
        });
    }
    if text.trim().is_empty() {
        return Err(RuleSyntaxError {
            message: "The rule is empty.".to_owned(),
            position: None,
        });
    }
    let mut parser = Parser {
        tokens: lex(text)?,
        at: 0,
        dialect,
        depth: 0,
        member_of: None,
    };
    let root = parser.parse_or()?;
    let next = parser.peek();
    match next.tok {
        Tok::End => {}
        Tok::Close => {
            return Err(error(
                next.pos,
                format!("Unexpected ')' at position {}.", next.pos),
            ))
        }
        _ => {
            let logical = match dialect {
                Dialect::Membership => "-and, -or",
                Dialect::Filter => "and, or",
            };
            return Err(error(
                next.pos,
                format!(
                    "Expected {logical} or the end of the rule at position {}, found {}.",
                    next.pos,
                    next.describe()
                ),
            ));
        }
    }
    if let Some(pos) = parser.member_of {
        if !matches!(
            root,
            Node::Quant {
                prop: Prop::MemberOf,
                ..
            }
        ) {
            return Err(error(
                pos,
                format!(
                    "device.memberOf at position {pos} cannot be combined with other expressions."
                ),
            ));
        }
    }
    Ok(Rule { dialect, root })
}

// ---------------------------------------------------------------------------------------------
// Lexer

#[derive(Debug, Clone)]
enum Tok<'a> {
    Open,
    Close,
    OpenList,
    CloseList,
    Comma,
    /// A quoted string, unescaped.
    Str(String),
    /// `device.displayName`, `-eq`, `and`, `true`, `$null`, `_`, …
    Word(&'a str),
    /// An unquoted number or version (`10.0.22631.3235`).
    Num(&'a str),
    End,
}

#[derive(Debug, Clone)]
struct Token<'a> {
    tok: Tok<'a>,
    /// 0-based character offset.
    pos: usize,
}

impl Token<'_> {
    fn describe(&self) -> String {
        match &self.tok {
            Tok::Open => "'('".to_owned(),
            Tok::Close => "')'".to_owned(),
            Tok::OpenList => "'['".to_owned(),
            Tok::CloseList => "']'".to_owned(),
            Tok::Comma => "','".to_owned(),
            Tok::Str(s) => format!("the string \"{}\"", shorten(s)),
            Tok::Word(w) | Tok::Num(w) => format!("'{}'", shorten(w)),
            Tok::End => "the end of the rule".to_owned(),
        }
    }
}

/// At most 64 characters of user text in a message.
fn shorten(s: &str) -> Cow<'_, str> {
    const MAX: usize = 64;
    match s.char_indices().nth(MAX) {
        None => Cow::Borrowed(s),
        Some((cut, _)) => Cow::Owned(format!("{}…", &s[..cut])),
    }
}

fn is_word_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == '$'
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '$'
}

fn lex(text: &str) -> Result<Vec<Token<'_>>, RuleSyntaxError> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let byte_at = |i: usize| chars.get(i).map_or(text.len(), |&(b, _)| b);
    let mut tokens = Vec::new();
    let mut i = 0;
    while let Some(&(_, c)) = chars.get(i) {
        let pos = i;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let next = chars.get(i + 1).map(|&(_, n)| n);
        let tok = match c {
            '(' => Tok::Open,
            ')' => Tok::Close,
            '[' => Tok::OpenList,
            ']' => Tok::CloseList,
            ',' => Tok::Comma,
            '"' | '\'' => {
                let (value, end) = lex_string(&chars, i, c)?;
                tokens.push(Token {
                    tok: Tok::Str(value),
                    pos,
                });
                i = end;
                continue;
            }
            c if is_word_start(c) || (c == '-' && next.is_some_and(is_word_start)) => {
                let mut end = i + 1;
                while chars.get(end).is_some_and(|&(_, c)| is_word_char(c)) {
                    end += 1;
                }
                tokens.push(Token {
                    tok: Tok::Word(&text[byte_at(i)..byte_at(end)]),
                    pos,
                });
                i = end;
                continue;
            }
            c if c.is_ascii_digit() => {
                let mut end = i + 1;
                while chars
                    .get(end)
                    .is_some_and(|&(_, c)| c.is_ascii_alphanumeric() || c == '.')
                {
                    end += 1;
                }
                tokens.push(Token {
                    tok: Tok::Num(&text[byte_at(i)..byte_at(end)]),
                    pos,
                });
                i = end;
                continue;
            }
            _ => {
                return Err(error(
                    pos,
                    format!(
                        "Unexpected character '{}' at position {pos}.",
                        c.escape_debug()
                    ),
                ))
            }
        };
        tokens.push(Token { tok, pos });
        i += 1;
    }
    tokens.push(Token {
        tok: Tok::End,
        pos: chars.len(),
    });
    Ok(tokens)
}

/// A string quoted with `quote` starting at character `start`: a doubled quote or a backtick
/// before the quote (or before a backtick) stands for that character. Returns the value and the
/// index after the closing quote.
fn lex_string(
    chars: &[(usize, char)],
    start: usize,
    quote: char,
) -> Result<(String, usize), RuleSyntaxError> {
    let mut value = String::new();
    let mut i = start + 1;
    loop {
        let Some(&(_, c)) = chars.get(i) else {
            return Err(error(
                start,
                format!("The string that starts at position {start} has no closing quote."),
            ));
        };
        let next = chars.get(i + 1).map(|&(_, n)| n);
        if c == '`' && (next == Some(quote) || next == Some('`')) {
            value.extend(next);
            i += 2;
        } else if c == quote && next == Some(quote) {
            value.push(quote);
            i += 2;
        } else if c == quote {
            return Ok((value, i + 1));
        } else {
            value.push(c);
            i += 1;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Operators and properties

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    StartsWith,
    NotStartsWith,
    EndsWith,
    NotEndsWith,
    Contains,
    NotContains,
    In,
    NotIn,
    Match,
    NotMatch,
    Gt,
    Ge,
    Lt,
    Le,
    Any,
    All,
}

const OPS: &[(&str, Op)] = &[
    ("-eq", Op::Eq),
    ("-ne", Op::Ne),
    ("-startsWith", Op::StartsWith),
    ("-notStartsWith", Op::NotStartsWith),
    ("-endsWith", Op::EndsWith),
    ("-notEndsWith", Op::NotEndsWith),
    ("-contains", Op::Contains),
    ("-notContains", Op::NotContains),
    ("-in", Op::In),
    ("-notIn", Op::NotIn),
    ("-match", Op::Match),
    ("-notMatch", Op::NotMatch),
    ("-gt", Op::Gt),
    ("-ge", Op::Ge),
    ("-lt", Op::Lt),
    ("-le", Op::Le),
    ("-any", Op::Any),
    ("-all", Op::All),
];

impl Op {
    /// A written operator, with or without its hyphen, in any case.
    fn lookup(word: &str) -> Option<Op> {
        let bare = word.strip_prefix('-').unwrap_or(word);
        OPS.iter()
            .find(|(name, _)| name[1..].eq_ignore_ascii_case(bare))
            .map(|&(_, op)| op)
    }

    fn name(self) -> &'static str {
        OPS.iter()
            .find(|&&(_, op)| op == self)
            .map_or("?", |&(name, _)| name)
    }

    /// The operator this one negates.
    fn negates(self) -> Option<Op> {
        Some(match self {
            Op::Ne => Op::Eq,
            Op::NotStartsWith => Op::StartsWith,
            Op::NotEndsWith => Op::EndsWith,
            Op::NotContains => Op::Contains,
            Op::NotIn => Op::In,
            Op::NotMatch => Op::Match,
            _ => return None,
        })
    }
}

/// `-and`, `-or`, `-not` with or without the hyphen.
fn logical(word: &str) -> Option<&'static str> {
    let bare = word.strip_prefix('-').unwrap_or(word);
    ["and", "or", "not"]
        .into_iter()
        .find(|l| l.eq_ignore_ascii_case(bare))
}

const MEMBERSHIP_OPS: &[Op] = &[
    Eq,
    Ne,
    StartsWith,
    NotStartsWith,
    EndsWith,
    NotEndsWith,
    Contains,
    NotContains,
    In,
    NotIn,
    Match,
    NotMatch,
    Any,
    All,
];
const FILTER_OPS: &[Op] = &[
    Eq,
    Ne,
    StartsWith,
    Contains,
    NotContains,
    In,
    NotIn,
    Gt,
    Ge,
    Lt,
    Le,
];
const ENTRA_TEXT: &[Op] = &[
    Eq,
    Ne,
    StartsWith,
    NotStartsWith,
    EndsWith,
    NotEndsWith,
    Contains,
    NotContains,
    In,
    NotIn,
    Match,
    NotMatch,
];
const EQ_NE: &[Op] = &[Eq, Ne];
const ANY_ALL: &[Op] = &[Any, All];
const ANY: &[Op] = &[Any];
const IN: &[Op] = &[In];
const FILTER_TEXT: &[Op] = &[Eq, Ne, In, NotIn, StartsWith, Contains, NotContains];
const FILTER_CHOICE: &[Op] = &[Eq, Ne, In, NotIn];
const VERSION: &[Op] = &[Eq, Ne, Gt, Ge, Lt, Le];

/// What a property reads of [`DeviceFacts`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Prop {
    DeviceName,
    DeviceId,
    ObjectId,
    EntraOsType,
    OsVersion,
    Manufacturer,
    Model,
    EntraOwnership,
    FilterOwnership,
    EntraTrustType,
    FilterTrustType,
    ManagementType,
    ManagementAppId,
    EnrollmentProfileName,
    DeviceCategory,
    AccountEnabled,
    IsRooted,
    ProfileType,
    SystemLabels,
    ExtensionAttribute(usize),
    PhysicalIds,
    MemberOf,
    CpuArchitecture,
    OperatingSystemSku,
    DeviceManagementType,
}

/// How a property's values are written and compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Type {
    Text,
    Bool,
    /// Dotted numbers compared numerically (filter `operatingSystemVersion`).
    Version,
    /// A string collection read with `-any`/`-all` and `_`.
    Collection,
    /// `memberOf -any (group.objectId -in [...])`.
    Groups,
}

#[derive(Debug)]
struct PropDef {
    /// Canonical name, without `device.`.
    name: &'static str,
    prop: Prop,
    ty: Type,
    ops: &'static [Op],
}

const fn def(name: &'static str, prop: Prop, ty: Type, ops: &'static [Op]) -> PropDef {
    PropDef {
        name,
        prop,
        ty,
        ops,
    }
}

static MEMBERSHIP_PROPS: &[PropDef] = &[
    def("accountEnabled", Prop::AccountEnabled, Type::Bool, EQ_NE),
    def(
        "deviceCategory",
        Prop::DeviceCategory,
        Type::Text,
        ENTRA_TEXT,
    ),
    def("deviceId", Prop::DeviceId, Type::Text, ENTRA_TEXT),
    def(
        "deviceManagementAppId",
        Prop::ManagementAppId,
        Type::Text,
        ENTRA_TEXT,
    ),
    def(
        "deviceManufacturer",
        Prop::Manufacturer,
        Type::Text,
        ENTRA_TEXT,
    ),
    def("deviceModel", Prop::Model, Type::Text, ENTRA_TEXT),
    def("deviceOSType", Prop::EntraOsType, Type::Text, ENTRA_TEXT),
    def("deviceOSVersion", Prop::OsVersion, Type::Text, ENTRA_TEXT),
    def(
        "deviceOwnership",
        Prop::EntraOwnership,
        Type::Text,
        ENTRA_TEXT,
    ),
    def(
        "devicePhysicalIds",
        Prop::PhysicalIds,
        Type::Collection,
        ANY_ALL,
    ),
    def(
        "deviceTrustType",
        Prop::EntraTrustType,
        Type::Text,
        ENTRA_TEXT,
    ),
    def("displayName", Prop::DeviceName, Type::Text, ENTRA_TEXT),
    def(
        "enrollmentProfileName",
        Prop::EnrollmentProfileName,
        Type::Text,
        ENTRA_TEXT,
    ),
    def("isRooted", Prop::IsRooted, Type::Bool, EQ_NE),
    def(
        "managementType",
        Prop::ManagementType,
        Type::Text,
        ENTRA_TEXT,
    ),
    def("memberOf", Prop::MemberOf, Type::Groups, ANY),
    def("objectId", Prop::ObjectId, Type::Text, ENTRA_TEXT),
    def("profileType", Prop::ProfileType, Type::Text, ENTRA_TEXT),
    def("systemLabels", Prop::SystemLabels, Type::Text, ENTRA_TEXT),
];

static EXTENSION_ATTRIBUTES: [PropDef; 15] = {
    const NAMES: [&str; 15] = [
        "extensionAttribute1",
        "extensionAttribute2",
        "extensionAttribute3",
        "extensionAttribute4",
        "extensionAttribute5",
        "extensionAttribute6",
        "extensionAttribute7",
        "extensionAttribute8",
        "extensionAttribute9",
        "extensionAttribute10",
        "extensionAttribute11",
        "extensionAttribute12",
        "extensionAttribute13",
        "extensionAttribute14",
        "extensionAttribute15",
    ];
    let mut defs = [const { def("", Prop::DeviceName, Type::Text, ENTRA_TEXT) }; 15];
    let mut i = 0;
    while i < 15 {
        defs[i] = def(
            NAMES[i],
            Prop::ExtensionAttribute(i),
            Type::Text,
            ENTRA_TEXT,
        );
        i += 1;
    }
    defs
};

static FILTER_PROPS: &[PropDef] = &[
    def(
        "cpuArchitecture",
        Prop::CpuArchitecture,
        Type::Text,
        FILTER_CHOICE,
    ),
    def(
        "deviceCategory",
        Prop::DeviceCategory,
        Type::Text,
        FILTER_TEXT,
    ),
    def(
        "deviceManagementType",
        Prop::DeviceManagementType,
        Type::Text,
        EQ_NE,
    ),
    def("deviceName", Prop::DeviceName, Type::Text, FILTER_TEXT),
    def("deviceOwnership", Prop::FilterOwnership, Type::Text, EQ_NE),
    def(
        "deviceTrustType",
        Prop::FilterTrustType,
        Type::Text,
        FILTER_CHOICE,
    ),
    def(
        "enrollmentProfileName",
        Prop::EnrollmentProfileName,
        Type::Text,
        FILTER_TEXT,
    ),
    def("isRooted", Prop::IsRooted, Type::Bool, EQ_NE),
    def("manufacturer", Prop::Manufacturer, Type::Text, FILTER_TEXT),
    def("model", Prop::Model, Type::Text, FILTER_TEXT),
    def(
        "operatingSystemSKU",
        Prop::OperatingSystemSku,
        Type::Text,
        FILTER_TEXT,
    ),
    def(
        "operatingSystemVersion",
        Prop::OsVersion,
        Type::Version,
        VERSION,
    ),
    def("osVersion", Prop::OsVersion, Type::Text, FILTER_TEXT),
];

/// The `_` of `devicePhysicalIds -any _ -startsWith "[ZTDId]"`.
static PHYSICAL_ID_ITEM: PropDef = def(
    "devicePhysicalIds",
    Prop::PhysicalIds,
    Type::Text,
    ENTRA_TEXT,
);
/// The `group.objectId` of `memberOf -any (group.objectId -in [...])`.
static GROUP_ITEM: PropDef = def("memberOf", Prop::MemberOf, Type::Text, IN);

fn lookup_property(dialect: Dialect, name: &str) -> Option<&'static PropDef> {
    let table = match dialect {
        Dialect::Membership => MEMBERSHIP_PROPS,
        Dialect::Filter => FILTER_PROPS,
    };
    let found = table.iter().find(|d| d.name.eq_ignore_ascii_case(name));
    match (found, dialect) {
        (Some(d), _) => Some(d),
        (None, Dialect::Membership) => EXTENSION_ATTRIBUTES
            .iter()
            .find(|d| d.name.eq_ignore_ascii_case(name)),
        (None, Dialect::Filter) => None,
    }
}

/// "-eq", "-eq or -ne", "-eq, -ne or -in".
fn op_list(ops: &[Op]) -> String {
    let names: Vec<&str> = ops.iter().map(|op| op.name()).collect();
    match names.split_last() {
        None => String::new(),
        Some((last, [])) => (*last).to_owned(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

// ---------------------------------------------------------------------------------------------
// Syntax tree and parser

#[derive(Debug, Clone)]
enum Node {
    And(Vec<Node>),
    Or(Vec<Node>),
    Not(Box<Node>),
    Cmp {
        prop: Prop,
        op: Op,
        operand: Operand,
    },
    /// `-any`/`-all` over a collection: each item is compared with `op` and `operand`.
    Quant {
        prop: Prop,
        all: bool,
        op: Op,
        operand: Operand,
    },
}

#[derive(Debug, Clone)]
enum Operand {
    Null,
    /// Lowercased text (booleans as "true"/"false").
    Text(String),
    /// Lowercased texts of an `-in`/`-notIn` list.
    List(Vec<String>),
    Regex(Regex),
    Version(Vec<u64>),
}

/// A value as written, before it is checked against the property and operator.
enum Literal {
    Null,
    Bool(bool),
    /// Quoted text.
    Text(String),
    /// An unquoted number or version.
    Bare(String),
    List(Vec<String>),
}

struct Parser<'a> {
    tokens: Vec<Token<'a>>,
    at: usize,
    dialect: Dialect,
    depth: usize,
    /// Position of a `device.memberOf`, which must be the whole rule.
    member_of: Option<usize>,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> &Token<'a> {
        let last = self.tokens.len() - 1;
        &self.tokens[self.at.min(last)]
    }

    fn bump(&mut self) -> Token<'a> {
        let token = self.peek().clone();
        if self.at < self.tokens.len() {
            self.at += 1;
        }
        token
    }

    fn peek_logical(&self, which: &str) -> bool {
        matches!(self.peek().tok, Tok::Word(w) if logical(w) == Some(which))
    }

    fn enter(&mut self, pos: usize) -> Result<(), RuleSyntaxError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(error(
                pos,
                format!(
                    "The rule is nested too deeply at position {pos} (the maximum depth is {MAX_DEPTH})."
                ),
            ));
        }
        Ok(())
    }

    fn parse_or(&mut self) -> Result<Node, RuleSyntaxError> {
        let mut items = vec![self.parse_and()?];
        while self.peek_logical("or") {
            self.at += 1;
            items.push(self.parse_and()?);
        }
        Ok(if items.len() == 1 {
            items.swap_remove(0)
        } else {
            Node::Or(items)
        })
    }

    fn parse_and(&mut self) -> Result<Node, RuleSyntaxError> {
        let mut items = vec![self.parse_unary()?];
        while self.peek_logical("and") {
            self.at += 1;
            items.push(self.parse_unary()?);
        }
        Ok(if items.len() == 1 {
            items.swap_remove(0)
        } else {
            Node::And(items)
        })
    }

    fn parse_unary(&mut self) -> Result<Node, RuleSyntaxError> {
        let token = self.peek().clone();
        match token.tok {
            Tok::Word(w) if logical(w) == Some("not") => {
                if self.dialect == Dialect::Filter {
                    return Err(error(
                        token.pos,
                        format!(
                            "Unsupported operator '{}' at position {}. Assignment filter rules have no negation; use -ne, -notIn or -notContains.",
                            shorten(w),
                            token.pos
                        ),
                    ));
                }
                self.enter(token.pos)?;
                self.at += 1;
                let inner = self.parse_unary()?;
                self.depth -= 1;
                Ok(Node::Not(Box::new(inner)))
            }
            Tok::Open => {
                self.enter(token.pos)?;
                self.at += 1;
                let inner = self.parse_or()?;
                self.expect_close(token.pos)?;
                self.depth -= 1;
                Ok(inner)
            }
            Tok::Word(w) if logical(w).is_none() && Op::lookup(w).is_none() => {
                self.at += 1;
                self.parse_comparison(w, token.pos)
            }
            _ => Err(error(
                token.pos,
                format!(
                    "Expected a property such as {} at position {}, found {}.",
                    self.example_property(),
                    token.pos,
                    token.describe()
                ),
            )),
        }
    }

    fn example_property(&self) -> &'static str {
        match self.dialect {
            Dialect::Membership => "device.displayName",
            Dialect::Filter => "device.deviceName",
        }
    }

    fn expect_close(&mut self, open: usize) -> Result<(), RuleSyntaxError> {
        let next = self.bump();
        match next.tok {
            Tok::Close => Ok(()),
            _ => Err(error(
                next.pos,
                format!(
                    "Expected a closing parenthesis at position {} for the '(' at position {open}, found {}.",
                    next.pos,
                    next.describe()
                ),
            )),
        }
    }

    /// `device.x OP value` or `device.x -any|-all [(] item OP value [)]`; the property word is
    /// already consumed.
    fn parse_comparison(&mut self, word: &str, pos: usize) -> Result<Node, RuleSyntaxError> {
        let def = word
            .get(..7)
            .filter(|prefix| prefix.eq_ignore_ascii_case("device."))
            .and_then(|_| lookup_property(self.dialect, &word[7..]))
            .ok_or_else(|| {
                error(
                    pos,
                    format!(
                        "Unsupported property '{}' at position {pos}.",
                        shorten(word)
                    ),
                )
            })?;
        let (op, op_pos) = self.parse_operator(def, word)?;
        match def.ty {
            Type::Collection | Type::Groups => self.parse_quantified(def, op, op_pos, pos),
            _ => {
                let operand = self.parse_operand(def, op)?;
                Ok(Node::Cmp {
                    prop: def.prop,
                    op,
                    operand,
                })
            }
        }
    }

    /// The comparison operator after `subject` (a property or a `-any` item), allowed for `def`.
    fn parse_operator(
        &mut self,
        def: &PropDef,
        subject: &str,
    ) -> Result<(Op, usize), RuleSyntaxError> {
        let token = self.bump();
        let word = match token.tok {
            Tok::Word(w) if logical(w).is_none() => w,
            _ => {
                return Err(error(
                    token.pos,
                    format!(
                        "Expected an operator after '{}' at position {}, found {}.",
                        shorten(subject),
                        token.pos,
                        token.describe()
                    ),
                ))
            }
        };
        let unsupported = format!(
            "Unsupported operator '{}' at position {}.",
            shorten(word),
            token.pos
        );
        let Some(op) = Op::lookup(word) else {
            return Err(error(token.pos, unsupported));
        };
        let dialect_ops = match self.dialect {
            Dialect::Membership => MEMBERSHIP_OPS,
            Dialect::Filter => FILTER_OPS,
        };
        if !dialect_ops.contains(&op) {
            let supported = match self.dialect {
                Dialect::Membership => {
                    "Membership rules of device groups support -eq, -ne, -startsWith, -notStartsWith, -endsWith, -notEndsWith, -contains, -notContains, -in, -notIn, -match and -notMatch (and -any, -all for device.devicePhysicalIds and device.memberOf)."
                }
                Dialect::Filter => {
                    "Assignment filter rules support -eq, -ne, -startsWith, -contains, -notContains, -in and -notIn (and -gt, -ge, -lt, -le for device.operatingSystemVersion)."
                }
            };
            return Err(error(token.pos, format!("{unsupported} {supported}")));
        }
        if !def.ops.contains(&op) {
            return Err(error(
                token.pos,
                format!(
                    "The operator {} cannot be used with device.{} at position {}; use {}.",
                    op.name(),
                    def.name,
                    token.pos,
                    op_list(def.ops)
                ),
            ));
        }
        Ok((op, token.pos))
    }

    fn parse_literal(&mut self, op: Op) -> Result<(Literal, usize), RuleSyntaxError> {
        let token = self.bump();
        let expected = |token: &Token<'_>| {
            error(
                token.pos,
                format!(
                    "Expected a value after {} at position {}, found {}.",
                    op.name(),
                    token.pos,
                    token.describe()
                ),
            )
        };
        let literal = match &token.tok {
            Tok::Str(s) => Literal::Text(s.clone()),
            Tok::Num(n) => Literal::Bare((*n).to_owned()),
            Tok::Word(w) => match w.to_ascii_lowercase().as_str() {
                "true" => Literal::Bool(true),
                "false" => Literal::Bool(false),
                "null" | "$null" => Literal::Null,
                _ => return Err(expected(&token)),
            },
            Tok::OpenList => Literal::List(self.parse_list(token.pos)?),
            _ => return Err(expected(&token)),
        };
        Ok((literal, token.pos))
    }

    /// The items of a `[...]` list whose `[` is consumed.
    fn parse_list(&mut self, open: usize) -> Result<Vec<String>, RuleSyntaxError> {
        let mut items = Vec::new();
        if matches!(self.peek().tok, Tok::CloseList) {
            self.at += 1;
            return Ok(items);
        }
        loop {
            let token = self.bump();
            match token.tok {
                Tok::Str(s) => items.push(s),
                Tok::Num(n) => items.push(n.to_owned()),
                _ => {
                    return Err(error(
                        token.pos,
                        format!(
                            "Expected a quoted string in the list at position {open}, found {} at position {}.",
                            token.describe(),
                            token.pos
                        ),
                    ))
                }
            }
            let token = self.bump();
            match token.tok {
                Tok::Comma => {}
                Tok::CloseList => return Ok(items),
                _ => {
                    return Err(error(
                        token.pos,
                        format!(
                            "Expected ',' or ']' in the list at position {open}, found {} at position {}.",
                            token.describe(),
                            token.pos
                        ),
                    ))
                }
            }
        }
    }

    /// The value after `op`, checked against the property's type and the operator.
    fn parse_operand(&mut self, def: &PropDef, op: Op) -> Result<Operand, RuleSyntaxError> {
        let (literal, pos) = self.parse_literal(op)?;
        let list_op = matches!(op, In | NotIn);
        match literal {
            Literal::List(items) if list_op => {
                Ok(Operand::List(items.iter().map(|s| s.to_lowercase()).collect()))
            }
            _ if list_op => Err(error(
                pos,
                format!(
                    "The operator {} needs a list of values, such as [\"a\", \"b\"], at position {pos}.",
                    op.name()
                ),
            )),
            Literal::List(_) => Err(error(
                pos,
                format!(
                    "The operator {} needs a single value, not a list, at position {pos}.",
                    op.name()
                ),
            )),
            Literal::Null if matches!(op, Eq | Ne) => Ok(Operand::Null),
            Literal::Null => Err(error(
                pos,
                format!(
                    "The operator {} cannot compare with null at position {pos}; only -eq and -ne can.",
                    op.name()
                ),
            )),
            Literal::Bool(b) if def.ty == Type::Bool => Ok(Operand::Text(b.to_string())),
            Literal::Text(t) | Literal::Bare(t) if def.ty == Type::Bool => {
                let lower = t.to_ascii_lowercase();
                if lower == "true" || lower == "false" {
                    Ok(Operand::Text(lower))
                } else {
                    Err(error(
                        pos,
                        format!(
                            "device.{} takes true or false, not \"{}\", at position {pos}.",
                            def.name,
                            shorten(&t)
                        ),
                    ))
                }
            }
            Literal::Bool(b) => Err(error(
                pos,
                format!(
                    "device.{} takes {}, not {b}, at position {pos}.",
                    def.name,
                    if def.ty == Type::Version {
                        "a version"
                    } else {
                        "a quoted string"
                    }
                ),
            )),
            Literal::Text(t) | Literal::Bare(t) if def.ty == Type::Version => {
                parse_version(&t).map(Operand::Version).ok_or_else(|| {
                    error(
                        pos,
                        format!(
                            "\"{}\" at position {pos} is not a version such as 10.0.22631.3235.",
                            shorten(&t)
                        ),
                    )
                })
            }
            Literal::Text(t) | Literal::Bare(t) if matches!(op, Match | NotMatch) => {
                compile_regex(&t, pos).map(Operand::Regex)
            }
            Literal::Text(t) | Literal::Bare(t) => Ok(Operand::Text(t.to_lowercase())),
        }
    }

    /// `-any`/`-all` and its condition; `op` is the quantifier.
    fn parse_quantified(
        &mut self,
        def: &'static PropDef,
        op: Op,
        op_pos: usize,
        pos: usize,
    ) -> Result<Node, RuleSyntaxError> {
        let (item_def, item_name) = match def.ty {
            Type::Groups => {
                if self.member_of.is_none() {
                    self.member_of = Some(pos);
                }
                (&GROUP_ITEM, "group.objectId")
            }
            _ => (&PHYSICAL_ID_ITEM, "_"),
        };
        self.enter(op_pos)?;
        let open = match self.peek().tok {
            Tok::Open => {
                let open = self.peek().pos;
                self.at += 1;
                Some(open)
            }
            _ => None,
        };
        let token = self.bump();
        match token.tok {
            Tok::Word(w) if w.eq_ignore_ascii_case(item_name) => {}
            _ => {
                return Err(error(
                    token.pos,
                    format!(
                        "Expected {item_name} after {} at position {}, found {}.",
                        op.name(),
                        token.pos,
                        token.describe()
                    ),
                ))
            }
        }
        let (item_op, _) = self.parse_operator(item_def, item_name)?;
        let operand = self.parse_operand(item_def, item_op)?;
        if let Some(open) = open {
            self.expect_close(open)?;
        }
        self.depth -= 1;
        Ok(Node::Quant {
            prop: def.prop,
            all: op == All,
            op: item_op,
            operand,
        })
    }
}

fn compile_regex(pattern: &str, pos: usize) -> Result<Regex, RuleSyntaxError> {
    RegexBuilder::new(pattern)
        .case_insensitive(true)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .nest_limit(MAX_DEPTH as u32)
        .build()
        .map_err(|e| {
            let detail = match &e {
                regex::Error::CompiledTooBig(_) => "it is too large".to_owned(),
                _ => {
                    let text = e.to_string();
                    // The syntax error's last line is "error: what is wrong".
                    text.lines()
                        .rev()
                        .find_map(|l| l.trim().strip_prefix("error: "))
                        .unwrap_or(text.lines().next().unwrap_or("invalid"))
                        .to_owned()
                }
            };
            error(
                pos,
                format!("The regular expression at position {pos} is invalid: {detail}."),
            )
        })
}

/// Dotted decimal numbers (`10.0.22631.3235`, `14`), each at most 20 digits.
fn parse_version(text: &str) -> Option<Vec<u64>> {
    text.trim()
        .split('.')
        .map(|part| {
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                None
            } else {
                part.parse().ok()
            }
        })
        .collect()
}

/// A device's version: the dotted numbers before any space or parenthesis ("14.2.1 (23C71)").
fn device_version(text: &str) -> Option<Vec<u64>> {
    let head = text
        .trim()
        .split(|c: char| c.is_whitespace() || c == '(')
        .next()
        .unwrap_or("");
    parse_version(head)
}

fn compare_versions(a: &[u64], b: &[u64]) -> Ordering {
    let len = a.len().max(b.len());
    (0..len)
        .map(|i| {
            let x = a.get(i).copied().unwrap_or(0);
            let y = b.get(i).copied().unwrap_or(0);
            x.cmp(&y)
        })
        .find(|o| o.is_ne())
        .unwrap_or(Ordering::Equal)
}

// ---------------------------------------------------------------------------------------------
// Evaluation

fn eval(node: &Node, device: &DeviceFacts) -> bool {
    match node {
        Node::And(items) => items.iter().all(|n| eval(n, device)),
        Node::Or(items) => items.iter().any(|n| eval(n, device)),
        Node::Not(inner) => !eval(inner, device),
        Node::Cmp { prop, op, operand } => test(*op, operand, read(*prop, device).as_deref()),
        Node::Quant {
            prop,
            all,
            op,
            operand,
        } => {
            let items: &[String] = match prop {
                Prop::PhysicalIds => &device.physical_ids,
                Prop::MemberOf => &device.member_of,
                _ => &[],
            };
            let mut results = items.iter().map(|item| test(*op, operand, Some(item)));
            if *all {
                results.all(|r| r)
            } else {
                results.any(|r| r)
            }
        }
    }
}

/// One comparison: negated operators are the exact negation of their positive form (so a null
/// value satisfies `-ne "x"`, `-notContains "x"`, `-notIn [...]`).
fn test(op: Op, operand: &Operand, value: Option<&str>) -> bool {
    if let Some(positive) = op.negates() {
        return !test(positive, operand, value);
    }
    let Some(value) = value else {
        return op == Eq && matches!(operand, Operand::Null);
    };
    match operand {
        Operand::Null => false,
        Operand::Text(want) => {
            let have = value.to_lowercase();
            match op {
                Eq => have == *want,
                StartsWith => have.starts_with(want.as_str()),
                EndsWith => have.ends_with(want.as_str()),
                Contains => have.contains(want.as_str()),
                _ => false,
            }
        }
        Operand::List(items) => {
            let have = value.to_lowercase();
            op == In && items.contains(&have)
        }
        Operand::Regex(re) => op == Match && re.is_match(value),
        Operand::Version(want) => {
            let Some(have) = device_version(value) else {
                return false;
            };
            let order = compare_versions(&have, want);
            match op {
                Eq => order.is_eq(),
                Gt => order.is_gt(),
                Ge => order.is_ge(),
                Lt => order.is_lt(),
                Le => order.is_le(),
                _ => false,
            }
        }
    }
}

/// The value a property reads, in the spelling of its dialect.
fn read(prop: Prop, d: &DeviceFacts) -> Option<Cow<'_, str>> {
    fn text(value: &Option<String>) -> Option<Cow<'_, str>> {
        value.as_deref().map(Cow::Borrowed)
    }
    fn flag(value: Option<bool>) -> Option<Cow<'static, str>> {
        value.map(|b| Cow::Borrowed(if b { "true" } else { "false" }))
    }
    let renamed = |value: &Option<String>, names: &[(&str, Option<&'static str>)]| {
        let v = value.as_deref()?;
        match names
            .iter()
            .find(|(member, _)| member.eq_ignore_ascii_case(v))
        {
            Some((_, spelled)) => spelled.map(Cow::Borrowed),
            None => Some(Cow::Owned(v.to_owned())),
        }
    };
    match prop {
        Prop::DeviceName => text(&d.device_name),
        Prop::DeviceId => text(&d.device_id),
        Prop::ObjectId => text(&d.object_id),
        Prop::EntraOsType => renamed(&d.operating_system, &[("macOS", Some("MacMDM"))]),
        Prop::OsVersion => text(&d.os_version),
        Prop::Manufacturer => text(&d.manufacturer),
        Prop::Model => text(&d.model),
        Prop::EntraOwnership => renamed(
            &d.ownership,
            &[
                ("company", Some("Company")),
                ("personal", Some("Personal")),
                ("unknown", Some("Unknown")),
                ("unknownFutureValue", Some("Unknown")),
            ],
        ),
        Prop::FilterOwnership => renamed(
            &d.ownership,
            &[
                ("company", Some("Corporate")),
                ("personal", Some("Personal")),
                ("unknown", Some("Unknown")),
                ("unknownFutureValue", Some("Unknown")),
            ],
        ),
        Prop::EntraTrustType => renamed(
            &d.join_type,
            &[
                ("azureADJoined", Some("AzureAD")),
                ("hybridAzureADJoined", Some("ServerAD")),
                ("azureADRegistered", Some("Workplace")),
                ("unknown", None),
            ],
        ),
        Prop::FilterTrustType => renamed(
            &d.join_type,
            &[
                ("azureADJoined", Some("Azure AD joined")),
                ("hybridAzureADJoined", Some("Hybrid Azure AD joined")),
                ("azureADRegistered", Some("Azure AD registered")),
                ("unknown", Some("Unknown")),
            ],
        ),
        Prop::ManagementType => text(&d.management_type),
        Prop::ManagementAppId => text(&d.device_management_app_id),
        Prop::EnrollmentProfileName => text(&d.enrollment_profile_name),
        Prop::DeviceCategory => text(&d.device_category),
        Prop::AccountEnabled => flag(d.account_enabled),
        Prop::IsRooted => flag(d.is_rooted),
        Prop::ProfileType => text(&d.profile_type),
        Prop::SystemLabels => text(&d.system_labels),
        Prop::ExtensionAttribute(i) => d.extension_attributes.get(i).and_then(text),
        Prop::CpuArchitecture => text(&d.cpu_architecture),
        Prop::OperatingSystemSku => text(&d.operating_system_sku),
        Prop::DeviceManagementType => text(&d.device_management_type),
        Prop::PhysicalIds | Prop::MemberOf => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEVICE_ID: &str = "d4fe7726-5966-431c-b3b8-cddc8fdb717d";
    const OBJECT_ID: &str = "aaaaaaaa-0000-1111-2222-bbbbbbbbbbbb";

    /// A corporate Windows 11 lab machine, as `of_managed_device` would describe it.
    fn lab() -> DeviceFacts {
        DeviceFacts {
            device_name: Some("LAB-042".into()),
            device_id: Some(DEVICE_ID.into()),
            object_id: Some(OBJECT_ID.into()),
            operating_system: Some("Windows".into()),
            os_version: Some("10.0.22631.3235".into()),
            manufacturer: Some("Dell Inc.".into()),
            model: Some("Latitude 7440".into()),
            ownership: Some("company".into()),
            join_type: Some("azureADJoined".into()),
            management_type: Some("MDM".into()),
            device_management_app_id: Some(INTUNE_APP_ID.into()),
            account_enabled: Some(true),
            ..DeviceFacts::default()
        }
    }

    /// A personal Mac with little known about it.
    fn mac() -> DeviceFacts {
        DeviceFacts {
            device_name: Some("Sara's MacBook".into()),
            operating_system: Some("macOS".into()),
            os_version: Some("14.2.1 (23C71)".into()),
            manufacturer: Some("Apple".into()),
            model: Some("MacBookPro18,3".into()),
            ownership: Some("personal".into()),
            join_type: Some("unknown".into()),
            is_rooted: Some(false),
            ..DeviceFacts::default()
        }
    }

    fn check(dialect: Dialect, device: &DeviceFacts, cases: &[(&str, bool)]) {
        for &(text, want) in cases {
            let rule = parse(text, dialect)
                .unwrap_or_else(|e| panic!("{dialect:?} rule {text:?} does not parse: {e}"));
            assert_eq!(rule.matches(device), want, "{dialect:?} rule {text:?}");
        }
    }

    fn err(text: &str, dialect: Dialect) -> String {
        match parse(text, dialect) {
            Ok(rule) => panic!("{dialect:?} rule {text:?} parsed: {rule:?}"),
            Err(e) => e.message,
        }
    }

    #[test]
    fn membership_operators() {
        check(
            Dialect::Membership,
            &lab(),
            &[
                (r#"device.displayName -eq "LAB-042""#, true),
                (r#"device.displayName -eq "lab-042""#, true),
                (r#"device.displayName -eq "LAB-04""#, false),
                (r#"device.displayName -ne "LAB-042""#, false),
                (r#"device.displayName -ne "other""#, true),
                (r#"device.displayName -startsWith "lab-""#, true),
                (r#"device.displayName -startsWith "042""#, false),
                (r#"device.displayName -notStartsWith "LAB-""#, false),
                (r#"device.displayName -notStartsWith "PC-""#, true),
                (r#"device.displayName -endsWith "-042""#, true),
                (r#"device.displayName -endsWith "LAB""#, false),
                (r#"device.displayName -notEndsWith "042""#, false),
                (r#"device.displayName -notEndsWith "043""#, true),
                (r#"device.deviceModel -contains "itude""#, true),
                (r#"device.deviceModel -contains "VM""#, false),
                (r#"device.deviceModel -notContains "VM""#, true),
                (r#"device.deviceModel -notContains "LATITUDE""#, false),
                (r#"device.deviceManufacturer -in ["Dell Inc.","HP"]"#, true),
                (r#"device.deviceManufacturer -in ['HP', 'Lenovo']"#, false),
                (r#"device.deviceManufacturer -in []"#, false),
                (r#"device.deviceManufacturer -notIn ["HP", "Lenovo"]"#, true),
                (r#"device.deviceManufacturer -notIn ["dell inc."]"#, false),
                (r#"device.displayName -match "^lab-[0-9]+$""#, true),
                (r#"device.displayName -match "^pc""#, false),
                (r#"device.displayName -match "04""#, true),
                (r#"device.displayName -notMatch "^lab""#, false),
                (r#"device.displayName -notMatch "^pc""#, true),
                (r#"device.accountEnabled -eq true"#, true),
                (r#"device.accountEnabled -eq "True""#, true),
                (r#"device.accountEnabled -ne true"#, false),
                (r#"device.accountEnabled -eq false"#, false),
                (r#"device.isRooted -eq true"#, false),
                (r#"device.isRooted -eq false"#, false),
                (r#"device.isRooted -eq null"#, true),
                (r#"device.isRooted -ne false"#, true),
            ],
        );
    }

    #[test]
    fn membership_properties() {
        let mut device = lab();
        device.extension_attributes[14] = Some("Marketing".into());
        device.physical_ids = vec!["[ZTDId]:abc".into(), "[OrderId]:42".into()];
        device.member_of = vec!["11111111-2222-3333-4444-555555555555".into()];
        check(
            Dialect::Membership,
            &device,
            &[
                (r#"device.deviceOSType -eq "Windows""#, true),
                (r#"device.deviceOSVersion -startsWith "10.0.2""#, true),
                (&format!(r#"device.deviceId -eq "{DEVICE_ID}""#), true),
                (
                    &format!(r#"device.objectId -eq "{}""#, OBJECT_ID.to_uppercase()),
                    true,
                ),
                (r#"device.objectId -ne null"#, true),
                (r#"device.deviceOwnership -eq "Company""#, true),
                (r#"device.deviceOwnership -eq "Corporate""#, false),
                (r#"device.deviceTrustType -eq "AzureAD""#, true),
                (r#"device.managementType -eq "MDM""#, true),
                (
                    &format!(r#"device.deviceManagementAppId -eq "{INTUNE_APP_ID}""#),
                    true,
                ),
                (r#"device.enrollmentProfileName -eq null"#, true),
                (r#"device.enrollmentProfileName -ne null"#, false),
                (r#"device.enrollmentProfileName -ne "Autopilot""#, true),
                (r#"device.enrollmentProfileName -startsWith "Auto""#, false),
                (
                    r#"device.enrollmentProfileName -notStartsWith "Auto""#,
                    true,
                ),
                (r#"device.enrollmentProfileName -notIn ["a"]"#, true),
                (r#"device.enrollmentProfileName -notMatch ".""#, true),
                (r#"device.deviceCategory -eq null"#, true),
                (r#"device.profileType -eq null"#, true),
                (r#"device.systemLabels -startsWith "M365Managed""#, false),
                (r#"device.extensionAttribute15 -eq "marketing""#, true),
                (r#"device.extensionAttribute1 -eq null"#, true),
                (
                    r#"device.devicePhysicalIds -any _ -startsWith "[ZTDId]""#,
                    true,
                ),
                (
                    r#"(device.devicePhysicalIDs -any (_ -eq "[OrderID]:42"))"#,
                    true,
                ),
                (
                    r#"device.devicePhysicalIds -any _ -eq "[OrderID]:43""#,
                    false,
                ),
                (r#"device.devicePhysicalIds -all _ -startsWith "[""#, true),
                (
                    r#"device.devicePhysicalIds -all (_ -startsWith "[ZTD")"#,
                    false,
                ),
                (
                    r#"device.memberOf -any (group.objectId -in ['11111111-2222-3333-4444-555555555555'])"#,
                    true,
                ),
                (
                    r#"device.memberof -any (group.objectid -in ["99999999-2222-3333-4444-555555555555"])"#,
                    false,
                ),
            ],
        );
        // Nothing known: -any is false and -all true over an empty collection.
        check(
            Dialect::Membership,
            &DeviceFacts::default(),
            &[
                (
                    r#"device.devicePhysicalIds -any _ -startsWith "[ZTDId]""#,
                    false,
                ),
                (
                    r#"device.devicePhysicalIds -all _ -startsWith "[ZTDId]""#,
                    true,
                ),
                (r#"device.objectId -ne null"#, false),
                (r#"device.displayName -ne "x""#, true),
                (r#"device.displayName -eq """#, false),
            ],
        );
        check(
            Dialect::Membership,
            &mac(),
            &[
                (r#"device.deviceOSType -eq "MacMDM""#, true),
                (r#"device.deviceOwnership -eq "Personal""#, true),
                (r#"device.deviceTrustType -eq null"#, true),
                (r#"device.displayName -eq "Sara's MacBook""#, true),
                (r#"device.displayName -eq 'Sara''s MacBook'"#, true),
                (r#"device.isRooted -eq false"#, true),
            ],
        );
    }

    #[test]
    fn membership_logic_precedence_and_case() {
        check(
            Dialect::Membership,
            &lab(),
            &[
                (
                    r#"(device.deviceOSType -eq "Windows") -and (device.displayName -startsWith "LAB-")"#,
                    true,
                ),
                (
                    r#"(device.deviceOSType -eq "Windows") and (device.displayName -startsWith "PC-")"#,
                    false,
                ),
                (
                    r#"device.deviceOSType -eq "iOS" -or device.displayName -startsWith "LAB-""#,
                    true,
                ),
                // -and binds tighter than -or: true -or (false -and false).
                (
                    r#"device.displayName -eq "LAB-042" -or device.deviceModel -eq "x" -and device.deviceModel -eq "y""#,
                    true,
                ),
                // Parentheses override: (true -or false) -and false.
                (
                    r#"(device.displayName -eq "LAB-042" -or device.deviceModel -eq "x") -and device.deviceModel -eq "y""#,
                    false,
                ),
                // -not binds tighter than -and: (-not false) -and true.
                (
                    r#"-not device.deviceModel -contains "VM" -and device.accountEnabled -eq true"#,
                    true,
                ),
                (r#"-not (device.deviceModel -contains "VM")"#, true),
                (r#"not (device.deviceModel -contains "itude")"#, false),
                (r#"-not -not (device.deviceModel -contains "itude")"#, true),
                (
                    r#"(device.displayName -eq "x") -and -not (device.displayName -eq "y")"#,
                    false,
                ),
                (r#"((((device.displayName -eq "LAB-042"))))"#, true),
                (r#"DEVICE.DISPLAYNAME -EQ "lab-042""#, true),
                (r#"Device.DeviceOsType -STARTSWITH "win""#, true),
                (r#"device.displayName eq "LAB-042""#, true),
                (
                    r#"device.displayName startsWith "LAB" OR device.displayName -eq 1"#,
                    true,
                ),
                (r#"device.displayName -in ["lab-042"]"#, true),
                (r#"device.deviceOSVersion -startsWith 10.0"#, true),
                ("device.displayName\t-eq\n\"LAB-042\"", true),
                (
                    r#"(device.displayName -eq "LAB-042")-and(device.accountEnabled -eq true)"#,
                    true,
                ),
            ],
        );
    }

    #[test]
    fn filter_operators_and_properties() {
        check(
            Dialect::Filter,
            &lab(),
            &[
                (
                    r#"(device.deviceName -startsWith "LAB") and (device.osVersion -startsWith "10.0.22")"#,
                    true,
                ),
                (
                    r#"(device.manufacturer -in ["Dell", "HP"]) or (device.model -eq "Surface")"#,
                    false,
                ),
                (
                    r#"(device.manufacturer -in ["Dell Inc.", "HP"]) -or (device.model -eq "Surface")"#,
                    true,
                ),
                (r#"device.deviceName -eq "lab-042""#, true),
                (r#"device.deviceName -ne "lab-042""#, false),
                (r#"device.deviceName -contains "B-0""#, true),
                (r#"device.deviceName -notContains "B-0""#, false),
                (r#"device.model -notIn ["Surface Book 3"]"#, true),
                (r#"device.manufacturer startsWith "dell""#, true),
                (r#"device.deviceOwnership -eq "Corporate""#, true),
                (r#"device.deviceOwnership -eq "Company""#, false),
                (r#"device.deviceOwnership -ne "Personal""#, true),
                (r#"device.deviceTrustType -eq "Azure AD joined""#, true),
                (
                    r#"device.deviceTrustType -in ["Hybrid Azure AD joined","Azure AD joined"]"#,
                    true,
                ),
                (
                    r#"device.deviceTrustType -notIn ["Azure AD registered"]"#,
                    true,
                ),
                (r#"device.operatingSystemVersion -eq 10.0.22631.3235"#, true),
                (
                    r#"device.operatingSystemVersion -eq "10.0.22631.3235""#,
                    true,
                ),
                (
                    r#"device.operatingSystemVersion -ne 10.0.22631.3235"#,
                    false,
                ),
                (r#"device.operatingSystemVersion -gt 10.0.22000.1000"#, true),
                (
                    r#"device.operatingSystemVersion -gt 10.0.22631.3235"#,
                    false,
                ),
                (r#"device.operatingSystemVersion -ge 10.0.22631.3235"#, true),
                (
                    r#"device.operatingSystemVersion -lt 10.0.22631.10000"#,
                    true,
                ),
                (r#"device.operatingSystemVersion -le 10.0.22631"#, false),
                (r#"device.operatingSystemVersion -lt 11"#, true),
                (r#"device.enrollmentProfileName -ne $null"#, false),
                (r#"device.enrollmentProfileName -eq $NULL"#, true),
                (r#"device.enrollmentProfileName -eq Null"#, true),
                (r#"device.isRooted -eq "True""#, false),
                (r#"device.isRooted -eq $null"#, true),
                (r#"device.cpuArchitecture -eq "arm64""#, false),
                (r#"device.cpuArchitecture -ne "arm64""#, true),
                (
                    r#"device.operatingSystemSKU -startsWith "Enterprise""#,
                    false,
                ),
                (r#"device.deviceCategory -eq null"#, true),
                (r#"device.deviceManagementType -eq null"#, true),
                // and binds tighter than or.
                (
                    r#"(device.model -startsWith "Precision") or (device.model -startsWith "Latitude") and (device.enrollmentProfileName -eq "x")"#,
                    false,
                ),
                (
                    r#"(device.deviceName -eq "LAB-042") or (device.model -eq "x") and (device.model -eq "y")"#,
                    true,
                ),
                (
                    r#"((device.deviceName -eq "LAB-042") and ((device.model -contains "7440")))"#,
                    true,
                ),
                (
                    r#"DEVICE.MANUFACTURER -EQ "DELL INC." AND Device.Model -Contains "latitude""#,
                    true,
                ),
            ],
        );
        check(
            Dialect::Filter,
            &mac(),
            &[
                (r#"device.operatingSystemVersion -eq 14.2.1"#, true),
                (r#"device.operatingSystemVersion -ge 14.2"#, true),
                (r#"device.operatingSystemVersion -lt 14.2.1"#, false),
                (r#"device.osVersion -in ["14.2.1 (23C71)"]"#, true),
                (r#"device.deviceOwnership -eq "Personal""#, true),
                (r#"device.deviceTrustType -eq "Unknown""#, true),
                (r#"device.isRooted -eq "False""#, true),
                (r#"device.isRooted -ne false"#, false),
                (r#"device.deviceName -eq "Sara's MacBook""#, true),
            ],
        );
        // A version that is not dotted numbers never compares, and -ne is its negation.
        let mut odd = lab();
        odd.os_version = Some("unknown".into());
        check(
            Dialect::Filter,
            &odd,
            &[
                (r#"device.operatingSystemVersion -gt 1"#, false),
                (r#"device.operatingSystemVersion -le 99"#, false),
                (r#"device.operatingSystemVersion -ne 10.0"#, true),
            ],
        );
    }

    #[test]
    fn errors_name_what_and_where() {
        use Dialect::{Filter, Membership};
        let cases: &[(&str, Dialect, &str)] = &[
            (
                r#"device.foo -eq "x""#,
                Membership,
                "Unsupported property 'device.foo' at position 0.",
            ),
            (
                r#"(device.deviceOSType -eq "Windows") -and (device.foo -eq "x")"#,
                Membership,
                "Unsupported property 'device.foo' at position 42.",
            ),
            (
                r#"user.department -eq "Sales""#,
                Membership,
                "Unsupported property 'user.department' at position 0.",
            ),
            (
                r#"device.deviceName -eq "x""#,
                Membership,
                "Unsupported property 'device.deviceName' at position 0.",
            ),
            (
                r#"device.displayName -eq "x""#,
                Filter,
                "Unsupported property 'device.displayName' at position 0.",
            ),
            (
                r#"device.isTpmAttested -eq true"#,
                Filter,
                "Unsupported property 'device.isTpmAttested' at position 0.",
            ),
            (
                r#"device.extensionAttribute16 -eq "x""#,
                Membership,
                "Unsupported property 'device.extensionAttribute16' at position 0.",
            ),
            (
                r#"device.displayName -like "x""#,
                Membership,
                "Unsupported operator '-like' at position 19.",
            ),
            (
                r#"device.deviceName -endsWith "x""#,
                Filter,
                "Unsupported operator '-endsWith' at position 18. Assignment filter rules support -eq, -ne, -startsWith, -contains, -notContains, -in and -notIn (and -gt, -ge, -lt, -le for device.operatingSystemVersion).",
            ),
            (
                r#"device.deviceName -match "x""#,
                Filter,
                "Unsupported operator '-match' at position 18. Assignment filter rules support -eq, -ne, -startsWith, -contains, -notContains, -in and -notIn (and -gt, -ge, -lt, -le for device.operatingSystemVersion).",
            ),
            (
                r#"not (device.deviceName -eq "x")"#,
                Filter,
                "Unsupported operator 'not' at position 0. Assignment filter rules have no negation; use -ne, -notIn or -notContains.",
            ),
            (
                r#"device.deviceOSVersion -ge "10""#,
                Membership,
                "Unsupported operator '-ge' at position 23. Membership rules of device groups support -eq, -ne, -startsWith, -notStartsWith, -endsWith, -notEndsWith, -contains, -notContains, -in, -notIn, -match and -notMatch (and -any, -all for device.devicePhysicalIds and device.memberOf).",
            ),
            (
                r#"device.deviceOwnership -startsWith "Corp""#,
                Filter,
                "The operator -startsWith cannot be used with device.deviceOwnership at position 23; use -eq or -ne.",
            ),
            (
                r#"device.cpuArchitecture -contains "arm""#,
                Filter,
                "The operator -contains cannot be used with device.cpuArchitecture at position 23; use -eq, -ne, -in or -notIn.",
            ),
            (
                r#"device.osVersion -gt 10"#,
                Filter,
                "The operator -gt cannot be used with device.osVersion at position 17; use -eq, -ne, -in, -notIn, -startsWith, -contains or -notContains.",
            ),
            (
                r#"device.isRooted -contains "t""#,
                Membership,
                "The operator -contains cannot be used with device.isRooted at position 16; use -eq or -ne.",
            ),
            (
                r#"device.devicePhysicalIds -eq "x""#,
                Membership,
                "The operator -eq cannot be used with device.devicePhysicalIds at position 25; use -any or -all.",
            ),
            (
                r#"device.memberOf -any (group.objectId -eq "x")"#,
                Membership,
                "The operator -eq cannot be used with device.memberOf at position 37; use -in.",
            ),
            (
                r#"device.memberOf -any (group.objectId -in ["x"]) -or device.displayName -eq "y""#,
                Membership,
                "device.memberOf at position 0 cannot be combined with other expressions.",
            ),
            (
                r#"device.devicePhysicalIds -any (x -eq "y")"#,
                Membership,
                "Expected _ after -any at position 31, found 'x'.",
            ),
            (
                r#"device.deviceManufacturer -in "Dell""#,
                Membership,
                "The operator -in needs a list of values, such as [\"a\", \"b\"], at position 30.",
            ),
            (
                r#"device.manufacturer -notIn "Dell""#,
                Filter,
                "The operator -notIn needs a list of values, such as [\"a\", \"b\"], at position 27.",
            ),
            (
                r#"device.deviceManufacturer -eq ["Dell"]"#,
                Membership,
                "The operator -eq needs a single value, not a list, at position 30.",
            ),
            (
                r#"device.deviceManufacturer -in ["Dell" "HP"]"#,
                Membership,
                "Expected ',' or ']' in the list at position 30, found the string \"HP\" at position 38.",
            ),
            (
                r#"device.deviceManufacturer -in ["Dell", null]"#,
                Membership,
                "Expected a quoted string in the list at position 30, found 'null' at position 39.",
            ),
            (
                r#"device.displayName -startsWith null"#,
                Membership,
                "The operator -startsWith cannot compare with null at position 31; only -eq and -ne can.",
            ),
            (
                r#"device.displayName -eq true"#,
                Membership,
                "device.displayName takes a quoted string, not true, at position 23.",
            ),
            (
                r#"device.accountEnabled -eq "yes""#,
                Membership,
                "device.accountEnabled takes true or false, not \"yes\", at position 26.",
            ),
            (
                r#"device.operatingSystemVersion -gt "10.0.x""#,
                Filter,
                "\"10.0.x\" at position 34 is not a version such as 10.0.22631.3235.",
            ),
            (
                r#"device.operatingSystemVersion -gt 14.1.2a"#,
                Filter,
                "\"14.1.2a\" at position 34 is not a version such as 10.0.22631.3235.",
            ),
            (
                r#"(device.displayName -eq "x""#,
                Membership,
                "Expected a closing parenthesis at position 27 for the '(' at position 0, found the end of the rule.",
            ),
            (
                r#"(device.displayName -eq "x" device.displayName -eq "y")"#,
                Membership,
                "Expected a closing parenthesis at position 28 for the '(' at position 0, found 'device.displayName'.",
            ),
            (
                r#"device.displayName -eq "x")"#,
                Membership,
                "Unexpected ')' at position 26.",
            ),
            (
                r#"device.displayName -eq "x" device.displayName -eq "y""#,
                Membership,
                "Expected -and, -or or the end of the rule at position 27, found 'device.displayName'.",
            ),
            (
                r#"(device.deviceName -eq "x") (device.deviceName -eq "y")"#,
                Filter,
                "Expected and, or or the end of the rule at position 28, found '('.",
            ),
            (
                r#"device.displayName -eq"#,
                Membership,
                "Expected a value after -eq at position 22, found the end of the rule.",
            ),
            (
                r#"device.displayName -eq Windows"#,
                Membership,
                "Expected a value after -eq at position 23, found 'Windows'.",
            ),
            (
                r#"device.displayName "x""#,
                Membership,
                "Expected an operator after 'device.displayName' at position 19, found the string \"x\".",
            ),
            (
                r#"device.displayName -and "x""#,
                Membership,
                "Expected an operator after 'device.displayName' at position 19, found '-and'.",
            ),
            (
                r#"-and device.displayName -eq "x""#,
                Membership,
                "Expected a property such as device.displayName at position 0, found '-and'.",
            ),
            (
                r#"device.displayName -eq "x" -and"#,
                Membership,
                "Expected a property such as device.displayName at position 31, found the end of the rule.",
            ),
            (
                r#"device.deviceName -eq "x" and ()"#,
                Filter,
                "Expected a property such as device.deviceName at position 31, found ')'.",
            ),
            (
                r#"device.displayName -eq "x"#,
                Membership,
                "The string that starts at position 23 has no closing quote.",
            ),
            (
                r#"device.displayName -eq "x" & device.accountEnabled -eq true"#,
                Membership,
                "Unexpected character '&' at position 27.",
            ),
            (
                r#"device.displayName –eq "x""#,
                Membership,
                "Unexpected character '–' at position 19.",
            ),
            ("", Membership, "The rule is empty."),
            ("  \n ", Filter, "The rule is empty."),
        ];
        for &(text, dialect, want) in cases {
            assert_eq!(err(text, dialect), want, "{dialect:?} rule {text:?}");
        }
    }

    #[test]
    fn invalid_regex_is_a_parse_error() {
        let message = err(
            r#"device.displayName -match "lab[0-9""#,
            Dialect::Membership,
        );
        assert!(
            message.starts_with("The regular expression at position 26 is invalid: "),
            "{message}"
        );
        assert!(!message.contains('\n'), "{message}");
        let message = err(r#"device.displayName -notMatch "(a""#, Dialect::Membership);
        assert!(message.contains("position 29 is invalid"), "{message}");
        // A pattern whose compiled form exceeds the size limit.
        let message = err(
            r#"device.displayName -match "\w{1000}\w{1000}\w{1000}""#,
            Dialect::Membership,
        );
        assert_eq!(
            message,
            "The regular expression at position 26 is invalid: it is too large."
        );
        // Regex matching ignores case, as Entra's does.
        let rule = parse(
            r#"device.displayName -match "^LAB-\d+$""#,
            Dialect::Membership,
        )
        .unwrap();
        let mut device = lab();
        device.device_name = Some("lab-7".into());
        assert!(rule.matches(&device));
    }

    #[test]
    fn limits() {
        let clause = r#"device.displayName -eq "x" -or "#;
        let mut long = clause.repeat(MAX_RULE_CHARS / clause.len());
        long.push_str(r#"device.displayName -eq "LAB-042""#);
        assert!(long.chars().count() > MAX_RULE_CHARS);
        assert_eq!(
            err(&long, Dialect::Membership),
            format!(
                "The rule is {} characters long; the maximum is 3072.",
                long.chars().count()
            )
        );
        // Exactly at the limit is fine (counted in characters, not bytes).
        let name = "é".repeat(MAX_RULE_CHARS - r#"device.displayName -eq """#.len());
        let exact = format!(r#"device.displayName -eq "{name}""#);
        assert_eq!(exact.chars().count(), MAX_RULE_CHARS);
        assert!(exact.len() > MAX_RULE_CHARS);
        assert!(parse(&exact, Dialect::Membership).is_ok());

        let nested = |n: usize| {
            format!(
                r#"{}device.displayName -eq "LAB-042"{}"#,
                "(".repeat(n),
                ")".repeat(n)
            )
        };
        assert!(parse(&nested(MAX_DEPTH), Dialect::Membership)
            .unwrap()
            .matches(&lab()));
        assert_eq!(
            err(&nested(MAX_DEPTH + 1), Dialect::Membership),
            "The rule is nested too deeply at position 64 (the maximum depth is 64)."
        );
        let nots = |n: usize| format!(r#"{}device.displayName -eq "LAB-042""#, "-not ".repeat(n));
        assert!(!parse(&nots(MAX_DEPTH - 1), Dialect::Membership)
            .unwrap()
            .matches(&lab()));
        assert!(parse(&nots(MAX_DEPTH), Dialect::Membership)
            .unwrap()
            .matches(&lab()));
        assert!(err(&nots(MAX_DEPTH + 1), Dialect::Membership)
            .starts_with("The rule is nested too deeply"));
        // Far deeper than the limit, within the length cap: an error, not a stack overflow.
        assert!(err(&"(".repeat(3000), Dialect::Membership)
            .starts_with("The rule is nested too deeply"));
        assert!(err(&"-not ".repeat(600), Dialect::Membership)
            .starts_with("The rule is nested too deeply"));
        assert!(err(&"(".repeat(100_000), Dialect::Membership)
            .starts_with("The rule is 100000 characters long"));
    }

    #[test]
    fn of_managed_device_reads_the_record() {
        use crate::model::MANAGED_DEVICE;
        let mut record = Record::with_defaults(&MANAGED_DEVICE);
        let set_enum = |record: &mut Record, name: &str, member: &str| {
            let (_, property) = MANAGED_DEVICE.property(name).unwrap();
            let Kind::Enum(e) = property.kind else {
                panic!("{name} is not an enum")
            };
            record.set(name, Value::Enum(e.value_of(member).unwrap()));
        };
        record.set("deviceName", Value::Str("LAB-042".into()));
        record.set("operatingSystem", Value::Str("Windows".into()));
        record.set("osVersion", Value::Str("10.0.22631.3235".into()));
        record.set("azureADDeviceId", Value::Str(DEVICE_ID.into()));
        record.set("manufacturer", Value::Str("Dell Inc.".into()));
        record.set("model", Value::Str("".into()));
        set_enum(&mut record, "ownerType", "company");
        set_enum(&mut record, "joinType", "hybridAzureADJoined");
        let facts = DeviceFacts::of_managed_device(&record, OBJECT_ID);
        assert_eq!(facts.device_name.as_deref(), Some("LAB-042"));
        assert_eq!(facts.device_id.as_deref(), Some(DEVICE_ID));
        assert_eq!(facts.object_id.as_deref(), Some(OBJECT_ID));
        assert_eq!(facts.model, None, "an empty string is null");
        assert_eq!(facts.ownership.as_deref(), Some("company"));
        assert_eq!(facts.join_type.as_deref(), Some("hybridAzureADJoined"));
        assert_eq!(facts.management_type.as_deref(), Some("MDM"));
        assert_eq!(facts.account_enabled, Some(true));
        assert_eq!(
            facts.device_management_app_id.as_deref(),
            Some(INTUNE_APP_ID)
        );
        check(
            Dialect::Membership,
            &facts,
            &[
                (r#"device.deviceOwnership -eq "Company""#, true),
                (r#"device.deviceTrustType -eq "ServerAD""#, true),
                (r#"device.deviceModel -eq null"#, true),
                (
                    r#"(device.deviceOSType -eq "Windows") -and (device.managementType -eq "MDM")"#,
                    true,
                ),
            ],
        );
        check(
            Dialect::Filter,
            &facts,
            &[
                (r#"device.deviceOwnership -eq "Corporate""#, true),
                (
                    r#"device.deviceTrustType -eq "Hybrid Azure AD joined""#,
                    true,
                ),
                (r#"device.operatingSystemVersion -ge 10.0.22000"#, true),
            ],
        );

        // Unknown ownerType falls back to managedDeviceOwnerType; co-management shows in the app id.
        set_enum(&mut record, "ownerType", "unknown");
        set_enum(&mut record, "managedDeviceOwnerType", "personal");
        set_enum(
            &mut record,
            "managementAgent",
            "configurationManagerClientMdm",
        );
        let facts = DeviceFacts::of_managed_device(&record, "");
        assert_eq!(facts.ownership.as_deref(), Some("personal"));
        assert_eq!(facts.object_id, None);
        assert_eq!(
            facts.device_management_app_id.as_deref(),
            Some(CONFIGMGR_APP_ID)
        );
        set_enum(&mut record, "managedDeviceOwnerType", "unknown");
        let facts = DeviceFacts::of_managed_device(&record, OBJECT_ID);
        assert_eq!(facts.ownership.as_deref(), Some("unknown"));
        check(
            Dialect::Filter,
            &facts,
            &[(r#"device.deviceOwnership -eq "unknown""#, true)],
        );
    }

    /// xorshift64*: a small deterministic generator, so failures reproduce.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[test]
    fn parse_never_panics_on_random_rules() {
        const PIECES: &[&str] = &[
            "(",
            ")",
            "[",
            "]",
            ",",
            "\"",
            "'",
            "`",
            " ",
            " ",
            " ",
            "-",
            ".",
            "_",
            "$",
            "\\",
            "device.",
            "device.displayName",
            "device.deviceName",
            "device.deviceOSVersion",
            "device.operatingSystemVersion",
            "device.isRooted",
            "device.accountEnabled",
            "device.devicePhysicalIds",
            "device.memberOf",
            "group.objectId",
            "device.deviceOwnership",
            "device.extensionAttribute7",
            "-eq",
            "eq",
            "-ne",
            "-startsWith",
            "-notStartsWith",
            "-endsWith",
            "-contains",
            "-notContains",
            "-in",
            "-notIn",
            "-match",
            "-notMatch",
            "-gt",
            "-le",
            "-any",
            "-all",
            "-and",
            "and",
            "-or",
            "or",
            "-not",
            "not",
            "true",
            "false",
            "null",
            "$null",
            "10.0.22631",
            "1",
            "0x",
            "\"LAB\"",
            "'x'",
            "\"[a-\"",
            "\"(a|b)*\"",
            "\"\\\\\"",
            "\"\"",
            "''",
            "`\"",
            "é",
            "\u{0}",
            "\u{2013}",
            "\n",
            "*",
            "a",
            "Z",
            "[\"a\",\"b\"]",
            "[]",
        ];
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let devices = [DeviceFacts::default(), lab(), mac()];
        for round in 0..20_000 {
            let len = rng.below(24);
            let text: String = (0..len).map(|_| PIECES[rng.below(PIECES.len())]).collect();
            for dialect in [Dialect::Membership, Dialect::Filter] {
                match parse(&text, dialect) {
                    Ok(rule) => {
                        for device in &devices {
                            rule.matches(device);
                        }
                    }
                    Err(e) => {
                        assert!(e.message.ends_with('.'), "round {round}: {text:?}: {e}");
                        if let Some(pos) = e.position {
                            assert!(pos <= text.chars().count(), "round {round}: {text:?}: {e}");
                        }
                    }
                }
            }
        }
        // Valid rules with random cuts, insertions and repetitions: close to the grammar, so
        // most fail deep inside the parser and some still parse.
        const RULES: &[(&str, Dialect)] = &[
            (
                r#"(device.deviceOSType -eq "Windows") -and -not (device.displayName -startsWith "LAB-")"#,
                Dialect::Membership,
            ),
            (
                r#"device.deviceManufacturer -in ["Dell","HP"] -or device.displayName -match "^lab[0-9]+$""#,
                Dialect::Membership,
            ),
            (
                r#"device.devicePhysicalIds -any (_ -startsWith "[ZTDId]") -and device.accountEnabled -eq true"#,
                Dialect::Membership,
            ),
            (
                r#"device.memberOf -any (group.objectId -in ['11111111-2222-3333-4444-555555555555'])"#,
                Dialect::Membership,
            ),
            (
                r#"(device.deviceName -startsWith "LAB") and (device.operatingSystemVersion -ge 10.0.22000)"#,
                Dialect::Filter,
            ),
            (
                r#"((device.manufacturer -in ["Dell", "HP"]) or (device.isRooted -eq "True")) and (device.deviceOwnership -ne $null)"#,
                Dialect::Filter,
            ),
        ];
        let mut parsed = 0;
        for round in 0..20_000 {
            let (base, dialect) = RULES[rng.below(RULES.len())];
            let mut chars: Vec<char> = base.chars().collect();
            for _ in 0..1 + rng.below(3) {
                let at = rng.below(chars.len() + 1);
                match rng.below(3) {
                    0 => {
                        let end = (at + rng.below(8)).min(chars.len());
                        chars.drain(at..end);
                    }
                    1 => {
                        let piece = PIECES[rng.below(PIECES.len())];
                        chars.splice(at..at, piece.chars());
                    }
                    _ => {
                        let end = (at + rng.below(40)).min(chars.len());
                        let slice: Vec<char> = chars[at..end].to_vec();
                        chars.splice(at..at, slice);
                    }
                }
            }
            let text: String = chars.into_iter().collect();
            match parse(&text, dialect) {
                Ok(rule) => {
                    parsed += 1;
                    for device in &devices {
                        rule.matches(device);
                    }
                }
                Err(e) => assert!(e.message.ends_with('.'), "round {round}: {text:?}: {e}"),
            }
        }
        assert!(parsed > 100, "only {parsed} mutated rules parsed");
        // Arbitrary characters, too.
        for _ in 0..5_000 {
            let len = rng.below(40);
            let text: String = (0..len)
                .map(|_| char::from_u32(rng.below(0x3000) as u32).unwrap_or('?'))
                .collect();
            for dialect in [Dialect::Membership, Dialect::Filter] {
                let _ = parse(&text, dialect).map(|rule| rule.matches(&lab()));
            }
        }
    }
}
