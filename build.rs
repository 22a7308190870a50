//! Stamps the git revision into `ords-guard --version`: from ORDS_GUARD_REVISION when set
//! (a container build has no .git), else from git, else "unknown".
use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=ORDS_GUARD_REVISION");
    for p in [".git/HEAD", ".git/refs/heads", ".git/packed-refs"] {
        if Path::new(p).exists() {
            println!("cargo:rerun-if-changed={p}");
        }
    }
    let rev = std::env::var("ORDS_GUARD_REVISION")
        .ok()
        .filter(|r| !r.is_empty())
        .or_else(|| {
            let out = Command::new("git")
                .args(["rev-parse", "--short=12", "HEAD"])
                .output()
                .ok()?;
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        });
    println!(
        "cargo:rustc-env=ORDS_GUARD_REVISION={}",
        rev.unwrap_or_else(|| "unknown".into())
    );
}
