//! Network: no route anywhere by default — not to the host's loopback services, not to a test
//! host in a network namespace this test creates — and egress only through the proxy, only to
//! allow-listed names whose addresses are public (or explicitly allowed).

use std::process::Command;
use std::time::Duration;

use pretty_assertions::assert_eq;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

use super::{Kind, Rig, assert_healthy, sh};

/// A network namespace with a veth pair (10.213.x.1 on the host, 10.213.x.2 inside) and a
/// listener in it; removed on drop.
struct TestHost {
    name: String,
    address: String,
    listener: std::process::Child,
}

impl TestHost {
    fn start() -> Self {
        let n: u8 = rand_byte();
        let name = format!("hgr-test-{n}-{}", std::process::id());
        let (host_if, peer_if) = (
            format!("hgr{n}h{}", std::process::id() % 1000),
            format!("hgr{n}p{}", std::process::id() % 1000),
        );
        let address = format!("10.213.{n}.2");
        let ip = |args: &[&str]| {
            let status = Command::new("ip").args(args).status().unwrap();
            assert!(status.success(), "ip {args:?}");
        };
        ip(&["netns", "add", &name]);
        ip(&["link", "add", &host_if, "type", "veth", "peer", "name", &peer_if]);
        ip(&["link", "set", &peer_if, "netns", &name]);
        ip(&["addr", "add", &format!("10.213.{n}.1/30"), "dev", &host_if]);
        ip(&["link", "set", &host_if, "up"]);
        ip(&[
            "netns",
            "exec",
            &name,
            "ip",
            "addr",
            "add",
            &format!("{address}/30"),
            "dev",
            &peer_if,
        ]);
        ip(&["netns", "exec", &name, "ip", "link", "set", &peer_if, "up"]);
        ip(&["netns", "exec", &name, "ip", "link", "set", "lo", "up"]);
        let listener = Command::new("ip")
            .args(["netns", "exec", &name, "python3", "-c",
                "import socket,sys\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('0.0.0.0',8080))\ns.listen()\nwhile True:\n c,_=s.accept(); c.sendall(b'test-host\\n'); c.close()"])
            .spawn()
            .unwrap();
        Self {
            name,
            address,
            listener,
        }
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        let _ = self.listener.kill();
        let _ = self.listener.wait();
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

fn rand_byte() -> u8 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    (nanos % 200) as u8 + 20
}

sandboxed!(no_route_to_host_services_or_other_hosts, |rig| {
    let host_service = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = host_service.local_addr().unwrap().port();
    let test_host = TestHost::start();
    // Control: the test host answers from the host side, so a failure inside means no route.
    let mut reached = false;
    for _ in 0..50 {
        if let Ok(out) = Command::new("bash")
            .args([
                "-c",
                &format!("exec 3<>/dev/tcp/{}/8080 && cat <&3", test_host.address),
            ])
            .output()
            && String::from_utf8_lossy(&out.stdout).contains("test-host")
        {
            reached = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(reached, "the test host in its namespace does not answer");
    let sb = rig.sandbox("net").await;
    let script = format!(
        "cat /proc/net/route | wc -l; \
         timeout 5 bash -c 'echo x > /dev/tcp/127.0.0.1/{port}' 2>&1; \
         timeout 5 bash -c 'exec 3<>/dev/tcp/{}/8080 && cat <&3' 2>&1; echo end",
        test_host.address
    );
    let out = sh(&*sb, &script).await;
    let text = out.stdout_text();
    assert!(text.starts_with("1\n"), "the sandbox has routes: {text}");
    assert!(text.contains("Connection refused"), "{text}");
    assert!(text.contains("Network is unreachable"), "{text}");
    assert!(!text.contains("test-host"), "{text}");
    let accepted = tokio::time::timeout(Duration::from_millis(200), host_service.accept()).await;
    assert!(
        accepted.is_err(),
        "a host loopback service was reached from the sandbox"
    );
    assert_healthy(&*sb).await;
    sb.destroy().await.unwrap();
});

/// Egress through the proxy, for both backends (the rig needs the test server's port).
async fn egress(kind: Kind) {
    let server = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = server.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = server.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = tokio::io::AsyncReadExt::read(&mut conn, &mut buf).await;
                let _ = conn
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\nhello\n")
                    .await;
            });
        }
    });
    let rig = Rig::new(kind, &[port]);
    let sb = rig
        .sandbox_with_egress(
            "egress",
            &["allowed.test", "private.test", "metadata.test", "ula.test"],
        )
        .await;
    let fetch = |url: String| {
        format!(
            "python3 -c \"import urllib.request,urllib.error\ntry:\n print(urllib.request.urlopen('{url}', timeout=10).read().decode(), end='')\nexcept urllib.error.HTTPError as e:\n print('HTTP', e.code)\nexcept Exception as e:\n print('ERR', e)\""
        )
    };
    let cases = [
        (format!("http://allowed.test:{port}/simple/"), "hello\n"),
        (format!("http://unlisted.test:{port}/"), "HTTP 403\n"),
        (format!("http://private.test:{port}/"), "HTTP 403\n"),
        ("http://metadata.test/latest/meta-data/".to_owned(), "HTTP 403\n"),
        ("http://ula.test/".to_owned(), "HTTP 403\n"),
        ("http://169.254.169.254/latest/".to_owned(), "HTTP 403\n"),
    ];
    for (url, expected) in &cases {
        let out = sh(&*sb, &fetch(url.clone())).await;
        assert_eq!(out.stdout_text(), *expected, "{url}: {out:?}");
    }
    let decisions = rig.decisions.lock().unwrap().clone();
    let summary: Vec<(String, bool)> = decisions.iter().map(|d| (d.host.clone(), d.allowed)).collect();
    assert_eq!(
        summary,
        vec![
            ("allowed.test".to_owned(), true),
            ("unlisted.test".to_owned(), false),
            ("private.test".to_owned(), false),
            ("metadata.test".to_owned(), false),
            ("ula.test".to_owned(), false),
            ("169.254.169.254".to_owned(), false),
        ]
    );
    assert!(decisions[2].reason.contains("private"), "{:?}", decisions[2]);
    assert!(
        decisions[3].reason.contains("link-local") || decisions[3].reason.contains("metadata"),
        "{:?}",
        decisions[3]
    );
    // Without an egress policy there is no proxy at all.
    let closed = rig.sandbox("no-egress").await;
    let out = sh(&*closed, &fetch(format!("http://allowed.test:{port}/"))).await;
    assert!(out.stdout_text().starts_with("ERR"), "{out:?}");
    assert_healthy(&*sb).await;
    sb.destroy().await.unwrap();
    closed.destroy().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn egress_through_the_proxy_bwrap() {
    egress(Kind::Bwrap).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn egress_through_the_proxy_oci() {
    egress(Kind::Oci).await;
}
