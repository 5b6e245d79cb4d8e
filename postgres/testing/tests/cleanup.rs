//! No cluster outlives the process that started it: this binary runs itself as
//! a child that starts a cluster and then panics, exits or is killed with
//! SIGKILL, and checks that the postmaster is gone and its directory removed.
//!
//! `harness = false`: `main` is either the parent (the checks) or, with
//! `child <mode>` as arguments, the child.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("child") {
        child(args.get(2).map(String::as_str).unwrap_or(""));
        return;
    }
    let mut failed = 0;
    for mode in ["shared-panic", "shared-exit", "own-sigkill"] {
        match std::panic::catch_unwind(|| parent(mode)) {
            Ok(()) => println!("test cleanup::{mode} ... ok"),
            Err(_) => {
                println!("test cleanup::{mode} ... FAILED");
                failed += 1;
            }
        }
    }
    println!("{} passed, {failed} failed", 3 - failed);
    if failed > 0 {
        std::process::exit(1);
    }
}

/// Starts a cluster, prints its directory and postmaster pid, then ends as
/// `mode` says.
fn child(mode: &str) {
    let own;
    let dir = if mode.starts_with("own") {
        own = tokenstore_pgtest::Server::start().expect("start");
        own.dir().expect("dir").to_path_buf()
    } else {
        let dir = tokenstore_pgtest::shared().dir();
        dir.expect("a throwaway cluster (unset TOKENSTORE_PG_URL)")
            .to_path_buf()
    };
    println!("{} {}", dir.display(), postmaster_pid(&dir));
    match mode {
        "shared-panic" => panic!("a test panics while the cluster runs"),
        "shared-exit" => std::process::exit(0),
        // Wait to be killed (bounded: the parent kills within seconds).
        _ => std::thread::sleep(Duration::from_secs(60)),
    }
}

fn parent(mode: &str) {
    let mut child = Command::new(std::env::current_exe().expect("exe"))
        .args(["child", mode])
        .env_remove(tokenstore_pgtest::URL_VAR)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the child");
    let mut line = String::new();
    let stdout = child.stdout.take().expect("stdout");
    BufReader::new(stdout).read_line(&mut line).expect("read");
    let (dir, pid) = line.trim().split_once(' ').expect("dir and pid");
    let (dir, pid): (PathBuf, u32) = (dir.into(), pid.parse().expect("pid"));
    assert!(
        alive(pid),
        "{mode}: the postmaster runs while the child does"
    );
    if mode == "own-sigkill" {
        child.kill().expect("SIGKILL the child");
    }
    let status = child.wait().expect("wait");
    assert!(
        !status.success() || mode == "shared-exit",
        "{mode}: {status}"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while (alive(pid) || dir.exists()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!alive(pid), "{mode}: postmaster {pid} outlived its process");
    assert!(!dir.exists(), "{mode}: {} left behind", dir.display());
}

fn alive(pid: u32) -> bool {
    // A zombie has exited; it lingers only until its parent reaps it.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

fn postmaster_pid(dir: &Path) -> u32 {
    let text = std::fs::read_to_string(dir.join("data/postmaster.pid")).expect("postmaster.pid");
    text.lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .expect("a pid")
}
