//! No secret in any output: secrets are planted in the environment, in URLs,
//! in Secrets and in what a hostile DingTalk (or a proxy in front of it)
//! echoes back, then every command's `--help` and a set of failing calls are
//! run and their stdout, stderr, log and `status -o json` searched for them.
//! (The controller's Events, metrics and log are searched on the real API
//! server in tests/e2e_namespaced.rs.)

use std::{
    fs,
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    path::Path,
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

const STORE_PASSWORD: &str = "pw-planted-4f1c";
const URL_PASSWORD: &str = "pw-planted-url-77aa";
const APP_SECRET: &str = "sec-planted-9b2e";
const TOKEN: &str = "tok-planted-51d0";
const CREATOR_PASSWORD: &str = "pw-planted-creator-3c3c";
const PLANTED: &[&str] = &[
    STORE_PASSWORD,
    URL_PASSWORD,
    APP_SECRET,
    TOKEN,
    CREATOR_PASSWORD,
];

fn dingbind() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dingbind"));
    c.env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .env(
            "DINGBIND_STORE",
            format!("postgres://app:{STORE_PASSWORD}@127.0.0.1:1/dingbind"),
        )
        .env(
            "DINGBIND_DINGTALK_OAPI_URL",
            format!("https://proxy:{URL_PASSWORD}@127.0.0.1:1"),
        )
        .env(
            "DINGBIND_DINGTALK_API_URL",
            format!("https://proxy:{URL_PASSWORD}@127.0.0.1:1"),
        );
    c
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[track_caller]
fn assert_clean(what: &str, output: &str) {
    for secret in PLANTED {
        assert!(
            !output.contains(secret),
            "{what} shows the planted secret {secret}:\n{output}"
        );
    }
}

#[test]
fn no_command_help_shows_a_credential_from_the_environment() {
    let commands = [
        "crd",
        "validate",
        "controller",
        "dev",
        "status",
        "plan",
        "directory",
        "dingtalk-sim",
    ];
    let top = dingbind().arg("--help").output().unwrap();
    assert_clean("dingbind --help", &text(&top));
    for cmd in commands {
        let out = dingbind().args([cmd, "--help"]).output().unwrap();
        assert!(out.status.success(), "{cmd} --help: {}", text(&out));
        let help = text(&out);
        assert_clean(&format!("dingbind {cmd} --help"), &help);
        if help.contains("DINGBIND_STORE") {
            assert!(
                !help.contains("DINGBIND_STORE="),
                "{cmd} --help shows the value of DINGBIND_STORE:\n{help}"
            );
        }
    }
}

#[test]
fn failing_store_calls_do_not_show_the_password() {
    for args in [
        vec!["status"],
        vec!["status", "-o", "json"],
        vec!["directory", "tenants/acme"],
        vec!["plan", "-f", "examples/tenants"],
    ] {
        let out = dingbind()
            .args(&args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap();
        assert!(
            !out.status.success(),
            "{args:?} should fail: {}",
            text(&out)
        );
        assert_clean(&format!("dingbind {args:?}"), &text(&out));
    }
}

/// A DingTalk stand-in that hands out [`TOKEN`] and answers every other call
/// with an error echoing the whole request (request line with its query,
/// headers, body), as a misbehaving gateway or proxy may.
fn start_echoing_dingtalk() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let _ = answer(stream);
            });
        }
    });
    format!("http://{addr}")
}

fn answer(stream: TcpStream) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut stream = stream;
    loop {
        let mut request = String::new();
        let mut line = String::new();
        let mut length = 0usize;
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
            request.push_str(&line);
            if line == "\r\n" {
                break;
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        request.push_str(&String::from_utf8_lossy(&body));
        let first = request.lines().next().unwrap_or_default().to_string();
        let (status, payload) = if first.contains("/v1.0/oauth2/") {
            (
                "200 OK",
                format!(
                    r#"{{"accessToken":"{TOKEN}","expireIn":7200,"access_token":"{TOKEN}","expires_in":7200}}"#
                ),
            )
        } else {
            // The upstream URL as a gateway logs it, and the request as received.
            (
                "502 Bad Gateway",
                format!(
                    "<html>upstream failed: GET https://oapi.dingtalk.com/topapi/v2/user/list?access_token={TOKEN}&appsecret={APP_SECRET}\nas received: {request}</html>"
                ),
            )
        };
        write!(
            stream,
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{payload}",
            payload.len()
        )?;
        stream.flush()?;
    }
}

const TENANT: &str = "apiVersion: v1
kind: Secret
metadata: {name: acme-dingtalk, namespace: tenants}
stringData: {appKey: acme-key, appSecret: APP_SECRET}
---
apiVersion: v1
kind: Secret
metadata: {name: acme-creator, namespace: tenants}
stringData: {password: CREATOR_PASSWORD}
---
apiVersion: dingbind.dev/v1alpha1
kind: Tenant
metadata: {name: acme, namespace: tenants}
spec:
  mode: DingTalk
  dingtalk:
    corpId: dingacme
    agentId: 1001
    credentialsSecretRef: {name: acme-dingtalk}
    visibleScope: {allEmployees: true}
  creator:
    email: owner@acme.example
    passwordSecretRef: {name: acme-creator}
";

fn status_json(store: &str) -> Option<String> {
    let out = dingbind()
        .args(["status", "--store", store, "-o", "json"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn an_echoing_dingtalk_puts_no_credential_in_the_log_or_the_status() {
    let dingtalk = start_echoing_dingtalk();
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("tenants");
    fs::create_dir_all(&dir).unwrap();
    fs::write(
        dir.join("acme.yaml"),
        TENANT
            .replace("APP_SECRET", APP_SECRET)
            .replace("CREATOR_PASSWORD", CREATOR_PASSWORD),
    )
    .unwrap();
    let store = format!("sqlite://{}", root.path().join("store.db").display());
    let log_path = root.path().join("dev.log");
    let log = fs::File::create(&log_path).unwrap();
    let mut child = dingbind()
        .arg("dev")
        .arg("--dir")
        .arg(&dir)
        .args(["--store", &store, "--dingtalk-url", &dingtalk])
        .args(["--login-listen", "127.0.0.1:0"])
        .current_dir(root.path())
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let read_log = |p: &Path| fs::read_to_string(p).unwrap_or_default();
    // The binding check fails on the echoed error and says so in the status.
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        let started = read_log(&log_path).contains("watching Tenants");
        if let Some(s) = started.then(|| status_json(&store)).flatten()
            && s.contains("\"Bound\"")
            && s.contains("\"False\"")
            && read_log(&log_path).contains("upstream failed")
        {
            break s;
        }
        if Instant::now() > deadline || child.try_wait().ok().flatten().is_some() {
            let _ = child.kill();
            panic!(
                "no failed binding in the status: {:?}\n--- log ---\n{}",
                status_json(&store),
                read_log(&log_path)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let _ = child.kill();
    let _ = child.wait();
    let log = read_log(&log_path);
    assert!(
        log.contains("access_token=***"),
        "the echo is in the log, redacted:\n{log}"
    );
    assert_clean("the dev log", &log);
    assert_clean("status -o json", &status);
    let table = dingbind()
        .args(["status", "--store", &store])
        .output()
        .unwrap();
    assert_clean("status", &text(&table));
}
