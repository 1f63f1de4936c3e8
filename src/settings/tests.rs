use super::*;

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

fn env(list: &[(&str, &str)]) -> BTreeMap<String, String> {
    list.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

/// Load with `file` as the text of any config file asked for.
fn try_load(argv: &[&str], vars: &[(&str, &str)], file: &str) -> Result<Loaded, Error> {
    load(&args(argv), &env(vars), |_| Ok(file.to_owned()))
}

fn run(argv: &[&str], vars: &[(&str, &str)], file: &str) -> Settings {
    match try_load(argv, vars, file) {
        Ok(Loaded::Run(s)) => s,
        other => panic!("expected settings, got {other:?}"),
    }
}

fn err(argv: &[&str], vars: &[(&str, &str)], file: &str) -> Error {
    match try_load(argv, vars, file) {
        Err(e) => e,
        Ok(other) => panic!("expected an error, got {other:?}"),
    }
}

fn value(s: &Settings, key: &str) -> Option<toml::Value> {
    OPTIONS.iter().find(|o| o.key == key).unwrap_or_else(|| panic!("no option {key}")).value(s)
}

fn file_err(path: &str, key: &str, problem: &str) -> Error {
    Error { origin: Origin::File { path: path.into(), key: Some(key.into()) }, problem: problem.into() }
}

const CFG: &[&str] = &["--config", "sockeye.toml"];

fn with_cfg<'a>(more: &[&'a str]) -> Vec<&'a str> {
    CFG.iter().copied().chain(more.iter().copied()).collect()
}

#[test]
fn defaults_without_file_env_or_flags() {
    let s = run(&[], &[], "");
    assert_eq!(s.app, App::Chat);
    assert_eq!(s.server.port, 3000);
    assert_eq!(s.server.host, "0.0.0.0");
    assert_eq!(s.chat.rate_limit, 10.0);
    assert!(s.jwt_secret.is_none() && s.jwt_public_key.is_none() && s.jwt_secret_file.is_none());
    assert!(s.cors_origins.is_empty());
}

#[test]
fn no_file_is_read_without_config() {
    let loaded = load(&args(&["--port", "1"]), &env(&[]), |p| panic!("read {p}"));
    assert!(matches!(loaded, Ok(Loaded::Run(s)) if s.server.port == 1));
}

#[test]
fn config_flag_wins_over_config_env() {
    let mut asked = String::new();
    let _ = load(&args(&["--config=a.toml"]), &env(&[("SOCKEYE_CONFIG", "b.toml")]), |p| {
        asked = p.to_owned();
        Ok(String::new())
    });
    assert_eq!(asked, "a.toml");
    let _ = load(&args(&[]), &env(&[("SOCKEYE_CONFIG", "b.toml")]), |p| {
        asked = p.to_owned();
        Ok(String::new())
    });
    assert_eq!(asked, "b.toml");
}

#[test]
fn precedence_is_file_then_env_then_flag() {
    let file = "port = 1\ncores = 2\n[chat]\nrate_limit = 3\nrate_burst = 4\n";
    // Each key set by a growing set of sources; the highest one wins.
    let vars =
        [("SOCKEYE_CORES", "20"), ("SOCKEYE_CHAT_RATE_LIMIT", "30"), ("SOCKEYE_CHAT_RATE_BURST", "40")];
    let s = run(&with_cfg(&["--rate-burst", "400", "--rate-limit=300"]), &vars, file);
    assert_eq!(s.server.port, 1, "file only");
    assert_eq!(s.server.cores, 20, "env over file");
    assert_eq!(s.chat.rate_limit, 300.0, "flag over env and file");
    assert_eq!(s.chat.rate_burst, 400, "flag over env and file");
    // Without the flags the environment wins; without both, the file.
    let s = run(&with_cfg(&[]), &vars, file);
    assert_eq!((s.server.cores, s.chat.rate_limit, s.chat.rate_burst), (20, 30.0, 40));
    let s = run(&with_cfg(&[]), &[], file);
    assert_eq!((s.server.cores, s.chat.rate_limit, s.chat.rate_burst), (2, 3.0, 4));
}

#[test]
fn a_repeated_flag_takes_the_last_value() {
    let s = run(&["--port", "1", "--port", "2"], &[], "");
    assert_eq!(s.server.port, 2);
}

#[test]
fn echo_defaults_stay_under_explicit_settings() {
    // The app from any source brings its defaults; every explicit setting wins over them.
    for (argv, vars, file) in [
        (vec!["--app", "echo"], vec![], ""),
        (with_cfg(&[]), vec![("SOCKEYE_APP", "echo")], ""),
        (with_cfg(&[]), vec![], "app = \"echo\""),
    ] {
        let s = run(&argv, &vars, file);
        assert_eq!(s.app, App::Echo);
        assert_eq!(s.server.engine.ping_interval, Duration::from_millis(300));
        assert_eq!(s.server.engine.ping_timeout, Duration::from_millis(200));
        assert_eq!(s.server.connect_timeout, Duration::from_millis(1000));
    }
    let file = "[engine]\nping_interval_ms = 5000\n";
    let s = run(&with_cfg(&["--app", "echo"]), &[("SOCKEYE_CONNECT_TIMEOUT_MS", "7000")], file);
    assert_eq!(s.server.engine.ping_interval, Duration::from_millis(5000), "file over echo default");
    assert_eq!(s.server.connect_timeout, Duration::from_millis(7000), "env over echo default");
    assert_eq!(s.server.engine.ping_timeout, Duration::from_millis(200), "echo default kept");
    // The flag's app wins over the file's.
    let s = run(&with_cfg(&["--app", "chat"]), &[], "app = \"echo\"");
    assert_eq!((s.app, s.server.engine.ping_interval), (App::Chat, Duration::from_millis(25_000)));
}

#[test]
fn every_flag_of_the_hand_written_parser_still_works() {
    // The flags main.rs parsed before the table, as README, tests and tools use them.
    let s = run(
        &[
            "--app",
            "bench",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--cores",
            "2",
            "--path",
            "/io/",
            "--ping-interval",
            "1000",
            "--ping-timeout",
            "900",
            "--max-payload",
            "5000",
            "--connect-timeout",
            "800",
            "--max-output",
            "70000",
            "--shutdown-timeout",
            "0",
            "--cors-origin",
            "https://a.example",
            "--cors-origin",
            "http://b.example:8080",
            "--data-dir",
            "/tmp/d",
            "--web-dir",
            "/tmp/w",
            "--jwt-public-key",
            "k.pem",
            "--jwt-algorithm",
            "es256",
            "--max-message-chars",
            "11",
            "--max-message-bytes",
            "12",
            "--max-name-chars",
            "13",
            "--max-room-name-chars",
            "14",
            "--max-rooms-per-socket",
            "15",
            "--rate-limit",
            "16",
            "--rate-burst",
            "17",
            "--abuse-disconnect",
            "0",
            "--history-limit",
            "19",
            "--max-history-page",
            "20",
            "--presence-interval-ms",
            "21",
            "--no-presence-event",
            "online",
            "--no-presence-event",
            "userConnected",
        ],
        &[],
        "",
    );
    assert_eq!(s.app, App::Bench);
    let c = &s.server;
    assert_eq!((c.host.as_str(), c.port, c.cores, c.path.as_str()), ("127.0.0.1", 0, 2, "/io/"));
    assert_eq!(c.engine.ping_interval, Duration::from_millis(1000));
    assert_eq!(c.engine.ping_timeout, Duration::from_millis(900));
    assert_eq!(c.engine.max_payload, 5000);
    assert_eq!(c.connect_timeout, Duration::from_millis(800));
    assert_eq!(c.limits.max_output_bytes, 70000);
    assert_eq!(c.shutdown_timeout, Duration::ZERO);
    assert_eq!(s.cors_origins, ["https://a.example", "http://b.example:8080"]);
    let cfg = s.server_config();
    assert!(cfg.cors.origin_allowed(Some("https://a.example")));
    assert!(!cfg.cors.origin_allowed(Some("https://evil.example")));
    let h = &s.chat;
    assert_eq!(h.data_dir, PathBuf::from("/tmp/d"));
    assert_eq!(h.web_dir, Some(PathBuf::from("/tmp/w")));
    assert_eq!(s.jwt_public_key, Some(PathBuf::from("k.pem")));
    assert_eq!(s.jwt_algorithm, JwtAlg::ES256);
    let sizes = [h.max_message_chars, h.max_message_bytes, h.max_name_chars, h.max_room_name_chars];
    assert_eq!(sizes, [11, 12, 13, 14]);
    assert_eq!(h.max_rooms_per_socket, 15);
    assert_eq!((h.rate_limit, h.rate_burst, h.abuse_disconnect), (16.0, 17, 0));
    assert_eq!((h.history_limit, h.max_history_page), (19, 20));
    assert_eq!(h.presence_interval, Duration::from_millis(21));
    assert!(h.emit_get_online_users && !h.emit_online && !h.emit_user_connected && h.emit_user_disconnected);
}

#[test]
fn chat_rooms_fit_under_the_broker_bound() {
    let s = run(&["--max-rooms-per-socket", "5000"], &[], "");
    assert_eq!(s.server_config().limits.max_rooms_per_socket, 5008);
    assert_eq!(run(&[], &[], "").server_config().limits.max_rooms_per_socket, 1024);
}

#[test]
fn lists_replace_lower_sources_and_accept_every_form() {
    let file = "cors_origins = [\"https://file.example\"]\n[chat]\ndisabled_presence_events = [\"online\"]\n";
    let s = run(&with_cfg(&[]), &[], file);
    assert_eq!(s.cors_origins, ["https://file.example"]);
    assert!(!s.chat.emit_online && s.chat.emit_user_connected);
    let vars = [("SOCKEYE_CORS_ORIGINS", "https://a.example, https://b.example"), ("X", "y")];
    let s = run(&with_cfg(&[]), &vars, file);
    assert_eq!(s.cors_origins, ["https://a.example", "https://b.example"]);
    let s = run(
        &with_cfg(&["--cors-origin", "https://c.example", "--no-presence-event", "getonlineusers"]),
        &vars,
        file,
    );
    assert_eq!(s.cors_origins, ["https://c.example"]);
    assert!(!s.chat.emit_get_online_users && s.chat.emit_online, "the flag's list replaces the file's");
    assert_eq!(
        value(&s, "chat.disabled_presence_events"),
        Some(toml::Value::Array(vec!["getOnlineUsers".into()]))
    );
}

#[test]
fn env_rule_and_ignored_variables() {
    assert_eq!(env_var("port"), "SOCKEYE_PORT");
    assert_eq!(env_var("chat.rate_limit"), "SOCKEYE_CHAT_RATE_LIMIT");
    assert_eq!(env_var("engine.ping_interval_ms"), "SOCKEYE_ENGINE_PING_INTERVAL_MS");
    let mut vars: Vec<(&str, &str)> = IGNORED_ENV.iter().map(|v| (*v, "whatever")).collect();
    vars.extend([("PATH", "/bin"), ("SOCKEYE_PORT", ""), ("SOCKEYE_HOST", "::1")]);
    let s = run(&[], &vars, "");
    assert_eq!(s.server.port, 3000, "an empty variable is unset");
    assert_eq!(s.server.host, "::1");
}

#[test]
fn table_is_consistent() {
    let mut keys = std::collections::HashSet::new();
    let mut flags = std::collections::HashSet::new();
    let mut vars = std::collections::HashSet::new();
    let mut sections_seen: Vec<&str> = Vec::new();
    for o in OPTIONS {
        assert!(keys.insert(o.key), "duplicate key {}", o.key);
        assert!(flags.insert(o.flag), "duplicate flag {}", o.flag);
        assert!(vars.insert(o.env_var()), "duplicate variable {}", o.env_var());
        assert!(o.flag.starts_with("--") && !o.flag.contains('='), "{}", o.flag);
        assert!(!["--config", "--print-config", "--defaults", "--help"].contains(&o.flag));
        assert!(o.env_var() != CONFIG_ENV && !IGNORED_ENV.contains(&o.env_var().as_str()));
        assert!(o.key.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.'));
        assert!(o.key.matches('.').count() <= 1, "one level of sections: {}", o.key);
        assert!(!o.help.contains('\n') && !o.help.is_empty() && !o.metavar.is_empty(), "{}", o.key);
        assert!(SECTIONS.iter().any(|(s, _)| *s == o.section()), "{}: unknown section", o.key);
        // Keys of one section are contiguous, in the order of SECTIONS.
        if sections_seen.last() != Some(&o.section()) {
            assert!(!sections_seen.contains(&o.section()), "{}: section split", o.key);
            sections_seen.push(o.section());
        }
        // Every default passes its own checks (so the printed defaults load back).
        for app in App::ALL {
            let d = Settings::defaults(app);
            if let Some(v) = o.value(&d) {
                assert!(o.parse_toml(&v).is_ok(), "{}: default {v} fails its check", o.key);
            }
        }
    }
    let order: Vec<&str> = SECTIONS.iter().map(|(s, _)| *s).collect();
    assert_eq!(sections_seen, order);
}

#[test]
fn help_documents_every_option() {
    let text = match try_load(&["--port", "nonsense", "--help"], &[], "") {
        Ok(Loaded::Help(text)) => text,
        other => panic!("{other:?}"),
    };
    assert_eq!(text, help());
    for o in OPTIONS {
        assert!(text.contains(&format!("{} {}", o.flag, o.metavar)), "{}", o.flag);
        assert!(text.contains(&format!("key {},", o.key)), "{}", o.key);
        assert!(text.contains(&o.env_var()), "{}", o.env_var());
        for word in o.help.split_whitespace() {
            assert!(text.contains(word), "{}: {word}", o.key);
        }
    }
    for extra in
        ["--config FILE", "SOCKEYE_CONFIG", "--print-config", "--defaults", "JWT_SECRET", "-h, --help"]
    {
        assert!(text.contains(extra), "{extra}");
    }
    assert!(text.contains("[default: 25000; echo app: 300]"), "echo defaults are shown");
    assert!(text.lines().all(|l| l.chars().count() <= HELP_WIDTH), "lines fit in {HELP_WIDTH} columns");
    assert!(matches!(try_load(&["-h"], &[], ""), Ok(Loaded::Help(_))));
}

/// Settings from every source at once, most options away from their defaults.
fn mixed() -> Settings {
    let file = r#"
        app = "chat"
        port = 4000
        cors_origins = ["https://one.example", "https://two.example"]
        [engine]
        ping_interval_ms = 1234
        [limits]
        max_output_bytes = 1048576
        [chat]
        data_dir = "/var/lib/sockeye \"quoted\""
        rate_limit = 7
        disabled_presence_events = ["userDisconnected"]
        [auth]
        jwt_public_key = "/etc/sockeye/pub.pem"
        jwt_algorithm = "es384"
    "#;
    let vars = [("SOCKEYE_CORES", "3"), ("SOCKEYE_CHAT_WEB_DIR", "/srv/web"), ("JWT_SECRET", "hunter2")];
    let argv = with_cfg(&["--rate-burst", "99", "--path", "/rt/", "--max-header-bytes", "16384"]);
    run(&argv, &vars, file)
}

#[test]
fn print_config_round_trips() {
    let s = mixed();
    let printed = s.to_toml();
    assert!(!printed.contains("hunter2"), "the secret is never printed");
    assert!(printed.contains("# JWT_SECRET = <set>"));
    assert!(run(&[], &[], "").to_toml().contains("# JWT_SECRET = <unset>"));
    // Loaded back as the only source, it gives the same value for every option.
    let back = run(CFG, &[], &printed);
    for o in OPTIONS {
        assert_eq!(o.value(&back), o.value(&s), "{}", o.key);
    }
    assert_eq!(back.to_toml(), printed.replace("JWT_SECRET = <set>", "JWT_SECRET = <unset>"));
    assert!(matches!(try_load(&["--print-config"], &[], ""), Ok(Loaded::Print(_))));
    // An unset optional value is printed as a comment and stays unset.
    let d = run(&[], &[], "");
    assert!(d.to_toml().contains("# web_dir = "));
    assert_eq!(run(CFG, &[], &d.to_toml()).chat.web_dir, None);
}

#[test]
fn debug_hides_the_secret() {
    let s = mixed();
    assert_eq!(s.jwt_secret.as_ref().map(Secret::expose), Some("hunter2"));
    assert!(!format!("{s:?}").contains("hunter2"));
}

#[test]
fn print_defaults_ignores_every_source() {
    let loaded =
        load(&args(&["--print-config", "--defaults", "--port", "1"]), &env(&[("SOCKEYE_PORT", "2")]), |p| {
            panic!("read {p}")
        });
    match loaded {
        Ok(Loaded::Print(s)) => assert_eq!(s.to_toml(), Settings::defaults(App::Chat).to_toml()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn example_file_is_up_to_date() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sockeye.example.toml");
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    let expected = Settings::defaults(App::Chat).to_toml();
    assert!(
        on_disk == expected,
        "sockeye.example.toml is out of date; regenerate it with\n  \
         cargo run -- --print-config --defaults > sockeye.example.toml"
    );
    // And it loads as a config file.
    let s = run(CFG, &[], &on_disk);
    assert_eq!(s.to_toml(), expected);
}

#[test]
fn secret_sources() {
    let secret = |s: &Settings| s.jwt_secret.as_ref().map(|x| x.expose().to_owned());
    // JWT_SECRET (environment) wins over the file's secret file...
    let s = run(CFG, &[("JWT_SECRET", "s")], "[auth]\njwt_secret_file = \"/f\"");
    assert_eq!((secret(&s), s.jwt_secret_file), (Some("s".into()), None));
    // ...and a flag's secret file over JWT_SECRET.
    let s = run(&["--jwt-secret-file", "/f"], &[("JWT_SECRET", "s")], "");
    assert_eq!((secret(&s), s.jwt_secret_file), (None, Some(PathBuf::from("/f"))));
    // An empty JWT_SECRET is unset, as before.
    assert_eq!(secret(&run(&[], &[("JWT_SECRET", "")], "")), None);
    // Both in the environment is ambiguous.
    let e = err(&[], &[("JWT_SECRET", "s"), ("SOCKEYE_AUTH_JWT_SECRET_FILE", "/f")], "");
    assert_eq!(e.origin, Origin::Env("SOCKEYE_AUTH_JWT_SECRET_FILE".into()));
    // The file holds no secret itself.
    let e = err(CFG, &[], "[auth]\njwt_secret = \"x\"");
    assert_eq!(e.origin, Origin::File { path: "sockeye.toml".into(), key: Some("auth.jwt_secret".into()) });
    assert!(e.problem.contains("JWT_SECRET"), "{e}");
}

#[test]
fn file_errors_name_the_file_and_key() {
    let cases: &[(&str, &str, &str)] = &[
        ("prot = 1", "prot", "unknown key (did you mean `port`?)"),
        ("[chat]\nrate_limt = 1", "chat.rate_limt", "unknown key (did you mean `chat.rate_limit`?)"),
        ("[chat.extra]\nx = 1", "chat.extra", "unknown key"),
        ("[server]\nport = 1", "server", "unknown key"),
        ("chat = 5", "chat", "must be a table ([chat]), found integer"),
        ("port = \"80\"", "port", "expected a whole number, found string \"80\""),
        ("port = 70000", "port", "must be at most 65535 (got 70000)"),
        ("cores = 65", "cores", "must be at most 64 (got 65)"),
        ("cores = -1", "cores", "must be at least 0 (got -1)"),
        ("port = 1.5", "port", "expected a whole number, found float 1.5"),
        ("host = 1", "host", "expected a string, found integer 1"),
        ("host = \"\"", "host", "must not be empty"),
        ("path = \"socket.io\"", "path", "`socket.io` must start with `/`"),
        ("app = \"chatty\"", "app", "`chatty` is not one of chat, echo, bench"),
        (
            "cors_origins = \"https://a.example\"",
            "cors_origins",
            "expected an array of strings, found string",
        ),
        ("cors_origins = [1]", "cors_origins", "expected an array of strings, found 1"),
        ("cors_origins = [\"https://a.example/\"]", "cors_origins", "`https://a.example/` is not an origin"),
        ("[engine]\nping_timeout_ms = 0", "engine.ping_timeout_ms", "must be at least 1 (got 0)"),
        ("[engine]\nping_interval_ms = 2147483648", "engine.ping_interval_ms", "must be at most 2147483647"),
        ("[chat]\nrate_limit = 0", "chat.rate_limit", "must be at least 1 (got 0)"),
        ("[chat]\nhistory_limit = 1001", "chat.history_limit", "must be at most 1000 (got 1001)"),
        (
            "[chat]\ndisabled_presence_events = [\"away\"]",
            "chat.disabled_presence_events",
            "`away` is not one of",
        ),
        ("[auth]\njwt_algorithm = \"HS256\"", "auth.jwt_algorithm", "`HS256` is not one of RS256"),
    ];
    for (file, key, problem) in cases {
        let e = err(CFG, &[], file);
        assert_eq!(e.origin, file_err("sockeye.toml", key, "").origin, "{file}: {e}");
        assert!(e.problem.starts_with(problem), "{file}: {e}");
        assert!(e.to_string().starts_with(&format!("config file sockeye.toml, key {key}: ")), "{e}");
    }
}

#[test]
fn file_as_a_whole() {
    let e = err(CFG, &[], "port = ");
    assert_eq!(e.origin, Origin::File { path: "sockeye.toml".into(), key: None });
    assert!(e.problem.starts_with("not valid TOML"), "{e}");
    assert!(e.to_string().starts_with("config file sockeye.toml: not valid TOML"), "{e}");
    let e = load(&args(CFG), &env(&[]), |_| Err("No such file or directory".into())).unwrap_err();
    assert_eq!(e.to_string(), "config file sockeye.toml: cannot read it: No such file or directory");
}

#[test]
fn env_errors_name_the_variable() {
    let cases: &[(&str, &str, &str)] = &[
        ("SOCKEYE_PROT", "1", "unknown variable (did you mean `SOCKEYE_PORT`?)"),
        ("SOCKEYE_CHAT_RATE_LIMT", "1", "unknown variable (did you mean `SOCKEYE_CHAT_RATE_LIMIT`?)"),
        ("SOCKEYE_RATE_LIMIT", "1", "unknown variable"),
        ("SOCKEYE_PORT", "http", "`http` is not a whole number"),
        ("SOCKEYE_PORT", "-1", "`-1` is not a whole number"),
        ("SOCKEYE_CORES", "100", "must be at most 64 (got 100)"),
        ("SOCKEYE_CHAT_RATE_BURST", "0", "must be at least 1 (got 0)"),
        ("SOCKEYE_APP", "web", "`web` is not one of chat, echo, bench"),
        ("SOCKEYE_PATH", "x", "`x` must start with `/`"),
        ("SOCKEYE_CORS_ORIGINS", "https://a.example,nope", "`nope` is not an origin"),
    ];
    for (var, val, problem) in cases {
        let e = err(&[], &[(var, val)], "");
        assert_eq!(e.origin, Origin::Env((*var).into()), "{var}={val}: {e}");
        assert!(e.problem.starts_with(problem), "{var}={val}: {e}");
        assert!(e.to_string().starts_with(&format!("environment variable {var}: ")), "{e}");
    }
}

#[test]
fn flag_errors_name_the_flag() {
    let cases: &[(&[&str], &str, &str)] = &[
        (&["--prot", "1"], "--prot", "unknown option (did you mean `--port`?) (see --help)"),
        (&["--rate-limt=1"], "--rate-limt", "unknown option (did you mean `--rate-limit`?)"),
        (&["--port"], "--port", "needs a value"),
        (&["--port", "x"], "--port", "`x` is not a whole number"),
        (&["--port", "65536"], "--port", "must be at most 65535 (got 65536)"),
        (&["--cores", "65"], "--cores", "must be at most 64"),
        (&["--ping-timeout", "0"], "--ping-timeout", "must be at least 1 (got 0)"),
        (&["--rate-limit", "0"], "--rate-limit", "must be at least 1 (got 0)"),
        (&["--history-limit", "5000"], "--history-limit", "must be at most 1000 (got 5000)"),
        (&["--path", "socket.io"], "--path", "`socket.io` must start with `/`"),
        (&["--app", "chatty"], "--app", "`chatty` is not one of chat, echo, bench"),
        (&["--no-presence-event", "away"], "--no-presence-event", "`away` is not one of getOnlineUsers"),
        (&["--cors-origin", "app.example.com"], "--cors-origin", "`app.example.com` is not an origin"),
        (&["--jwt-algorithm", "PS256"], "--jwt-algorithm", "`PS256` is not one of RS256"),
        (&["--config", ""], "--config", "must not be empty"),
        (&["port"], "port", "unexpected argument (see --help)"),
        (&["--print-config=yes"], "--print-config", "takes no value"),
        (&["--defaults"], "--defaults", "only with --print-config"),
    ];
    for (argv, flag, problem) in cases {
        let e = err(argv, &[], "");
        assert_eq!(e.origin, Origin::Flag((*flag).into()), "{argv:?}: {e}");
        assert!(e.problem.starts_with(problem), "{argv:?}: {e}");
        assert!(e.to_string().starts_with(&format!("flag {flag}: ")), "{e}");
    }
}

#[test]
fn a_bad_value_is_an_error_even_when_a_higher_source_overrides_it() {
    let e = err(&with_cfg(&["--port", "1"]), &[], "port = -5");
    assert_eq!(e.origin, file_err("sockeye.toml", "port", "").origin);
}

#[test]
fn suggestions_are_close_or_absent() {
    assert_eq!(suggest("--prot", ["--port", "--path"]), " (did you mean `--port`?)");
    assert_eq!(suggest("--zzzzzzzz", ["--port", "--path"]), "");
    assert_eq!(edit_distance("kitten", "sitting"), 3);
    assert_eq!(edit_distance("", "abc"), 3);
}
