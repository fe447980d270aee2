//! Running one script file (`docs/agent-runs.md`, "Running a script"): the content goes to a
//! private file in a fresh per-run directory, the interpreter comes from the `#!` line (else
//! `/bin/sh`), the process runs in its own process group with a clean environment and a
//! timeout after which the whole group is killed, and stdout and stderr are kept in bounded
//! memory — the last `output_chars` characters of each, with a marker when text was left out.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::{geteuid, Pid, Uid, User};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

/// `PATH` of every script (unless `RunSpec::env` sets another).
pub const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// `LANG` of every script (unless `RunSpec::env` sets another).
pub const LANG: &str = "C.UTF-8";
/// How long the output is still read after the script's process ended (and its group was
/// killed), for pipes held open by processes that left the group.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// What to run and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSpec {
    /// The script as downloaded (a UTF-8 BOM is stripped; CRLF becomes LF unless PowerShell).
    pub content: Vec<u8>,
    /// Arguments after the script file.
    pub args: Vec<String>,
    /// After this long the script's whole process group is killed (`Exit::Timeout`).
    pub timeout: Duration,
    /// Run as this user and group instead of the agent's own (needs root).
    pub run_as: Option<RunAs>,
    /// The agent's private directory for script files (created 0700 when missing).
    pub work_dir: PathBuf,
    /// Keep the last this many characters of stdout and of stderr.
    pub output_chars: usize,
    /// Added to (or replacing) the clean environment, in order.
    pub env: Vec<(String, String)>,
}

/// A user and group to run a script as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// The script's process exited with this code.
    Code(i32),
    /// The script's process was killed by this signal (not by the agent's timeout).
    Signal(i32),
    /// It ran longer than `RunSpec::timeout`; its process group was killed.
    Timeout,
    /// It could not be started (no interpreter, no user switch, no work directory …).
    CannotStart(String),
    /// It cannot run on this machine at all (a PowerShell script without `pwsh`).
    NotApplicable(String),
}

/// The result of one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunResult {
    pub exit: Exit,
    /// The last `output_chars` characters, after a `[remediate: N earlier characters left
    /// out]` line when something was cut.
    pub stdout: String,
    pub stderr: String,
    pub duration: Duration,
}

/// Resolves a user name (or a numeric uid) to its uid and primary group.
pub fn lookup_user(name: &str) -> Result<RunAs, String> {
    let user = match name.parse::<u32>() {
        Ok(uid) => User::from_uid(Uid::from_raw(uid)),
        Err(_) => User::from_name(name),
    }
    .map_err(|e| format!("cannot look up the user '{name}': {e}"))?
    .ok_or_else(|| format!("there is no user '{name}' on this machine"))?;
    Ok(RunAs {
        uid: user.uid.as_raw(),
        gid: user.gid.as_raw(),
    })
}

/// Runs one script and waits for it (at most `spec.timeout`, plus a short drain).
pub async fn run_script(spec: &RunSpec) -> RunResult {
    let started = Instant::now();
    let failed = |exit: Exit| RunResult {
        exit,
        stdout: String::new(),
        stderr: String::new(),
        duration: started.elapsed(),
    };
    let content = spec
        .content
        .strip_prefix(b"\xEF\xBB\xBF")
        .unwrap_or(&spec.content);
    let env = environment(spec);
    let path = env
        .iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .map_or(PATH, |(_, v)| v.as_str());
    let plan = match interpreter(content, path) {
        Ok(plan) => plan,
        Err(exit) => return failed(exit),
    };
    let content = if plan.powershell {
        content.to_vec()
    } else {
        crlf_to_lf(content)
    };
    let run_dir = match RunDir::create(spec, &content, plan.powershell) {
        Ok(dir) => dir,
        Err(message) => return failed(Exit::CannotStart(message)),
    };
    let mut command = Command::new(&plan.program);
    command.args(&plan.args);
    if plan.powershell {
        for flag in ["-NoLogo", "-NoProfile", "-NonInteractive"] {
            if !plan.args.iter().any(|a| a.eq_ignore_ascii_case(flag)) {
                command.arg(flag);
            }
        }
        command.arg("-File");
    }
    command
        .arg(&run_dir.script)
        .args(&spec.args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .envs(plan.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&run_dir.dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if plan.powershell {
        command.env("POWERSHELL_TELEMETRY_OPTOUT", "1");
        command.env("POWERSHELL_UPDATECHECK", "Off");
    }
    if let Some(who) = spec.run_as {
        command.uid(who.uid).gid(who.gid);
    }
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            return failed(Exit::CannotStart(spawn_error(
                &plan.program,
                spec.run_as,
                &e,
            )))
        }
    };
    // Declared after `child`, so dropped (killing the group) first when the run is cancelled.
    let mut group = Group(
        child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .map(Pid::from_raw),
    );

    let (mut out_pipe, mut err_pipe) = (child.stdout.take(), child.stderr.take());
    let (mut out, mut err) = (Tail::new(spec.output_chars), Tail::new(spec.output_chars));
    let (mut out_buf, mut err_buf) = (vec![0u8; 8192], vec![0u8; 8192]);
    let mut status = None;
    let mut timed_out = false;
    let deadline = tokio::time::sleep(spec.timeout);
    tokio::pin!(deadline);
    let drain = tokio::time::sleep(DRAIN_GRACE);
    tokio::pin!(drain);
    let mut draining = false;
    loop {
        if status.is_some() && out_pipe.is_none() && err_pipe.is_none() {
            break;
        }
        tokio::select! {
            read = read_some(&mut out_pipe, &mut out_buf), if out_pipe.is_some() => match read {
                Ok(n) if n > 0 => out.push(&out_buf[..n]),
                _ => out_pipe = None,
            },
            read = read_some(&mut err_pipe, &mut err_buf), if err_pipe.is_some() => match read {
                Ok(n) if n > 0 => err.push(&err_buf[..n]),
                _ => err_pipe = None,
            },
            exited = child.wait(), if status.is_none() => {
                status = Some(exited);
                // Whatever the script left running in its group goes with it.
                group.kill();
                drain.as_mut().reset(tokio::time::Instant::now() + DRAIN_GRACE);
                draining = true;
            },
            () = &mut deadline, if status.is_none() => {
                timed_out = true;
                group.kill();
                status = Some(child.wait().await);
                drain.as_mut().reset(tokio::time::Instant::now() + DRAIN_GRACE);
                draining = true;
            },
            () = &mut drain, if draining => break,
        }
    }
    let exit = match status {
        _ if timed_out => Exit::Timeout,
        Some(Ok(status)) => match (status.code(), status.signal()) {
            (Some(code), _) => Exit::Code(code),
            (None, Some(signal)) => Exit::Signal(signal),
            (None, None) => Exit::CannotStart(format!("the script ended with {status}")),
        },
        Some(Err(e)) => Exit::CannotStart(format!("waiting for the script failed: {e}")),
        None => Exit::CannotStart("the script's end was not seen".to_owned()),
    };
    drop(run_dir);
    RunResult {
        exit,
        stdout: out.finish(),
        stderr: err.finish(),
        duration: started.elapsed(),
    }
}

/// The script's process group: killed (SIGKILL) once, when the script's process ended, when
/// it timed out, or when the run is cancelled (the future dropped).
struct Group(Option<Pid>);

impl Group {
    fn kill(&mut self) {
        if let Some(group) = self.0.take() {
            // ESRCH: nothing left in the group.
            let _ = killpg(group, Signal::SIGKILL);
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn read_some(
    pipe: &mut Option<impl AsyncRead + Unpin>,
    buf: &mut [u8],
) -> std::io::Result<usize> {
    match pipe {
        Some(pipe) => pipe.read(buf).await,
        None => std::future::pending().await,
    }
}

/// The clean environment: `PATH`, `HOME`, `LANG`, `USER` and `LOGNAME` of the user the
/// script runs as, then `spec.env` in order (later entries win).
fn environment(spec: &RunSpec) -> Vec<(String, String)> {
    let uid = spec
        .run_as
        .map_or_else(geteuid, |who| Uid::from_raw(who.uid));
    let user = User::from_uid(uid).ok().flatten();
    let home = user
        .as_ref()
        .map_or_else(|| "/".to_owned(), |u| u.dir.to_string_lossy().into_owned());
    let mut env = vec![
        ("PATH".to_owned(), PATH.to_owned()),
        ("HOME".to_owned(), home),
        ("LANG".to_owned(), LANG.to_owned()),
    ];
    if let Some(user) = user {
        env.push(("USER".to_owned(), user.name.clone()));
        env.push(("LOGNAME".to_owned(), user.name));
    }
    env.extend(spec.env.iter().cloned());
    env
}

/// How to start a script: `program args… <file> <spec.args…>` (PowerShell:
/// `program args… -NoLogo -NoProfile -NonInteractive -File <file> <spec.args…>`).
#[derive(Debug, PartialEq, Eq)]
struct Plan {
    program: PathBuf,
    args: Vec<String>,
    /// `NAME=VALUE` words of a `#!/usr/bin/env NAME=VALUE program` line.
    env: Vec<(String, String)>,
    powershell: bool,
}

/// Reads the `#!` line: `#!/path/interpreter [args…]` or
/// `#!/usr/bin/env [-S] [-options…] [NAME=VALUE…] program [args…]` (words split at
/// whitespace, as `env -S` does); no `#!` line: `/bin/sh`.
fn interpreter(content: &[u8], path: &str) -> Result<Plan, Exit> {
    let first = content.split(|&b| b == b'\n').next().unwrap_or_default();
    let first = first.strip_suffix(b"\r").unwrap_or(first);
    let words: Vec<String> = match first.strip_prefix(b"#!") {
        Some(rest) => String::from_utf8_lossy(rest)
            .split_whitespace()
            .map(str::to_owned)
            .collect(),
        None => Vec::new(),
    };
    let Some((program, rest)) = words.split_first() else {
        return Ok(Plan {
            program: PathBuf::from("/bin/sh"),
            args: Vec::new(),
            env: Vec::new(),
            powershell: false,
        });
    };
    let line = format!("#!{}", words.join(" "));
    let mut env = Vec::new();
    let (program, args) = if base_name(program) == "env" {
        let mut words = rest
            .iter()
            .skip_while(|w| w.starts_with('-'))
            .skip_while(|w| match w.split_once('=') {
                Some((name, value)) if !name.is_empty() => {
                    env.push((name.to_owned(), value.to_owned()));
                    true
                }
                _ => false,
            });
        let Some(program) = words.next() else {
            return Err(Exit::CannotStart(format!(
                "the script's first line '{line}' names no program after env"
            )));
        };
        (program.clone(), words.cloned().collect())
    } else {
        (program.clone(), rest.to_vec())
    };
    let name = base_name(&program).to_ascii_lowercase();
    let powershell = name.starts_with("pwsh") || name.starts_with("powershell");
    let resolved = if program.contains('/') && is_executable(Path::new(&program)) {
        Some(PathBuf::from(&program))
    } else if powershell {
        // Wherever the line says: any pwsh on PATH will do (Linux has no `powershell`).
        [name.as_str(), "pwsh"]
            .iter()
            .find_map(|n| find_on_path(n, path))
    } else if program.contains('/') {
        None
    } else {
        find_on_path(&program, path)
    };
    match resolved {
        Some(program) => Ok(Plan {
            program,
            args,
            env,
            powershell,
        }),
        None if powershell => Err(Exit::NotApplicable(format!(
            "this is a PowerShell script ('{line}'), but pwsh is not installed on this \
             machine (not found on PATH {path})"
        ))),
        None if program.contains('/') => Err(Exit::CannotStart(format!(
            "the interpreter {program} named by the script's first line '{line}' does not \
             exist or is not executable"
        ))),
        None => Err(Exit::CannotStart(format!(
            "the interpreter '{program}' named by the script's first line '{line}' is not \
             installed (not found on PATH {path})"
        ))),
    }
}

fn base_name(program: &str) -> &str {
    program.rsplit('/').next().unwrap_or(program)
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn find_on_path(name: &str, path: &str) -> Option<PathBuf> {
    path.split(':')
        .filter(|dir| dir.starts_with('/'))
        .map(|dir| Path::new(dir).join(name))
        .find(|candidate| is_executable(candidate))
}

/// CRLF → LF (a lone CR stays), so that scripts saved on Windows run under sh, bash, python.
fn crlf_to_lf(content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len());
    let mut bytes = content.iter().peekable();
    while let Some(&b) = bytes.next() {
        if b == b'\r' && bytes.peek() == Some(&&b'\n') {
            continue;
        }
        out.push(b);
    }
    out
}

fn spawn_error(program: &Path, run_as: Option<RunAs>, e: &std::io::Error) -> String {
    match (e.kind(), run_as) {
        (ErrorKind::PermissionDenied, Some(who)) => format!(
            "cannot start {} as uid {} gid {}: {e} (switching users needs the agent to run as root)",
            program.display(),
            who.uid,
            who.gid
        ),
        (ErrorKind::NotFound, _) => {
            format!("cannot start the interpreter {}: {e}", program.display())
        }
        _ => format!("cannot start {}: {e}", program.display()),
    }
}

static RUNS: AtomicU64 = AtomicU64::new(0);

/// A fresh `work_dir/run-<pid>-<n>-<nanos>/` (0700, owned by the user the script runs as)
/// holding the script file (0700) — also the script's working directory; removed on drop.
struct RunDir {
    dir: PathBuf,
    script: PathBuf,
}

impl RunDir {
    fn create(spec: &RunSpec, content: &[u8], powershell: bool) -> Result<RunDir, String> {
        use std::io::Write;
        ensure_work_dir(&spec.work_dir, spec.run_as.is_some())?;
        if let Some(who) = spec.run_as {
            reachable(&spec.work_dir, who)?;
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = loop {
            let n = RUNS.fetch_add(1, Ordering::Relaxed);
            let dir = spec
                .work_dir
                .join(format!("run-{}-{n}-{nanos}", std::process::id()));
            match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => break dir,
                Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(format!("cannot create {}: {e}", dir.display())),
            }
        };
        // From here on, dropping `run` removes the directory.
        let mut script = OsString::from("script");
        if powershell {
            script.push(".ps1");
        }
        let run = RunDir {
            script: dir.join(script),
            dir,
        };
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o700)
            .open(&run.script)
            .map_err(|e| format!("cannot create {}: {e}", run.script.display()))?;
        file.write_all(content)
            .and_then(|()| file.sync_all())
            .map_err(|e| format!("cannot write {}: {e}", run.script.display()))?;
        if let Some(who) = spec.run_as {
            for path in [&run.dir, &run.script] {
                std::os::unix::fs::chown(path, Some(who.uid), Some(who.gid)).map_err(|e| {
                    format!(
                        "cannot hand {} to uid {} gid {}: {e} (running scripts as another user \
                         needs the agent to run as root)",
                        path.display(),
                        who.uid,
                        who.gid
                    )
                })?;
            }
        }
        Ok(run)
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "cannot remove a script's run directory");
        }
    }
}

/// The work directory: created 0700 when missing; refused when group or others may write to
/// it. Scripts run as another user need to pass through it: then it gets `--x` for group and
/// others (never read or write).
fn ensure_work_dir(dir: &Path, traverse: bool) -> Result<(), String> {
    let set = |mode: u32| {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
            .map_err(|e| format!("cannot set the mode of {}: {e}", dir.display()))
    };
    match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| format!("cannot create the work directory {}: {e}", dir.display()))?;
            set(if traverse { 0o711 } else { 0o700 })
        }
        Err(e) => Err(format!(
            "cannot use the work directory {}: {e}",
            dir.display()
        )),
        Ok(meta) if !meta.is_dir() => Err(format!(
            "the work directory {} is not a directory",
            dir.display()
        )),
        Ok(meta) => {
            let mode = meta.permissions().mode() & 0o7777;
            if mode & 0o022 != 0 {
                return Err(format!(
                    "the work directory {} (mode {mode:o}) is writable by other users; refusing to \
                     run scripts from it",
                    dir.display()
                ));
            }
            if traverse && mode & 0o011 != 0o011 {
                set(mode | 0o011)?;
            }
            Ok(())
        }
    }
}

/// Can `who` pass through the work directory and every directory above it? (Otherwise its
/// interpreter could not open the script: say so now, rather than as a confusing
/// "Permission denied" from the interpreter.) Supplementary groups are not counted: the
/// script does not get them.
fn reachable(work_dir: &Path, who: RunAs) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    if who.uid == 0 {
        return Ok(());
    }
    let dir = std::fs::canonicalize(work_dir).map_err(|e| {
        format!(
            "cannot resolve the work directory {}: {e}",
            work_dir.display()
        )
    })?;
    for ancestor in dir.ancestors() {
        let meta = std::fs::metadata(ancestor)
            .map_err(|e| format!("cannot inspect {}: {e}", ancestor.display()))?;
        let mode = meta.mode() & 0o7777;
        let bit = if meta.uid() == who.uid {
            0o100
        } else if meta.gid() == who.gid {
            0o010
        } else {
            0o001
        };
        if mode & bit == 0 {
            return Err(format!(
                "the script would run as uid {} gid {}, which cannot reach the work directory \
                 {}: {} (mode {mode:o}) does not let it pass; allow search (x) on that directory \
                 or choose a work directory that user can reach",
                who.uid,
                who.gid,
                work_dir.display(),
                ancestor.display()
            ));
        }
    }
    Ok(())
}

/// The last bytes of a stream (at most 4 per kept character), and how many characters went
/// through in all.
struct Tail {
    bytes: VecDeque<u8>,
    cap: usize,
    max_chars: usize,
    total_bytes: u64,
    /// Bytes that start a UTF-8 character (= characters, for valid UTF-8).
    total_chars: u64,
}

impl Tail {
    fn new(max_chars: usize) -> Tail {
        let cap = max_chars.saturating_mul(4);
        Tail {
            bytes: VecDeque::with_capacity(cap.min(64 * 1024)),
            cap,
            max_chars,
            total_bytes: 0,
            total_chars: 0,
        }
    }

    fn push(&mut self, data: &[u8]) {
        self.total_bytes += data.len() as u64;
        self.total_chars += data.iter().filter(|&&b| b & 0xC0 != 0x80).count() as u64;
        if data.len() >= self.cap {
            self.bytes.clear();
            self.bytes.extend(&data[data.len() - self.cap..]);
        } else {
            let over = (self.bytes.len() + data.len()).saturating_sub(self.cap);
            self.bytes.drain(..over);
            self.bytes.extend(data);
        }
    }

    fn finish(mut self) -> String {
        let kept = self.bytes.make_contiguous();
        let dropped_bytes = self.total_bytes > kept.len() as u64;
        let mut start = 0;
        if dropped_bytes {
            // The first kept byte may be in the middle of a character.
            while start < kept.len().min(3) && kept[start] & 0xC0 == 0x80 {
                start += 1;
            }
        }
        let text = String::from_utf8_lossy(&kept[start..]);
        let chars = text.chars().count();
        let (text, kept_chars) = if chars > self.max_chars {
            let skip = chars - self.max_chars;
            let at = text.char_indices().nth(skip).map_or(text.len(), |(i, _)| i);
            (&text[at..], self.max_chars)
        } else {
            (&text[..], chars)
        };
        if !dropped_bytes && chars <= self.max_chars {
            return text.to_owned();
        }
        let left_out = self.total_chars.saturating_sub(kept_chars as u64).max(1);
        let noun = if left_out == 1 {
            "character"
        } else {
            "characters"
        };
        format!("[remediate: {left_out} earlier {noun} left out]\n{text}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn work_dir() -> PathBuf {
        static N: AtomicU64 = AtomicU64::new(0);
        std::env::temp_dir().join(format!(
            "remediate-exec-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ))
    }

    fn spec(content: &str) -> RunSpec {
        RunSpec {
            content: content.as_bytes().to_vec(),
            args: vec![],
            timeout: Duration::from_secs(30),
            run_as: None,
            work_dir: work_dir(),
            output_chars: 2048,
            env: vec![],
        }
    }

    async fn run(content: &str) -> RunResult {
        let spec = spec(content);
        let result = run_script(&spec).await;
        assert_no_leftovers(&spec.work_dir);
        result
    }

    fn assert_no_leftovers(work_dir: &Path) {
        if let Ok(entries) = std::fs::read_dir(work_dir) {
            let left: Vec<_> = entries.map(|e| e.unwrap().path()).collect();
            assert!(left.is_empty(), "left behind: {left:?}");
            std::fs::remove_dir(work_dir).unwrap();
        }
    }

    fn have(program: &str) -> bool {
        find_on_path(program, PATH).is_some()
    }

    #[tokio::test]
    async fn exit_codes_and_output() {
        let r = run("echo out; echo err >&2; exit 3").await;
        assert_eq!(r.exit, Exit::Code(3));
        assert_eq!(r.stdout, "out\n");
        assert_eq!(r.stderr, "err\n");
        assert_eq!(run("true").await.exit, Exit::Code(0));
        assert_eq!(run("exit 1").await.exit, Exit::Code(1));
        assert_eq!(run("kill -TERM $$").await.exit, Exit::Signal(15));
    }

    #[tokio::test]
    async fn shebangs_pick_the_interpreter() {
        let r = run("#!/bin/bash\necho \"$BASH_VERSION\" | grep -q . && echo bash").await;
        assert_eq!((r.exit, r.stdout.as_str()), (Exit::Code(0), "bash\n"));
        let r = run("#!/usr/bin/env bash\n[[ 1 == 1 ]] && echo env-bash").await;
        assert_eq!((r.exit, r.stdout.as_str()), (Exit::Code(0), "env-bash\n"));
        let r = run("#!/usr/bin/env -S NAME=value bash -e\necho \"$NAME $-\"").await;
        assert_eq!(r.exit, Exit::Code(0));
        assert!(
            r.stdout.starts_with("value ") && r.stdout.contains('e'),
            "{r:?}"
        );
        // No #! line: /bin/sh (no bash-isms).
        let r = run("echo \"${BASH_VERSION:-sh}\"").await;
        assert_eq!(r.stdout, "sh\n");
        if have("python3") {
            let r = run(
                "#!/usr/bin/env python3\nimport sys\nprint('py', sys.version_info[0])\nsys.exit(4)",
            )
            .await;
            assert_eq!((r.exit, r.stdout.as_str()), (Exit::Code(4), "py 3\n"));
        } else {
            eprintln!("python3 is not installed: skipped");
        }
    }

    #[tokio::test]
    async fn bom_and_crlf() {
        let r = run("\u{feff}#!/bin/sh\r\necho one\r\nif true; then\r\n  echo two\r\nfi\r\n").await;
        assert_eq!(
            (&r.exit, r.stdout.as_str()),
            (&Exit::Code(0), "one\ntwo\n"),
            "{r:?}"
        );
        let r = run("\u{feff}echo bom").await;
        assert_eq!(r.stdout, "bom\n");
    }

    #[tokio::test]
    async fn missing_interpreters() {
        let r = run("#!/usr/bin/no-such-interpreter\necho hi").await;
        assert!(
            matches!(&r.exit, Exit::CannotStart(m) if m.contains("/usr/bin/no-such-interpreter")),
            "{r:?}"
        );
        let r = run("#!/usr/bin/env no-such-interpreter-xyz\necho hi").await;
        assert!(
            matches!(&r.exit, Exit::CannotStart(m) if m.contains("no-such-interpreter-xyz") && m.contains("not installed")),
            "{r:?}"
        );
        let r = run("#!/usr/bin/env\necho hi").await;
        assert!(matches!(&r.exit, Exit::CannotStart(_)), "{r:?}");
        if have("pwsh") {
            eprintln!("pwsh is installed: the NotApplicable cases are skipped");
            return;
        }
        for line in [
            "#!/usr/bin/env pwsh",
            "#!/usr/bin/pwsh",
            "#!/opt/microsoft/powershell/7/pwsh -NoProfile",
            "#!/usr/bin/env powershell",
        ] {
            let r = run(&format!("{line}\nWrite-Output 'hi'\n")).await;
            assert!(
                matches!(&r.exit, Exit::NotApplicable(m) if m.contains("pwsh is not installed")),
                "{line}: {r:?}"
            );
        }
    }

    #[test]
    fn interpreter_plans() {
        let plan = interpreter(b"#!/bin/bash -eu\r\necho", PATH).unwrap();
        assert_eq!(plan.program, PathBuf::from("/bin/bash"));
        assert_eq!(plan.args, ["-eu"]);
        assert!(!plan.powershell);
        let plan = interpreter(b"echo", PATH).unwrap();
        assert_eq!(plan.program, PathBuf::from("/bin/sh"));
        let plan = interpreter(b"#!\necho", PATH).unwrap();
        assert_eq!(plan.program, PathBuf::from("/bin/sh"));
        let plan = interpreter(b"#!/usr/bin/env -S A=1 B=2 sh -x", PATH).unwrap();
        assert_eq!(
            plan.env,
            [("A".into(), "1".into()), ("B".into(), "2".into())]
        );
        assert_eq!(plan.args, ["-x"]);
        assert!(plan.program.ends_with("sh"));
        // env resolves on the script's PATH, not the agent's.
        assert!(matches!(
            interpreter(b"#!/usr/bin/env sh", "/nonexistent"),
            Err(Exit::CannotStart(_))
        ));
        assert_eq!(crlf_to_lf(b"a\r\nb\rc\r\n"), b"a\nb\rc\n");
    }

    #[tokio::test]
    async fn args_are_passed() {
        let mut s = spec("#!/bin/sh\nprintf '[%s]' \"$@\"");
        s.args = vec!["one".into(), "two words".into(), "".into(), "$HOME".into()];
        let r = run_script(&s).await;
        assert_eq!(r.stdout, "[one][two words][][$HOME]");
        assert_no_leftovers(&s.work_dir);
    }

    #[tokio::test]
    async fn environment_is_clean() {
        let mut s = spec("#!/bin/sh\nexec /usr/bin/env");
        s.env = vec![
            ("EXTRA".into(), "1".into()),
            ("LANG".into(), "de_DE.UTF-8".into()),
        ];
        let r = run_script(&s).await;
        assert_eq!(r.exit, Exit::Code(0));
        let mut names: Vec<&str> = r
            .stdout
            .lines()
            .map(|l| l.split_once('=').unwrap().0)
            .collect();
        names.sort_unstable();
        // dash may export PWD itself; nothing of the agent's environment (CARGO_*, RUST_*) leaks.
        names.retain(|n| *n != "PWD");
        assert_eq!(
            names,
            ["EXTRA", "HOME", "LANG", "LOGNAME", "PATH", "USER"],
            "{}",
            r.stdout
        );
        assert!(r.stdout.contains(&format!("PATH={PATH}\n")));
        assert!(r.stdout.contains("LANG=de_DE.UTF-8\n"));
        assert!(r.stdout.contains("EXTRA=1\n"));
        // The working directory is the private run directory, stdin is empty.
        let r = run("pwd; cat; echo \"[$?]\"").await;
        assert!(
            r.stdout.contains("/run-") && r.stdout.ends_with("[0]\n"),
            "{r:?}"
        );
    }

    #[tokio::test]
    async fn script_file_is_private_and_removed() {
        let s = spec("stat -c '%a %n' \"$0\" .; ls -A");
        let r = run_script(&s).await;
        let lines: Vec<&str> = r.stdout.lines().collect();
        assert!(
            lines[0].starts_with("700 ") && lines[0].ends_with("/script"),
            "{r:?}"
        );
        assert_eq!(lines[1], "700 .");
        assert_eq!(lines[2], "script");
        let mode = std::fs::metadata(&s.work_dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        assert_no_leftovers(&s.work_dir);
    }

    #[tokio::test]
    async fn unsafe_work_dir_is_refused() {
        let dir = work_dir();
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let mut s = spec("echo hi");
        s.work_dir = dir.clone();
        let r = run_script(&s).await;
        assert!(
            matches!(&r.exit, Exit::CannotStart(m) if m.contains("writable")),
            "{r:?}"
        );
        std::fs::remove_dir(&dir).unwrap();
    }

    fn pid_gone(pid: i32) -> bool {
        // Gone, or a zombie waiting for a reaper that is not us.
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        }
    }

    #[tokio::test]
    async fn timeout_kills_the_whole_group() {
        let pid_file = work_dir().with_extension("pid");
        let mut s = spec(&format!(
            "#!/bin/sh\nsleep 300 &\necho $! > {}\necho started\nsleep 300\n",
            pid_file.display()
        ));
        s.timeout = Duration::from_millis(700);
        let r = run_script(&s).await;
        assert_eq!(r.exit, Exit::Timeout);
        assert_eq!(r.stdout, "started\n");
        assert!(r.duration < Duration::from_secs(10), "{r:?}");
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        std::fs::remove_file(&pid_file).unwrap();
        let mut gone = false;
        for _ in 0..50 {
            if pid_gone(pid) {
                gone = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            gone,
            "the backgrounded grandchild {pid} survived the timeout"
        );
        assert_no_leftovers(&s.work_dir);
    }

    #[tokio::test]
    async fn a_cancelled_run_kills_the_group() {
        let pid_file = work_dir().with_extension("pid");
        let s = spec(&format!(
            "sleep 300 &\necho $! > {}\nsleep 300\n",
            pid_file.display()
        ));
        let cancelled = tokio::time::timeout(Duration::from_millis(700), run_script(&s)).await;
        assert!(cancelled.is_err());
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        std::fs::remove_file(&pid_file).unwrap();
        for _ in 0..50 {
            if pid_gone(pid) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(pid_gone(pid), "the background process {pid} survived");
        assert_no_leftovers(&s.work_dir);
    }

    #[tokio::test]
    async fn leftovers_in_the_group_end_with_the_script() {
        let pid_file = work_dir().with_extension("pid");
        let s = spec(&format!(
            "sleep 300 &\necho $! > {}\nexit 0\n",
            pid_file.display()
        ));
        let r = run_script(&s).await;
        assert_eq!(r.exit, Exit::Code(0));
        assert!(r.duration < Duration::from_secs(10), "{r:?}");
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        std::fs::remove_file(&pid_file).unwrap();
        for _ in 0..50 {
            if pid_gone(pid) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(pid_gone(pid), "the background process {pid} survived");
        assert_no_leftovers(&s.work_dir);
    }

    #[tokio::test]
    async fn large_output_keeps_the_tail_with_a_marker() {
        let mut s = spec(
            "i=0; while [ $i -lt 1000 ]; do printf '%099d\\n' $i; i=$((i+1)); done; \
             printf 'x%.0s' $(seq 1 100000) >&2",
        );
        s.output_chars = 1000;
        let r = run_script(&s).await;
        assert_eq!(r.exit, Exit::Code(0));
        // 1000 lines of 100 characters: 99 000 left out, the last 10 lines kept.
        let (marker, kept) = r.stdout.split_once('\n').unwrap();
        assert_eq!(marker, "[remediate: 99000 earlier characters left out]");
        assert_eq!(kept.chars().count(), 1000);
        assert!(kept.ends_with(&format!("{:099}\n", 999)));
        assert!(kept.starts_with(&format!("{:099}\n", 990)));
        assert_eq!(
            r.stderr,
            format!(
                "[remediate: 99000 earlier characters left out]\n{}",
                "x".repeat(1000)
            )
        );
        assert_no_leftovers(&s.work_dir);
    }

    #[test]
    fn tail_is_bounded_and_counts_characters() {
        let mut tail = Tail::new(10);
        for _ in 0..10_000 {
            tail.push("äbc€".as_bytes());
            assert!(tail.bytes.len() <= 40);
        }
        assert!(tail.bytes.capacity() <= 128);
        let text = tail.finish();
        assert_eq!(
            text,
            "[remediate: 39990 earlier characters left out]\nc€äbc€äbc€"
        );

        let mut tail = Tail::new(10);
        tail.push(b"short");
        assert_eq!(tail.finish(), "short");

        let mut tail = Tail::new(3);
        tail.push(b"abcd");
        assert_eq!(
            tail.finish(),
            "[remediate: 1 earlier character left out]\nbcd"
        );

        let mut tail = Tail::new(4);
        tail.push(b"ok \xff\xfe!");
        assert_eq!(
            tail.finish(),
            "[remediate: 2 earlier characters left out]\n \u{fffd}\u{fffd}!"
        );

        let mut tail = Tail::new(0);
        tail.push(b"abc");
        assert_eq!(
            tail.finish(),
            "[remediate: 3 earlier characters left out]\n"
        );
        let tail = Tail::new(0);
        assert_eq!(tail.finish(), "");
    }

    #[tokio::test]
    async fn run_as_another_user() {
        let Ok(nobody) = lookup_user("nobody") else {
            eprintln!("no user nobody: skipped");
            return;
        };
        assert!(lookup_user("no-such-user-xyz").is_err());
        assert_eq!(lookup_user(&nobody.uid.to_string()), Ok(nobody));
        let mut s =
            spec("#!/bin/sh\nid -u; id -g; echo \"$HOME\"; cat \"$0\" >/dev/null && echo readable");
        s.run_as = Some(nobody);
        let r = run_script(&s).await;
        if geteuid().is_root() {
            assert_eq!(r.exit, Exit::Code(0), "{r:?}");
            let lines: Vec<&str> = r.stdout.lines().collect();
            assert_eq!(lines[0], nobody.uid.to_string());
            assert_eq!(lines[1], nobody.gid.to_string());
            assert_eq!(lines[3], "readable");
            let mode = std::fs::metadata(&s.work_dir).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o711);
        } else {
            assert!(
                matches!(&r.exit, Exit::CannotStart(m) if m.contains("root")),
                "{r:?}"
            );
        }
        assert_no_leftovers(&s.work_dir);
    }

    #[tokio::test]
    async fn run_as_a_user_who_cannot_reach_the_work_dir() {
        let (Ok(nobody), true) = (lookup_user("nobody"), geteuid().is_root()) else {
            eprintln!("needs root and a user nobody: skipped");
            return;
        };
        let closed = work_dir();
        std::fs::create_dir(&closed).unwrap();
        std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o700)).unwrap();
        let mut s = spec("id -u");
        s.work_dir = closed.join("work");
        s.run_as = Some(nobody);
        let r = run_script(&s).await;
        assert!(
            matches!(&r.exit, Exit::CannotStart(m) if m.contains("cannot reach") && m.contains("mode 700")),
            "{r:?}"
        );
        std::fs::remove_dir_all(&closed).unwrap();
    }
}
