//! A real Kubernetes API server for the integration tests: upstream etcd and
//! kube-apiserver (see `tests/kube/README.md`), started once per test binary.
//!
//! ```ignore
//! mod support;
//! use support::kube_env::KubeEnv;
//!
//! let env = KubeEnv::shared();            // starts etcd + kube-apiserver on first use
//! let ns = env.new_namespace("scenario");  // one namespace per scenario
//! let out = env.kubectl(["get", "ns", &ns]);
//! ```
//!
//! Binaries: `KUBEBUILDER_ASSETS` (a folder holding `kube-apiserver` and `etcd`,
//! as setup-envtest lays it out), else whatever `scripts/kube-assets.sh`
//! prints (it builds them once into a cache). If neither works the calling test
//! fails with instructions: it never passes by skipping.
//!
//! Lifetime of the servers. Rust never drops statics, and libtest ends the
//! process with `exit`, so a `Drop` guard alone cannot stop them; nor can it
//! when the test binary is killed. `PR_SET_DEATHSIG` would need `libc` and
//! is tied to the *thread* that spawned the child, which here is whichever test
//! thread came first and ends with that test, taking the API server down under
//! the other tests. Instead:
//! - etcd and kube-apiserver run in a process group of their own
//!   (`CommandExt::process_group`), so a Ctrl-C in the terminal does not
//!   half-kill them and one signal to the group stops both;
//! - a watchdog (`sh`, also in its own group) holds the read end of a pipe
//!   whose write end only this process holds (std opens pipes `O_CLOEXEC`, so no
//!   other child inherits it). However this process ends (tests done, panic,
//!   Ctrl-C, SIGKILL), the kernel closes the write end, the watchdog reads EOF,
//!   SIGKILLs the group and removes the temporary folder (certificates, etcd
//!   data, logs).

use std::fs;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long etcd and kube-apiserver may take to become ready (normally ~5 s).
const STARTUP_DEADLINE: Duration = Duration::from_secs(90);

const HOW_TO_GET_BINARIES: &str = "\
The end-to-end tests need the upstream kube-apiserver and etcd binaries.
Get them in one of these ways:
  - export KUBEBUILDER_ASSETS=\"$(scripts/kube-assets.sh)\"   (builds them once from tests/kube with Go >= 1.26
    and the Go module proxy: ~10 min cold on 2 cores, cached afterwards), or
  - point KUBEBUILDER_ASSETS at an envtest folder holding `kube-apiserver` and `etcd`
    (e.g. `setup-envtest use -p path`).
See docs/testing.md.";

/// One running etcd + kube-apiserver pair, with an admin kubeconfig.
pub struct KubeEnv {
    dir: PathBuf,
    server: String,
    ca_file: PathBuf,
    kubeconfig: PathBuf,
    kubectl: PathBuf,
    version: String,
    namespaces: AtomicU32,
    /// The servers; never waited for: the watchdog stops them.
    _children: Mutex<Vec<Child>>,
}

/// The write end of the watchdog's pipe. Kept open until the process ends.
static WATCHDOG: OnceLock<Mutex<ChildStdin>> = OnceLock::new();
static SHARED: OnceLock<Result<KubeEnv, String>> = OnceLock::new();

impl KubeEnv {
    /// The API server of this test binary, started on first use.
    pub fn shared() -> &'static KubeEnv {
        // A failed start is kept too: every test then fails with the same
        // message instead of trying again.
        match SHARED.get_or_init(KubeEnv::start) {
            Ok(env) => env,
            Err(e) => panic!("starting the test API server failed: {e}"),
        }
    }

    /// The admin kubeconfig (client certificate in `system:masters`).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// `https://127.0.0.1:PORT`.
    pub fn server_url(&self) -> &str {
        &self.server
    }

    /// `gitVersion` of the running kube-apiserver, e.g. `v1.37.2`.
    pub fn server_version(&self) -> &str {
        &self.version
    }

    /// The temporary folder of this API server (logs: `etcd.log`, `apiserver.log`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Runs kubectl as the admin.
    pub fn kubectl<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.kubectl_as(&self.kubeconfig, args)
    }

    /// Runs kubectl with another kubeconfig (e.g. a ServiceAccount's).
    pub fn kubectl_as<I, S>(&self, kubeconfig: &Path, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.kubectl_command(kubeconfig)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", self.kubectl.display()))
    }

    /// Runs kubectl as the admin with `stdin` as its standard input.
    pub fn kubectl_stdin<I, S>(&self, stdin: &str, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut child = self
            .kubectl_command(&self.kubeconfig)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("running {}: {e}", self.kubectl.display()));
        if let Some(mut input) = child.stdin.take() {
            input
                .write_all(stdin.as_bytes())
                .expect("writing kubectl's stdin");
        }
        child.wait_with_output().expect("waiting for kubectl")
    }

    fn kubectl_command(&self, kubeconfig: &Path) -> Command {
        let mut cmd = Command::new(&self.kubectl);
        cmd.env("KUBECONFIG", kubeconfig)
            // Discovery cache per API server, not in ~/.kube/cache.
            .env("KUBECACHEDIR", self.dir.join("kubectl-cache"))
            .arg("--kubeconfig")
            .arg(kubeconfig);
        cmd
    }

    /// A kube client acting as the admin. Call it inside the test's runtime.
    pub async fn client(&self) -> kube::Client {
        client_from_kubeconfig(&self.kubeconfig).await
    }

    /// Creates a fresh namespace `PREFIX-N` and returns its name.
    pub fn new_namespace(&self, prefix: &str) -> String {
        let n = self.namespaces.fetch_add(1, Ordering::SeqCst) + 1;
        let prefix: String = prefix
            .to_ascii_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .take(50)
            .collect();
        let name = format!("{}-{n}", prefix.trim_matches('-'));
        let out = self.kubectl(["create", "namespace", &name]);
        assert!(
            out.status.success(),
            "creating namespace {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        name
    }

    /// A kubeconfig authenticating as ServiceAccount `namespace/name` with a
    /// token from the TokenRequest API (`kubectl create token`), valid 1 h.
    pub fn service_account_kubeconfig(&self, namespace: &str, name: &str) -> PathBuf {
        let out = self.kubectl(["create", "token", name, "-n", namespace, "--duration=1h"]);
        assert!(
            out.status.success(),
            "kubectl create token {name} -n {namespace}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let path = self
            .dir
            .join(format!("kubeconfig-sa-{namespace}-{name}.yaml"));
        let user = format!("system:serviceaccount:{namespace}:{name}");
        let yaml = kubeconfig_yaml(
            &self.server,
            &self.ca_file,
            &user,
            &format!("    token: {token}\n"),
        );
        fs::write(&path, yaml).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        path
    }

    /// A kube client acting with the given kubeconfig (e.g. a ServiceAccount's).
    pub async fn client_as(&self, kubeconfig: &Path) -> kube::Client {
        client_from_kubeconfig(kubeconfig).await
    }

    fn start() -> Result<KubeEnv, String> {
        let assets = find_assets()?;
        let kubectl = find_kubectl()?;
        which("openssl").ok_or(
            "`openssl` is not installed; the harness uses it to make the test certificates \
             (Debian/Ubuntu: apt-get install -y openssl)",
        )?;
        let dir = tempfile::Builder::new()
            .prefix("dingbind-kube-e2e.")
            .tempdir()
            .map_err(|e| format!("creating a temporary folder: {e}"))?
            .keep();

        // The watchdog first, so that nothing started below can outlive us.
        let watchdog = start_watchdog(&dir)?;
        let watchdog = WATCHDOG.get_or_init(|| Mutex::new(watchdog));

        let pki = dir.join("pki");
        let certs = dir.join("certs");
        for d in [&pki, &certs] {
            fs::create_dir_all(d).map_err(|e| format!("creating {}: {e}", d.display()))?;
        }
        make_pki(&pki)?;

        let etcd_client = free_port()?;
        let etcd_peer = free_port()?;
        let secure_port = free_port()?;
        let etcd_log = log_file(&dir, "etcd.log")?;
        let etcd = Command::new(assets.join("etcd"))
            .arg(format!("--data-dir={}", dir.join("etcd").display()))
            .arg(format!(
                "--listen-client-urls=http://127.0.0.1:{etcd_client}"
            ))
            .arg(format!(
                "--advertise-client-urls=http://127.0.0.1:{etcd_client}"
            ))
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{etcd_peer}"))
            .arg(format!(
                "--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}"
            ))
            .arg(format!(
                "--initial-cluster=default=http://127.0.0.1:{etcd_peer}"
            ))
            .arg("--unsafe-no-fsync=true")
            .stdin(Stdio::null())
            .stdout(etcd_log.try_clone().map_err(|e| e.to_string())?)
            .stderr(etcd_log)
            .process_group(0)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", assets.join("etcd").display()))?;
        let group = etcd.id();
        {
            let mut w = watchdog.lock().map_err(|_| "watchdog lock poisoned")?;
            writeln!(w, "{group}").map_err(|e| format!("arming the watchdog: {e}"))?;
        }
        let mut children = vec![etcd];

        let apiserver_log = log_file(&dir, "apiserver.log")?;
        let pki_arg = |flag: &str, file: &str| format!("--{flag}={}", pki.join(file).display());
        let apiserver = Command::new(assets.join("kube-apiserver"))
            .arg(format!("--etcd-servers=http://127.0.0.1:{etcd_client}"))
            .arg("--bind-address=127.0.0.1")
            .arg("--advertise-address=127.0.0.1")
            .arg(format!("--secure-port={secure_port}"))
            .arg(format!("--cert-dir={}", certs.display()))
            .arg(pki_arg("client-ca-file", "ca.crt"))
            .arg("--authorization-mode=RBAC")
            .arg("--service-account-issuer=https://localhost")
            .arg(pki_arg("service-account-key-file", "sa.key"))
            .arg(pki_arg("service-account-signing-key-file", "sa.key"))
            .arg("--service-cluster-ip-range=10.0.0.0/24")
            .arg("--allow-privileged=true")
            .arg("--disable-admission-plugins=ServiceAccount")
            .arg("--endpoint-reconciler-type=none")
            .stdin(Stdio::null())
            .stdout(apiserver_log.try_clone().map_err(|e| e.to_string())?)
            .stderr(apiserver_log)
            .process_group(group as i32)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", assets.join("kube-apiserver").display()))?;
        children.push(apiserver);

        let server = format!("https://127.0.0.1:{secure_port}");
        let ca_file = certs.join("apiserver.crt");
        let kubeconfig = dir.join("kubeconfig-admin.yaml");
        let mut env = KubeEnv {
            dir: dir.clone(),
            server,
            ca_file,
            kubeconfig,
            kubectl,
            version: String::new(),
            namespaces: AtomicU32::new(0),
            _children: Mutex::new(Vec::new()),
        };

        // The serving certificate appears in --cert-dir a moment after start.
        let deadline = Instant::now() + STARTUP_DEADLINE;
        loop {
            check_alive(&mut children, &dir)?;
            if fs::metadata(&env.ca_file).is_ok_and(|m| m.len() > 0) {
                break;
            }
            if Instant::now() > deadline {
                return Err(startup_failure(&dir, "no serving certificate"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let admin = format!(
            "    client-certificate: {}\n    client-key: {}\n",
            pki.join("admin.crt").display(),
            pki.join("admin.key").display()
        );
        fs::write(
            &env.kubeconfig,
            kubeconfig_yaml(&env.server, &env.ca_file, "admin", &admin),
        )
        .map_err(|e| format!("writing the kubeconfig: {e}"))?;

        loop {
            check_alive(&mut children, &dir)?;
            let out = env.kubectl(["get", "--raw", "/readyz"]);
            if out.status.success() {
                break;
            }
            if Instant::now() > deadline {
                return Err(startup_failure(
                    &dir,
                    &format!(
                        "/readyz not ready after {STARTUP_DEADLINE:?}: {}",
                        String::from_utf8_lossy(&out.stderr).trim()
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }

        let out = env.kubectl(["get", "--raw", "/version"]);
        let version: serde_json::Value =
            serde_json::from_slice(&out.stdout).map_err(|e| format!("reading /version: {e}"))?;
        env.version = version["gitVersion"]
            .as_str()
            .unwrap_or("unknown")
            .to_string();
        // Straight to stderr, past libtest's output capture: once per test binary.
        let _ = writeln!(
            std::io::stderr(),
            "kube-env: kube-apiserver {} (etcd {}) at {} from {}; kubeconfig {}",
            env.version,
            etcd_version(&assets),
            env.server,
            assets.display(),
            env.kubeconfig.display()
        );
        env._children = Mutex::new(children);
        Ok(env)
    }
}

async fn client_from_kubeconfig(path: &Path) -> kube::Client {
    let kubeconfig = kube::config::Kubeconfig::read_from(path)
        .unwrap_or_else(|e| panic!("reading kubeconfig {}: {e}", path.display()));
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap_or_else(|e| panic!("loading kubeconfig {}: {e}", path.display()));
    kube::Client::try_from(config)
        .unwrap_or_else(|e| panic!("building a client from {}: {e}", path.display()))
}

fn kubeconfig_yaml(server: &str, ca_file: &Path, user: &str, credentials: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: {server}
    certificate-authority: {ca}
users:
- name: {user}
  user:
{credentials}contexts:
- name: test
  context:
    cluster: test
    user: {user}
current-context: test
",
        ca = ca_file.display()
    )
}

/// `KUBEBUILDER_ASSETS` if it holds both binaries, else `scripts/kube-assets.sh`.
fn find_assets() -> Result<PathBuf, String> {
    let has_both = |d: &Path| d.join("kube-apiserver").is_file() && d.join("etcd").is_file();
    if let Some(dir) = std::env::var_os("KUBEBUILDER_ASSETS").map(PathBuf::from)
        && has_both(&dir)
    {
        return Ok(dir);
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/kube-assets.sh");
    // stderr is inherited: a cold build shows its progress and the versions.
    let out = Command::new("bash")
        .arg(&script)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("running {}: {e}\n\n{HOW_TO_GET_BINARIES}", script.display()))?;
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if out.status.success() && has_both(&dir) {
        Ok(dir)
    } else {
        Err(format!(
            "no kube-apiserver/etcd: KUBEBUILDER_ASSETS is {} and {} failed ({}; its messages are above)\n\n{HOW_TO_GET_BINARIES}",
            std::env::var("KUBEBUILDER_ASSETS")
                .map(|v| format!("{v:?} (without both binaries)"))
                .unwrap_or_else(|_| "unset".into()),
            script.display(),
            out.status
        ))
    }
}

fn find_kubectl() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("KUBECTL").map(PathBuf::from) {
        return Ok(path);
    }
    which("kubectl").ok_or_else(|| {
        "kubectl is not in PATH (set KUBECTL=/path/to/kubectl); \
         see https://kubernetes.io/docs/tasks/tools/"
            .to_string()
    })
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}

/// `sh` in its own process group: reads the servers' process group id, then
/// waits for EOF (this process is gone), kills the group and cleans up.
fn start_watchdog(dir: &Path) -> Result<ChildStdin, String> {
    let script = r#"read -r group
cat >/dev/null
if [ -n "$group" ]; then kill -KILL -"$group" 2>/dev/null; sleep 0.5; fi
[ -n "$2" ] || rm -rf -- "$1""#;
    // DINGBIND_KUBE_ENV_KEEP=1 keeps the folder (logs, kubeconfig) for debugging.
    let keep = std::env::var_os("DINGBIND_KUBE_ENV_KEEP").is_some_and(|v| !v.is_empty());
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg("dingbind-kube-env-watchdog")
        .arg(dir)
        .arg(if keep { "keep" } else { "" })
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("starting the watchdog (sh): {e}"))?;
    child
        .stdin
        .take()
        .ok_or_else(|| "the watchdog has no stdin".to_string())
}

fn openssl(args: &[&str], cwd: &Path) -> Result<(), String> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(cwd)
        .output()
        .map_err(|e| format!("running openssl: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "openssl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A throw-away CA, an admin client certificate in `system:masters` signed by
/// it, and the ServiceAccount signing key (see tests/kube/README.md).
fn make_pki(pki: &Path) -> Result<(), String> {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-days",
        "1",
        "-subj",
        "/CN=dingbind-test-ca",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
    ]);
    openssl(&ca, pki)?;
    let mut csr = vec!["req"];
    csr.extend(ec);
    csr.extend([
        "-subj",
        "/O=system:masters/CN=test-admin",
        "-keyout",
        "admin.key",
        "-out",
        "admin.csr",
    ]);
    openssl(&csr, pki)?;
    // X.509 v3 extensions: without them openssl signs a v1 certificate, which
    // Go (kubectl) takes but rustls (kube::Client) refuses (UnsupportedCertVersion).
    std::fs::write(
        pki.join("admin.ext"),
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n",
    )
    .map_err(|e| format!("writing admin.ext: {e}"))?;
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            "admin.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "admin.ext",
            "-out",
            "admin.crt",
        ],
        pki,
    )?;
    openssl(&["genrsa", "-out", "sa.key", "2048"], pki)
}

fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("finding a free loopback port: {e}"))
}

fn log_file(dir: &Path, name: &str) -> Result<fs::File, String> {
    fs::File::create(dir.join(name)).map_err(|e| format!("creating {name}: {e}"))
}

fn check_alive(children: &mut [Child], dir: &Path) -> Result<(), String> {
    for child in children.iter_mut() {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(startup_failure(
                dir,
                &format!("process {} exited early with {status}", child.id()),
            ));
        }
    }
    Ok(())
}

fn startup_failure(dir: &Path, what: &str) -> String {
    let tail = |name: &str| {
        let mut text = String::new();
        let _ = fs::File::open(dir.join(name)).and_then(|mut f| f.read_to_string(&mut text));
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    };
    format!(
        "{what}\n--- etcd.log (tail) ---\n{}\n--- apiserver.log (tail) ---\n{}",
        tail("etcd.log"),
        tail("apiserver.log")
    )
}

fn etcd_version(assets: &Path) -> String {
    Command::new(assets.join("etcd"))
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .and_then(|l| l.strip_prefix("etcd Version: ").map(str::to_string))
        })
        .unwrap_or_else(|| "unknown".into())
}
