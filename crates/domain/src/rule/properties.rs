//! The tables of each dialect: the operators ([`Op`]), which of them each dialect accepts, and
//! the properties ([`PropDef`]) a rule may name with their value type and allowed operators.

use super::Dialect;
use Op::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
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
    pub(super) fn lookup(word: &str) -> Option<Op> {
        let bare = word.strip_prefix('-').unwrap_or(word);
        OPS.iter()
            .find(|(name, _)| name[1..].eq_ignore_ascii_case(bare))
            .map(|&(_, op)| op)
    }

    pub(super) fn name(self) -> &'static str {
        OPS.iter()
            .find(|&&(_, op)| op == self)
            .map_or("?", |&(name, _)| name)
    }

    /// The operator this one negates.
    pub(super) fn negates(self) -> Option<Op> {
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
pub(super) fn logical(word: &str) -> Option<&'static str> {
    let bare = word.strip_prefix('-').unwrap_or(word);
    ["and", "or", "not"]
        .into_iter()
        .find(|l| l.eq_ignore_ascii_case(bare))
}

pub(super) const MEMBERSHIP_OPS: &[Op] = &[
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
pub(super) const FILTER_OPS: &[Op] = &[
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

/// What a property reads of [`DeviceFacts`](super::DeviceFacts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Prop {
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
pub(super) enum Type {
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
pub(super) struct PropDef {
    /// Canonical name, without `device.`.
    pub(super) name: &'static str,
    pub(super) prop: Prop,
    pub(super) ty: Type,
    pub(super) ops: &'static [Op],
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
pub(super) static PHYSICAL_ID_ITEM: PropDef = def(
    "devicePhysicalIds",
    Prop::PhysicalIds,
    Type::Text,
    ENTRA_TEXT,
);
/// The `group.objectId` of `memberOf -any (group.objectId -in [...])`.
pub(super) static GROUP_ITEM: PropDef = def("memberOf", Prop::MemberOf, Type::Text, IN);

pub(super) fn lookup_property(dialect: Dialect, name: &str) -> Option<&'static PropDef> {
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
pub(super) fn op_list(ops: &[Op]) -> String {
    let names: Vec<&str> = ops.iter().map(|op| op.name()).collect();
    match names.split_last() {
        None => String::new(),
        Some((last, [])) => (*last).to_owned(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}
