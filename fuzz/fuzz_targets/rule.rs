//! Device rules of both dialects (`remediate_domain::rule`): Entra dynamic membership rules and
//! Intune assignment filter rules. Parsing never panics; a rule that parses evaluates against
//! every device without panicking, and its meaning survives rewriting: surrounding whitespace
//! changes nothing, `( rule )` (when it still parses) matches the same devices, and in the
//! Membership dialect `-not ( rule )` (when it still parses) matches exactly the others.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use remediate_domain::rule::{parse, DeviceFacts, Dialect, MAX_RULE_CHARS};

fn some(s: &str) -> Option<String> {
    Some(s.to_owned())
}

/// A handful of devices covering null, filled, odd and collection-carrying facts.
fn devices() -> &'static [DeviceFacts] {
    static DEVICES: OnceLock<Vec<DeviceFacts>> = OnceLock::new();
    DEVICES.get_or_init(|| {
        let mut extension_attributes: [Option<String>; 15] = Default::default();
        extension_attributes[0] = some("marketing");
        extension_attributes[14] = some("");
        vec![
            DeviceFacts::default(),
            DeviceFacts {
                device_name: some("LAB-042"),
                device_id: some("d4fe7726-5966-431c-b3b8-cddc8fdb717d"),
                object_id: some("aaaaaaaa-0000-1111-2222-bbbbbbbbbbbb"),
                operating_system: some("Windows"),
                os_version: some("10.0.22631.3235"),
                manufacturer: some("Dell Inc."),
                model: some("Latitude 7440"),
                ownership: some("company"),
                join_type: some("azureADJoined"),
                management_type: some("MDM"),
                device_management_app_id: some("0000000a-0000-0000-c000-000000000000"),
                account_enabled: Some(true),
                is_rooted: Some(false),
                physical_ids: vec!["[ZTDId]:abc".into(), "[OrderID]:42".into()],
                member_of: vec!["11111111-2222-3333-4444-555555555555".into()],
                extension_attributes,
                ..DeviceFacts::default()
            },
            DeviceFacts {
                device_name: some("Sara's MacBook"),
                operating_system: some("macOS"),
                os_version: some("14.2.1 (23C71)"),
                manufacturer: some("Apple"),
                model: some("MacBookPro18,3"),
                ownership: some("personal"),
                join_type: some("unknown"),
                is_rooted: Some(true),
                cpu_architecture: some("arm64"),
                ..DeviceFacts::default()
            },
            DeviceFacts {
                device_name: some("ÄÖü ǅ İı ẞ\u{0}\u{301}"),
                os_version: some("99999999999999999999999.1.-1..x"),
                ownership: some("unknown"),
                join_type: some("hybridAzureADJoined"),
                account_enabled: Some(false),
                operating_system_sku: some("Enterprise"),
                device_management_type: some("mdm"),
                enrollment_profile_name: some("Autopilot"),
                device_category: some("kiosk"),
                profile_type: some("RegisteredDevice"),
                system_labels: some("M365Managed"),
                physical_ids: vec![String::new()],
                ..DeviceFacts::default()
            },
        ]
    })
}

fn results(rule: &remediate_domain::rule::Rule) -> Vec<bool> {
    devices().iter().map(|d| rule.matches(d)).collect()
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for dialect in [Dialect::Membership, Dialect::Filter] {
        let Ok(rule) = parse(&text, dialect) else {
            continue;
        };
        assert_eq!(rule.dialect(), dialect);
        let want = results(&rule);

        let padded = format!(" \t{text}\n ");
        if padded.chars().count() <= MAX_RULE_CHARS {
            let again = parse(&padded, dialect).unwrap_or_else(|e| {
                panic!("{dialect:?} {text:?} parses, but not with whitespace around it: {e}")
            });
            assert_eq!(results(&again), want, "{dialect:?} {text:?} padded");
        }

        if let Ok(wrapped) = parse(&format!("({text})"), dialect) {
            assert_eq!(results(&wrapped), want, "{dialect:?} ({text:?})");
        }

        if dialect == Dialect::Membership {
            if let Ok(negated) = parse(&format!("-not ({text})"), dialect) {
                let opposite: Vec<bool> = want.iter().map(|m| !m).collect();
                assert_eq!(results(&negated), opposite, "-not ({text:?})");
            }
        }
    }
});
