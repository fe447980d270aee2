//! Unit tests of the rule engine: what rules of both dialects match (operators, properties,
//! precedence, case, null) and the facts read from a managedDevice record; the helpers shared
//! with [`syntax`].

use super::*;

mod syntax;

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
