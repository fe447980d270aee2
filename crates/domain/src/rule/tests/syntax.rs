//! Unit tests of what the rule engine refuses: every syntax error's message and position,
//! invalid regular expressions, the length and nesting limits, and random rules that must never
//! panic.

use super::*;

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
    assert!(
        err(&nots(MAX_DEPTH + 1), Dialect::Membership).starts_with("The rule is nested too deeply")
    );
    // Far deeper than the limit, within the length cap: an error, not a stack overflow.
    assert!(
        err(&"(".repeat(3000), Dialect::Membership).starts_with("The rule is nested too deeply")
    );
    assert!(
        err(&"-not ".repeat(600), Dialect::Membership).starts_with("The rule is nested too deeply")
    );
    assert!(err(&"(".repeat(100_000), Dialect::Membership)
        .starts_with("The rule is 100000 characters long"));
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
