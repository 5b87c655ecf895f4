//! `docker-compose.yml`, checked without a container engine (none runs where recall is tested):
//! Debian's `docker-compose` (installed by `scripts/deps.sh`) must accept the file, and every
//! recall service must run commands this binary accepts (a real subcommand, its flags, and only
//! `RECALL_*` variables that subcommand reads), so the services stay the commands the
//! integration tests run. Prometheus must scrape every node and sidecar where they serve, and
//! nginx must ask the sidecars.
//!
//! The resolved file comes from `docker-compose config` itself (anchors and merges applied):
//! as JSON where it can say so (`--format json`), else its YAML read by the Python interpreter
//! that runs docker-compose, which parses YAML with the same library.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const RECALL: &str = env!("CARGO_BIN_EXE_recall");

/// Where `name` is on the `PATH`.
fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

fn docker_compose_binary() -> PathBuf {
    which("docker-compose").unwrap_or_else(|| {
        panic!("docker-compose is not installed: run `bash scripts/deps.sh` (bash scripts/test.sh does)")
    })
}

/// `docker-compose -f docker-compose.yml ARGS` in the repository root.
fn docker_compose(args: &[&str]) -> Output {
    Command::new(docker_compose_binary())
        .current_dir(ROOT)
        .args(["-f", "docker-compose.yml"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("docker-compose runs")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn docker_compose_config_accepts_the_file() {
    let out = docker_compose(&["config", "-q"]);
    assert!(
        out.status.success(),
        "docker-compose config -q rejects docker-compose.yml ({}):\n{}",
        out.status,
        text(&out)
    );
}

/// The file as docker-compose resolves it, as JSON.
fn resolved() -> Value {
    let json = docker_compose(&["config", "--format", "json"]);
    if json.status.success()
        && let Ok(config) = serde_json::from_slice(&json.stdout)
    {
        return config;
    }
    // docker-compose 1.x (Debian 12's) prints YAML only (and answers an unknown option with
    // its usage and status 0).
    let yaml = docker_compose(&["config"]);
    assert!(
        yaml.status.success(),
        "docker-compose config: {}",
        text(&yaml)
    );
    let script = std::fs::read_to_string(docker_compose_binary()).unwrap_or_default();
    let shebang = script.lines().next().and_then(|l| l.strip_prefix("#!"));
    let Some(interpreter) = shebang.filter(|s| s.contains("python")) else {
        panic!(
            "docker-compose prints no JSON (`config --format json`: {}) and is not a Python \
             script whose YAML library could read its output",
            text(&json)
        );
    };
    let mut words = interpreter.split_whitespace();
    let mut python = Command::new(words.next().expect("an interpreter"))
        .args(words)
        .args([
            "-c",
            "import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("docker-compose's Python runs");
    python
        .stdin
        .take()
        .expect("a pipe")
        .write_all(&yaml.stdout)
        .expect("writes the YAML");
    let out = python.wait_with_output().expect("Python finishes");
    assert!(out.status.success(), "YAML to JSON: {}", text(&out));
    serde_json::from_slice(&out.stdout).expect("Python prints JSON")
}

/// The image's entrypoint, from the Dockerfile's `ENTRYPOINT [...]`.
fn image_entrypoint() -> Vec<String> {
    let dockerfile = std::fs::read_to_string(Path::new(ROOT).join("Dockerfile")).unwrap();
    let line = dockerfile
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("ENTRYPOINT "))
        .expect("the Dockerfile names an ENTRYPOINT");
    serde_json::from_str(line).expect("ENTRYPOINT in exec form (a JSON array)")
}

/// A list of strings, or one string, as docker-compose may print `command` and `entrypoint`.
fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::Null => vec![],
        Value::String(s) => s.split_whitespace().map(String::from).collect(),
        Value::Array(items) => items
            .iter()
            .map(|i| i.as_str().expect("a string").to_string())
            .collect(),
        other => panic!("not a command: {other}"),
    }
}

/// The arguments of each `recall` command in `argv`: the command itself when it is `recall`,
/// or each simple command of an `sh -c` script that starts with `recall` (the scripts here use
/// no quoting or expansions, which this reading does not understand and refuses).
fn recall_invocations(argv: &[String]) -> Vec<Vec<String>> {
    match argv {
        [first, rest @ ..] if first == "recall" => vec![rest.to_vec()],
        [sh, c, script, ..] if (sh == "sh" || sh == "/bin/sh") && c == "-c" => script
            .split([';', '\n'])
            .flat_map(|s| s.split("&&"))
            .flat_map(|s| s.split("||"))
            .filter_map(|cmd| {
                let mut words: Vec<&str> = cmd.split_whitespace().collect();
                if words.first() == Some(&"exec") {
                    words.remove(0);
                }
                (words.first() == Some(&"recall")).then(|| {
                    assert!(
                        !cmd.contains(['\'', '"', '$', '`', '\\']),
                        "a recall command with quoting or expansions: {cmd:?}"
                    );
                    words[1..].iter().map(|w| w.to_string()).collect()
                })
            })
            .collect(),
        _ => vec![],
    }
}

/// `recall PATH --help`, asked once per path.
struct Help(HashMap<Vec<String>, String>);

impl Help {
    fn of(&mut self, path: &[String]) -> &str {
        self.0.entry(path.to_vec()).or_insert_with(|| {
            let out = Command::new(RECALL)
                .args(path)
                .arg("--help")
                .output()
                .expect("recall runs");
            assert!(
                out.status.success(),
                "recall {path:?} --help: {}",
                text(&out)
            );
            String::from_utf8(out.stdout).expect("help is UTF-8")
        })
    }

    /// Whether `recall PATH --help` lists `word` as a subcommand.
    fn has_subcommand(&mut self, path: &[String], word: &str) -> bool {
        let help = self.of(path);
        let commands = help.lines().skip_while(|l| l.trim() != "Commands:").skip(1);
        commands
            .take_while(|l| l.starts_with("  "))
            .any(|l| l.split_whitespace().next() == Some(word))
    }
}

/// Whether `help` names `token` as a whole word (`--id` is not found in `--id-file`).
fn names(help: &str, token: &str) -> bool {
    help.match_indices(token).any(|(at, _)| {
        let after = help[at + token.len()..].chars().next();
        !after.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    })
}

/// A recall service of the resolved file: its name, the arguments of each recall command it
/// runs, and its environment.
struct RecallService {
    name: String,
    invocations: Vec<Vec<String>>,
    env: BTreeMap<String, String>,
}

/// Every service built from this repository (the recall image).
fn recall_services(config: &Value) -> Vec<RecallService> {
    let entrypoint = image_entrypoint();
    let services = config["services"].as_object().expect("services");
    let mut out = Vec::new();
    for (name, svc) in services {
        if svc.get("build").is_none() {
            continue;
        }
        let mut argv = match svc.get("entrypoint") {
            Some(e) => strings(e),
            None => entrypoint.clone(),
        };
        argv.extend(strings(&svc["command"]));
        let invocations = recall_invocations(&argv);
        assert!(
            !invocations.is_empty(),
            "{name} is built from this repository but runs no recall command: {argv:?}"
        );
        let env = match &svc["environment"] {
            Value::Null => BTreeMap::new(),
            Value::Object(m) => m
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect(),
            other => panic!("{name}: environment as docker-compose resolves it: {other}"),
        };
        out.push(RecallService {
            name: name.clone(),
            invocations,
            env,
        });
    }
    out
}

/// The subcommand path of `args` (`["pki", "init"]`), walked through the help.
fn subcommand(help: &mut Help, args: &[String]) -> Vec<String> {
    let mut path = Vec::new();
    for word in args.iter().take_while(|a| !a.starts_with('-')) {
        if !help.has_subcommand(&path, word) {
            break;
        }
        path.push(word.clone());
    }
    path
}

#[test]
fn every_recall_service_runs_subcommands_flags_and_variables_the_binary_accepts() {
    let config = resolved();
    let mut help = Help(HashMap::new());
    let mut ran: BTreeMap<String, usize> = BTreeMap::new();
    let mut problems = Vec::new();
    for svc in recall_services(&config) {
        for args in &svc.invocations {
            let path = subcommand(&mut help, args);
            if path.is_empty() {
                problems.push(format!(
                    "{}: `recall {}` names no subcommand",
                    svc.name,
                    args.join(" ")
                ));
                continue;
            }
            *ran.entry(path.join(" ")).or_default() += 1;
            let text = help.of(&path).to_string();
            for flag in args.iter().filter(|a| a.starts_with('-')) {
                let flag = flag.split('=').next().expect("a flag");
                if !names(&text, flag) {
                    problems.push(format!(
                        "{}: `recall {}` has no flag {flag}",
                        svc.name,
                        path.join(" ")
                    ));
                }
            }
            for var in svc.env.keys().filter(|k| k.starts_with("RECALL_")) {
                if !text.contains(&format!("[env: {var}=")) {
                    problems.push(format!(
                        "{}: `recall {}` reads no {var}",
                        svc.name,
                        path.join(" ")
                    ));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "docker-compose.yml:\n{}",
        problems.join("\n")
    );
    let want: BTreeMap<String, usize> = [
        ("mirror", 1),
        ("pki init", 1),
        ("server", 3),
        ("sidecar", 2),
        ("token init", 1),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(ran, want, "the recall commands docker-compose.yml runs");
}

/// The value of a setting given as `--flag VALUE`, `--flag=VALUE` or the variable `var`.
fn setting(svc: &RecallService, flag: &str, var: &str) -> Option<String> {
    for args in &svc.invocations {
        for (i, a) in args.iter().enumerate() {
            if a == flag {
                return args.get(i + 1).cloned();
            }
            if let Some(v) = a.strip_prefix(&format!("{flag}=")) {
                return Some(v.to_string());
            }
        }
    }
    svc.env.get(var).cloned()
}

/// The port of `HOST:PORT`.
fn port(addr: &str) -> &str {
    addr.rsplit_once(':').map(|(_, p)| p).unwrap_or(addr)
}

#[test]
fn prometheus_scrapes_every_node_and_sidecar_and_nginx_asks_the_sidecars() {
    let config = resolved();
    let read = |f: &str| std::fs::read_to_string(Path::new(ROOT).join(f)).unwrap();
    let prometheus = read("deploy/prometheus.yml");
    let nginx = read("deploy/nginx.conf");
    let (mut nodes, mut sidecars) = (0, 0);
    for svc in recall_services(&config) {
        let first = svc.invocations[0].first().map(String::as_str);
        let (http, is_sidecar) = match first {
            Some("server") => (setting(&svc, "--http-listen", "RECALL_HTTP_LISTEN"), false),
            Some("sidecar") => (setting(&svc, "--http", "RECALL_SIDECAR_HTTP"), true),
            _ => continue,
        };
        let http = http.unwrap_or_else(|| panic!("{} serves no HTTP for /metrics", svc.name));
        let target = format!("{}:{}", svc.name, port(&http));
        assert!(
            prometheus.contains(&format!("\"{target}\"")),
            "deploy/prometheus.yml does not scrape {target}"
        );
        if is_sidecar {
            sidecars += 1;
            assert!(
                nginx.contains(&format!("server {target};")),
                "deploy/nginx.conf does not ask {target}"
            );
        } else {
            nodes += 1;
        }
    }
    assert_eq!((nodes, sidecars), (3, 2));
    assert!(nginx.contains("auth_request /_recall;"), "{nginx}");
    assert!(nginx.contains("/v1/auth;"), "{nginx}");
}
