//! Bridges `127.0.0.1:<port>` inside the sandbox's network namespace to the host's egress proxy
//! socket, so ordinary `HTTP_PROXY`/`HTTPS_PROXY` clients reach it. The sandbox has no other
//! route out; the proxy decides what is allowed.

use tokio::net::{TcpListener, UnixStream};

pub async fn start(socket: String, port: u16) -> std::io::Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    tokio::spawn(async move {
        while let Ok((mut inside, _)) = listener.accept().await {
            let socket = socket.clone();
            tokio::spawn(async move {
                if let Ok(mut host) = UnixStream::connect(&socket).await {
                    let _ = tokio::io::copy_bidirectional(&mut inside, &mut host).await;
                }
            });
        }
    });
    Ok(())
}
