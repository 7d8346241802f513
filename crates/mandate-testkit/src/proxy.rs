//! A TCP proxy for tests: a load balancer in front of several instances (new connections go to
//! the instance chosen last), and a switch that cuts the line (open connections are closed and new
//! ones refused) and restores it, to play a database or network outage.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

#[derive(Default)]
struct Line {
    targets: Vec<SocketAddr>,
    current: usize,
    cut: bool,
    connections: Vec<JoinHandle<()>>,
}

pub struct TcpProxy {
    addr: SocketAddr,
    line: Arc<Mutex<Line>>,
    accept: JoinHandle<()>,
}

impl TcpProxy {
    /// Listens on a free loopback port; forwards to `targets[0]` until told otherwise.
    pub async fn start(targets: Vec<SocketAddr>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let line = Arc::new(Mutex::new(Line { targets, ..Line::default() }));
        let shared = line.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else { continue };
                let target = {
                    let l = shared.lock().unwrap();
                    if l.cut || l.targets.is_empty() { None } else { Some(l.targets[l.current % l.targets.len()]) }
                };
                let Some(target) = target else {
                    drop(inbound);
                    continue;
                };
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = outbound.set_nodelay(true);
                        let _ = inbound.set_nodelay(true);
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                let mut l = shared.lock().unwrap();
                l.connections.retain(|t| !t.is_finished());
                l.connections.push(task);
            }
        });
        Self { addr, line, accept }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn set_targets(&self, targets: Vec<SocketAddr>) {
        self.line.lock().unwrap().targets = targets;
    }

    /// New connections go to `targets[i]`.
    pub fn route_to(&self, i: usize) {
        self.line.lock().unwrap().current = i;
    }

    /// Closes every open connection and refuses new ones.
    pub fn cut(&self) {
        let mut l = self.line.lock().unwrap();
        l.cut = true;
        for t in l.connections.drain(..) {
            t.abort();
        }
    }

    pub fn restore(&self) {
        self.line.lock().unwrap().cut = false;
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.accept.abort();
        if let Ok(mut l) = self.line.lock() {
            for t in l.connections.drain(..) {
                t.abort();
            }
        }
    }
}
