//! The `sockeye` binary's settings end to end: a config file, environment variables and flags
//! together (`--print-config`), errors (exit 2, the bad key named), and a server started from a
//! config file. The rules themselves are unit-tested in `src/settings/tests.rs`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};

/// The binary with none of the caller's settings in its environment.
fn sockeye() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sockeye"));
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("SOCKEYE_") || name == "JWT_SECRET" {
            cmd.env_remove(&*name);
        }
    }
    cmd
}

fn config_file(text: &str) -> tempfile::NamedTempFile {
    let file = tempfile::Builder::new().suffix(".toml").tempfile().expect("temp file");
    std::fs::write(file.path(), text).expect("write config");
    file
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn print_config(cmd: &mut Command) -> (Output, toml::Table) {
    let out = cmd.arg("--print-config").output().expect("run sockeye");
    assert!(out.status.success(), "--print-config failed: {}", text(&out.stderr));
    let table = text(&out.stdout).parse::<toml::Table>().expect("--print-config prints TOML");
    (out, table)
}

fn get<'a>(t: &'a toml::Table, key: &str) -> &'a toml::Value {
    let (section, name) = key.split_once('.').map_or((None, key), |(s, n)| (Some(s), n));
    let t = match section {
        Some(s) => t[s].as_table().expect("section"),
        None => t,
    };
    t.get(name).unwrap_or_else(|| panic!("{key} missing"))
}

#[test]
fn print_config_merges_file_env_and_flags() {
    let file = config_file(
        "port = 4000\ncores = 2\n[engine]\nping_interval_ms = 1000\n[chat]\nrate_limit = 3\nrate_burst = 4\n",
    );
    let (out, t) = print_config(
        sockeye()
            .arg("--config")
            .arg(file.path())
            .args(["--rate-burst", "40", "--app=echo"])
            .env("SOCKEYE_CORES", "8")
            .env("SOCKEYE_CHAT_RATE_LIMIT", "30")
            .env("SOCKEYE_CHAT_RATE_BURST", "400")
            .env("JWT_SECRET", "do-not-print-me")
            // The test harnesses' own variables are ignored.
            .env("SOCKEYE_SKIP_INTEROP", "1"),
    );
    let int = |k: &str| get(&t, k).as_integer().unwrap_or_else(|| panic!("{k} is not an integer"));
    assert_eq!(int("port"), 4000, "from the file");
    assert_eq!(int("cores"), 8, "the environment over the file");
    assert_eq!(int("chat.rate_limit"), 30, "the environment over the file");
    assert_eq!(int("chat.rate_burst"), 40, "the flag over the environment and the file");
    assert_eq!(get(&t, "app").as_str(), Some("echo"));
    assert_eq!(int("engine.ping_interval_ms"), 1000, "the file over the echo app's default");
    assert_eq!(int("engine.ping_timeout_ms"), 200, "the echo app's default");
    let stdout = text(&out.stdout);
    assert!(!stdout.contains("do-not-print-me"), "the secret is printed");
    assert!(stdout.contains("JWT_SECRET = <set>"));

    // The printed settings, used as the only source, print the same again.
    let printed = config_file(&stdout);
    let (again, _) = print_config(sockeye().env("SOCKEYE_CONFIG", printed.path()));
    assert_eq!(text(&again.stdout), stdout.replace("JWT_SECRET = <set>", "JWT_SECRET = <unset>"));
}

#[test]
fn bad_settings_exit_2_naming_the_key() {
    let file = config_file("[chat]\nrate_limt = 5\n");
    let out = sockeye().arg("--config").arg(file.path()).arg("--print-config").output().expect("run sockeye");
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    let expected = format!(
        "sockeye: config file {}, key chat.rate_limt: unknown key (did you mean `chat.rate_limit`?)",
        file.path().display()
    );
    assert_eq!(err.trim_end(), expected);
    assert!(out.stdout.is_empty());

    let out = sockeye().env("SOCKEYE_PORT", "99999").output().expect("run sockeye");
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr).trim_end(),
        "sockeye: environment variable SOCKEYE_PORT: must be at most 65535 (got 99999)"
    );

    let out = sockeye().args(["--ping-timeout", "0"]).output().expect("run sockeye");
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(text(&out.stderr).trim_end(), "sockeye: flag --ping-timeout: must be at least 1 (got 0)");
}

#[test]
fn help_exits_0_and_lists_the_options() {
    let out = sockeye().arg("--help").output().expect("run sockeye");
    assert!(out.status.success());
    let help = text(&out.stdout);
    for needle in
        ["--config FILE", "--print-config", "--rate-limit N", "SOCKEYE_CHAT_RATE_LIMIT", "JWT_SECRET"]
    {
        assert!(help.contains(needle), "{needle} missing from --help");
    }
}

#[test]
fn starts_from_a_config_file() {
    let file = config_file("app = \"bench\"\nhost = \"127.0.0.1\"\nport = 0\ncores = 1\n");
    let mut child = sockeye()
        .arg("--config")
        .arg(file.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start sockeye");
    let mut line = String::new();
    let read = BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line);
    let _ = child.kill();
    let _ = child.wait();
    read.expect("read the banner");
    assert!(line.starts_with("sockeye listening on http://127.0.0.1:"), "banner: {line:?}");
}
