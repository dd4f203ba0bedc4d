//! Landlock on the kernels people have: with the ABI capped below this
//! kernel's (`SLUICE_LANDLOCK_ABI_MAX`; ABI 1 is Linux 5.13–5.18), sluice
//! (as root: a uid per child) starts, the child applies exactly that ABI,
//! the report says which features are missing and what holds instead, and
//! the filesystem stays confined; with no Landlock at all the default
//! policy refuses to start, naming the layer.

mod common;

use std::process::{Command, Stdio};

use serde_json::{Value, json};

/// `sluice serve` on an audit store of its own, the Landlock ABI capped.
fn serve(cap: &str, tag: &str) -> Command {
    let mut c = common::process::serve_command(&common::process::temp_audit(tag));
    c.env("SLUICE_LANDLOCK_ABI_MAX", cap).env_remove("SLUICE_DATABASE_URL").env_remove("SLUICE_POLICIES");
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_landlock_abi_is_used_for_what_it_has() {
    common::shared();
    let mut cmd = serve("1", "landlock");
    cmd.stderr(Stdio::null());
    let (mut child, key, base) = common::process::spawn_serve(cmd);
    let key = key.unwrap();
    let http = reqwest::Client::new();
    let ready: Value =
        http.get(format!("{base}/readyz")).bearer_auth(&key).send().await.unwrap().json().await.unwrap();
    let layers = ready["environments"]["default"]["layers"].as_array().unwrap();
    let ll = layers.iter().find(|l| l["name"] == "landlock").unwrap();
    let detail = ll["detail"].as_str().unwrap();
    assert_eq!(ll["active"], true, "{ll}");
    assert!(
        detail.starts_with("ABI 1 (the kernel has ") && detail.contains(": filesystem rules;"),
        "{detail}"
    );
    for missing in [
        "no refer (ABI 2)",
        "no truncate rules (ABI 3): each child runs as a uid of its own",
        "no TCP bind/connect rules (ABI 4)",
        "no signal and abstract socket scoping (ABI 6)",
    ] {
        assert!(detail.contains(missing), "{detail}");
    }
    // The filesystem is still confined, and the other layers hold what
    // ABI 1 lacks: no signal to the zygote, no socket.
    let run = |code: &str| {
        let body = json!({"sql_query": "SELECT 1 AS x", "classifier_code": code});
        let req = http.post(format!("{base}/execute-classifier")).bearer_auth(&key).json(&body);
        async move { req.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    for (code, want) in [
        ("def classify(df):\n    open('/etc/passwd').read()\n    return [0]\n", "security_violation"),
        (
            "import os, signal\ndef classify(df):\n    os.kill(os.getppid(), signal.SIGKILL)\n    return [0]\n",
            "security_violation",
        ),
        (
            "import socket\ndef classify(df):\n    socket.socket(socket.AF_UNIX).connect('\\0x')\n    return [0]\n",
            "security_violation",
        ),
        ("def classify(df):\n    open('out.txt', 'w').write('x')\n    return [0]\n", "success"),
    ] {
        let v = run(code).await;
        assert_eq!(v["status"], want, "{code}: {v}");
    }
    // The child applied ABI 1 itself (not the kernel's): ABI 1 refuses every
    // rename across directories (EXDEV), even inside the scratch dir.
    let rename = "import os\ndef classify(df):\n    os.makedirs('a'); os.makedirs('b'); open('a/f', 'w').write('x')\n    \
                  try:\n        os.rename('a/f', 'b/f')\n        return ['renamed']\n    except OSError as e:\n        \
                  return [f'errno {e.errno}']\n";
    let v = run(rename).await;
    assert_eq!(v["predictions"], json!(["errno 18"]), "{v}");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn without_landlock_the_default_policy_refuses_to_start() {
    common::shared();
    let out = serve("0", "nolandlock").stdin(Stdio::null()).output().unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started without landlock: {text}");
    assert!(text.contains("landlock") && text.contains("allow_degraded"), "{text}");
}
