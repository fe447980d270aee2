//! `remediate-agent install`'s service definitions: the systemd unit (Linux) and the launchd
//! property list (macOS) that run `remediate-agent run` as root at boot, as pure text
//! functions, and the file writing.
//!
//! The unit's hardening is deliberately light: scripts exist to change the system as root
//! (packages, `/etc`, sysctl, kernel modules, services, the clock, setuid bits, `dmesg`), so
//! nothing that takes that away is set (no `ProtectSystem`, `ProtectHome`, `PrivateTmp`,
//! `ProtectKernel*`, `ProtectClock`, `RestrictSUIDSGID`, `NoNewPrivileges`, capability bounds,
//! and no `MemoryDenyWriteExecute`, which breaks pwsh's JIT). What is set takes nothing a
//! script needs: `LockPersonality`, `RestrictRealtime`, `SystemCallArchitectures=native`.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::Context;

/// The systemd unit's file name.
pub const UNIT_NAME: &str = "remediate-agent.service";
/// The launchd job's label (the plist is `<label>.plist`).
pub const LAUNCHD_LABEL: &str = "com.remediate.agent";
/// Where `install` enrolls by default.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/remediate-agent";
/// Seconds between the agent's SIGTERM and the SIGKILL of whatever is left.
pub const STOP_TIMEOUT_SECS: u32 = 30;
/// Seconds before a stopped agent is started again.
pub const RESTART_SECS: u32 = 10;
/// Where launchd sends the agent's log.
pub const LAUNCHD_LOG: &str = "/Library/Logs/remediate-agent.log";

/// Which service manager the definition is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceKind {
    Systemd,
    Launchd,
}

impl ServiceKind {
    /// This machine's: launchd on macOS, systemd elsewhere.
    pub fn native() -> ServiceKind {
        if cfg!(target_os = "macos") {
            ServiceKind::Launchd
        } else {
            ServiceKind::Systemd
        }
    }

    /// Where the definition goes by default.
    pub fn default_dir(self) -> &'static str {
        match self {
            ServiceKind::Systemd => "/etc/systemd/system",
            ServiceKind::Launchd => "/Library/LaunchDaemons",
        }
    }

    /// The definition's file name.
    pub fn file_name(self) -> String {
        match self {
            ServiceKind::Systemd => UNIT_NAME.to_owned(),
            ServiceKind::Launchd => format!("{LAUNCHD_LABEL}.plist"),
        }
    }

    /// The definition's text for `exe args…`.
    pub fn definition(self, exe: &str, args: &[String]) -> Result<String, String> {
        match self {
            ServiceKind::Systemd => systemd_unit(exe, args),
            ServiceKind::Launchd => launchd_plist(exe, args),
        }
    }

    /// What to run to start the service now and at every boot (`path`: the written file).
    pub fn start_hint(self, path: &Path) -> String {
        match self {
            ServiceKind::Systemd if path.parent() == Some(Path::new("/etc/systemd/system")) => {
                "systemctl daemon-reload && systemctl enable --now remediate-agent".to_owned()
            }
            ServiceKind::Systemd => format!(
                "systemctl link {} && systemctl daemon-reload && systemctl enable --now remediate-agent",
                path.display()
            ),
            ServiceKind::Launchd => {
                format!("launchctl bootstrap system {}", path.display())
            }
        }
    }
}

/// The arguments of `remediate-agent` in the service: `run --state-dir DIR`, each trusted key
/// (`--trust-key`) and the run-as user. Paths must be absolute UTF-8.
pub fn agent_args(
    state_dir: &Path,
    trust_keys: &[&Path],
    run_as_user: Option<&str>,
) -> Result<Vec<String>, String> {
    let path = |p: &Path, what: &str| -> Result<String, String> {
        if !p.is_absolute() {
            return Err(format!("{what} {} is not an absolute path", p.display()));
        }
        p.to_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("{what} {} is not UTF-8", p.display()))
    };
    let mut args = vec![
        "run".to_owned(),
        "--state-dir".to_owned(),
        path(state_dir, "the state directory")?,
    ];
    for key in trust_keys {
        args.push("--trust-key".to_owned());
        args.push(path(key, "the trusted key")?);
    }
    if let Some(user) = run_as_user {
        args.push("--run-as-user".to_owned());
        args.push(user.to_owned());
    }
    Ok(args)
}

/// One word of a systemd command line: as it is when plain, else double-quoted with `\` and `"`
/// escaped; `%` (specifiers) and `$` (variables) doubled either way. Control characters (a line
/// break would end the setting) are refused.
pub fn systemd_quote(word: &str) -> Result<String, String> {
    if word.chars().any(char::is_control) {
        return Err(format!(
            "{word:?} contains a control character, which a systemd unit cannot carry"
        ));
    }
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._,:=@+-".contains(c));
    if plain {
        return Ok(word.to_owned());
    }
    let mut out = String::from("\"");
    for c in word.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '%' => out.push_str("%%"),
            '$' => out.push_str("$$"),
            c => out.push(c),
        }
    }
    out.push('"');
    Ok(out)
}

/// The systemd unit running `exe args…` (an absolute path) as root.
pub fn systemd_unit(exe: &str, args: &[String]) -> Result<String, String> {
    if !exe.starts_with('/') {
        return Err(format!("the agent's path {exe} is not absolute"));
    }
    let mut command = systemd_quote(exe)?;
    for arg in args {
        command.push(' ');
        command.push_str(&systemd_quote(arg)?);
    }
    Ok(format!(
        "\
# Written by `remediate-agent install`: run it again to change this file.
[Unit]
Description=remediate device agent (runs the remediation scripts a remediate server assigns)
Wants=network-online.target
After=network-online.target

[Service]
Type=exec
ExecStart={command}
Restart=always
RestartSec={RESTART_SECS}
# SIGTERM goes to the agent alone; whatever is left (a running script's process group) is
# killed (SIGKILL) when the agent has exited, or after TimeoutStopSec.
KillMode=mixed
TimeoutStopSec={STOP_TIMEOUT_SECS}
# Scripts run as root and change the system (packages, /etc, sysctl, modules, services, the
# clock): only hardening that takes none of that away.
LockPersonality=yes
RestrictRealtime=yes
SystemCallArchitectures=native

[Install]
WantedBy=multi-user.target
"
    ))
}

/// Text escaped for XML character data.
fn xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// The launchd property list (`/Library/LaunchDaemons`) running `exe args…` as root, at boot,
/// restarted whenever it exits.
pub fn launchd_plist(exe: &str, args: &[String]) -> Result<String, String> {
    if !exe.starts_with('/') {
        return Err(format!("the agent's path {exe} is not absolute"));
    }
    let words = std::iter::once(exe).chain(args.iter().map(String::as_str));
    if let Some(bad) = words.clone().find(|w| {
        w.chars()
            .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
    }) {
        return Err(format!(
            "{bad:?} contains a control character, which a property list cannot carry"
        ));
    }
    let program: String = words
        .map(|w| format!("        <string>{}</string>\n", xml(w)))
        .collect();
    Ok(format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<!-- Written by `remediate-agent install`: run it again to change this file. -->
<plist version="1.0">
<dict>
    <key>Label</key>
    <string>{LAUNCHD_LABEL}</string>
    <key>ProgramArguments</key>
    <array>
{program}    </array>
    <key>RunAtLoad</key>
    <true/>
    <key>KeepAlive</key>
    <true/>
    <key>ThrottleInterval</key>
    <integer>{RESTART_SECS}</integer>
    <key>ExitTimeOut</key>
    <integer>{STOP_TIMEOUT_SECS}</integer>
    <key>StandardOutPath</key>
    <string>{LAUNCHD_LOG}</string>
    <key>StandardErrorPath</key>
    <string>{LAUNCHD_LOG}</string>
</dict>
</plist>
"#
    ))
}

/// Write a service definition: mode 0644 (service managers refuse group- or world-writable
/// files), replacing an existing one atomically (temporary file, fsync, rename).
pub fn write_definition(path: &Path, text: &str) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .with_context(|| format!("{} has no directory", path.display()))?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("{} has no file name", path.display()))?;
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let _ = std::fs::remove_file(&tmp);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)?;
        // Whatever the umask.
        file.set_permissions(std::fs::Permissions::from_mode(0o644))?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::process::Command;

    fn args() -> Vec<String> {
        agent_args(
            Path::new("/var/lib/remediate-agent"),
            &[Path::new("/etc/remediate/signing.pub")],
            Some("nobody"),
        )
        .unwrap()
    }

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "remediate-install-{tag}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn agent_args_need_absolute_paths() {
        assert_eq!(
            args(),
            [
                "run",
                "--state-dir",
                "/var/lib/remediate-agent",
                "--trust-key",
                "/etc/remediate/signing.pub",
                "--run-as-user",
                "nobody"
            ]
        );
        assert_eq!(
            agent_args(Path::new("/s"), &[], None).unwrap(),
            ["run", "--state-dir", "/s"]
        );
        let err = agent_args(Path::new("state"), &[], None).unwrap_err();
        assert!(err.contains("not an absolute path"), "{err}");
        let err = agent_args(Path::new("/s"), &[Path::new("k.pub")], None).unwrap_err();
        assert!(err.contains("trusted key"), "{err}");
    }

    #[test]
    fn systemd_words_are_quoted_when_needed() {
        assert_eq!(systemd_quote("/usr/bin/x").unwrap(), "/usr/bin/x");
        assert_eq!(systemd_quote("--state-dir").unwrap(), "--state-dir");
        assert_eq!(systemd_quote("").unwrap(), "\"\"");
        assert_eq!(systemd_quote("/opt/my agent").unwrap(), "\"/opt/my agent\"");
        assert_eq!(systemd_quote("/a%b").unwrap(), "\"/a%%b\"");
        assert_eq!(systemd_quote("$HOME").unwrap(), "\"$$HOME\"");
        assert_eq!(systemd_quote("a\"b\\c").unwrap(), "\"a\\\"b\\\\c\"");
        assert_eq!(systemd_quote("'x'").unwrap(), "\"'x'\"");
        assert!(systemd_quote("a\nb").is_err());
    }

    #[test]
    fn the_systemd_unit() {
        let unit = systemd_unit("/usr/local/bin/remediate-agent", &args()).unwrap();
        let lines: Vec<&str> = unit.lines().collect();
        for expected in [
            "[Service]",
            "ExecStart=/usr/local/bin/remediate-agent run --state-dir /var/lib/remediate-agent \
             --trust-key /etc/remediate/signing.pub --run-as-user nobody",
            "Restart=always",
            "KillMode=mixed",
            "TimeoutStopSec=30",
            "After=network-online.target",
            "WantedBy=multi-user.target",
        ] {
            assert!(lines.contains(&expected), "{expected}\n{unit}");
        }
        // Nothing that would keep root scripts from changing the system.
        for absent in [
            "ProtectSystem",
            "ProtectHome",
            "PrivateTmp",
            "NoNewPrivileges",
            "User=",
            "MemoryDenyWriteExecute",
            "CapabilityBoundingSet",
        ] {
            assert!(
                !lines.iter().any(|l| l.starts_with(absent)),
                "{absent}\n{unit}"
            );
        }
        assert!(systemd_unit("remediate-agent", &[]).is_err());
    }

    #[test]
    fn the_launchd_plist() {
        let plist = launchd_plist("/usr/local/bin/remediate-agent", &args()).unwrap();
        assert!(plist.contains("<string>com.remediate.agent</string>"));
        assert!(plist.contains(
            "        <string>/usr/local/bin/remediate-agent</string>\n        <string>run</string>\n"
        ));
        assert!(plist.contains("<key>KeepAlive</key>\n    <true/>"));
        assert!(plist.contains("<key>RunAtLoad</key>\n    <true/>"));
        let odd = launchd_plist("/opt/a&b <c>", &["x\"y".into()]).unwrap();
        assert!(
            odd.contains("<string>/opt/a&amp;b &lt;c&gt;</string>"),
            "{odd}"
        );
        assert!(odd.contains("<string>x&quot;y</string>"), "{odd}");
        assert!(launchd_plist("/x", &["a\u{1}".into()]).is_err());
        if Path::new("/usr/bin/plutil").exists() {
            let dir = temp_dir("plist");
            let file = dir.join("com.remediate.agent.plist");
            std::fs::write(&file, &plist).unwrap();
            let out = Command::new("/usr/bin/plutil")
                .arg("-lint")
                .arg(&file)
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }

    #[test]
    fn start_hints() {
        let kind = ServiceKind::Systemd;
        assert_eq!(kind.file_name(), "remediate-agent.service");
        assert!(kind
            .start_hint(Path::new("/etc/systemd/system/remediate-agent.service"))
            .contains("systemctl enable --now remediate-agent"));
        assert!(kind
            .start_hint(Path::new("/opt/units/remediate-agent.service"))
            .contains("systemctl link /opt/units/remediate-agent.service"));
        let kind = ServiceKind::Launchd;
        assert_eq!(kind.file_name(), "com.remediate.agent.plist");
        assert_eq!(
            kind.start_hint(Path::new(
                "/Library/LaunchDaemons/com.remediate.agent.plist"
            )),
            "launchctl bootstrap system /Library/LaunchDaemons/com.remediate.agent.plist"
        );
    }

    #[test]
    fn definitions_are_written_0644_and_replaced() {
        let dir = temp_dir("write");
        let file = dir.join(UNIT_NAME);
        write_definition(&file, "one\n").unwrap();
        write_definition(&file, "two\n").unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "two\n");
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// `systemd-analyze verify` accepts the unit (also with a path that needs quoting); skipped
    /// where systemd-analyze is not installed.
    #[test]
    fn systemd_analyze_verifies_the_unit() {
        if Command::new("systemd-analyze")
            .arg("--version")
            .output()
            .is_err()
        {
            eprintln!("systemd-analyze is not installed: the unit is not verified (skipped)");
            return;
        }
        let dir = temp_dir("verify");
        // An executable at a path with a space and a `%`, so that quoting is checked too.
        let odd = dir.join("my agent%1");
        std::fs::create_dir(&odd).unwrap();
        let exe = odd.join("remediate-agent");
        std::fs::copy("/bin/true", &exe).unwrap();
        let exe = exe.to_str().unwrap().to_owned();
        for exe in ["/bin/true", exe.as_str()] {
            let unit = systemd_unit(exe, &args()).unwrap();
            let file = dir.join(UNIT_NAME);
            write_definition(&file, &unit).unwrap();
            let out = Command::new("systemd-analyze")
                .arg("verify")
                .arg(&file)
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            // Only what is about our unit (a container may warn about others).
            let ours: Vec<&str> = stderr
                .lines()
                .filter(|l| l.contains("remediate-agent"))
                .collect();
            assert!(
                out.status.success() && ours.is_empty(),
                "systemd-analyze verify {}:\n{stderr}\n{unit}",
                file.display()
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
