//! Export job filters and column selections (`remediate_domain::exports::parse_filter`,
//! `parse_select`) for both reports. Never panics; a filter that parses is normalized (status
//! values sorted, without duplicates; the device report names its script), `( filter )` (when it
//! still parses) means the same, and `filter and filter` means the same (one column's comparisons
//! intersect).
#![no_main]

use libfuzzer_sys::fuzz_target;
use remediate_domain::exports::{parse_filter, parse_select, Report};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for report in Report::ALL {
        let Ok(filter) = parse_filter(report, Some(&text)) else {
            continue;
        };
        if report == Report::DeviceRunStates {
            assert!(
                filter.policy.is_some(),
                "{text:?}: device report without a script"
            );
        }
        for values in [&filter.detection, &filter.remediation]
            .into_iter()
            .flatten()
        {
            assert!(
                values.windows(2).all(|w| w[0] < w[1]),
                "{text:?}: status values {values:?} not sorted and distinct"
            );
        }
        if let Ok(wrapped) = parse_filter(report, Some(&format!("({text})"))) {
            assert_eq!(wrapped, filter, "({text:?})");
        }
        if !text.trim().is_empty() {
            let twice = format!("{text} and {text}");
            let again = parse_filter(report, Some(&twice))
                .unwrap_or_else(|e| panic!("{text:?} parses but {twice:?} does not: {}", e.0));
            assert_eq!(again, filter, "{twice:?}");
        }
    }
    let names: Vec<String> = text.split(',').map(str::to_owned).collect();
    for report in Report::ALL {
        if let Ok(columns) = parse_select(report, &names) {
            assert!(!columns.is_empty());
        }
    }
});
