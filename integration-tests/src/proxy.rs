//! A TCP proxy for one direction of peer traffic (node A dialling node B),
//! which a nemesis can cut and mend. Peer connections carry one direction
//! of raft traffic each, so cutting A->B alone is a one-way partition.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;

pub struct Link {
    pub listen: SocketAddr,
    shared: Arc<Shared>,
}

struct Shared {
    target: SocketAddr,
    /// Connections in flight; guarded with the open flag so a cut never
    /// misses a connection being set up.
    state: Mutex<LinkState>,
    stopping: AtomicBool,
}

struct LinkState {
    open: bool,
    streams: Vec<TcpStream>,
}

impl Link {
    pub fn start(target: SocketAddr) -> Result<Link> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let listen = listener.local_addr()?;
        let shared = Arc::new(Shared {
            target,
            state: Mutex::new(LinkState {
                open: true,
                streams: Vec::new(),
            }),
            stopping: AtomicBool::new(false),
        });
        let accepting = shared.clone();
        std::thread::Builder::new()
            .name(format!("proxy-{listen}"))
            .spawn(move || accept_loop(listener, accepting))?;
        Ok(Link { listen, shared })
    }

    /// Cuts the link: connections in flight are closed, new ones are
    /// closed as soon as they arrive.
    pub fn cut(&self) {
        let mut state = self.shared.state.lock().expect("proxy state");
        state.open = false;
        for stream in state.streams.drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    pub fn mend(&self) {
        self.shared.state.lock().expect("proxy state").open = true;
    }

    pub fn is_open(&self) -> bool {
        self.shared.state.lock().expect("proxy state").open
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.cut();
        // Wake the accept loop so it sees the stop flag.
        let _ = TcpStream::connect_timeout(&self.listen, Duration::from_millis(200));
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for inbound in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let Ok(inbound) = inbound else { continue };
        if !shared.state.lock().expect("proxy state").open {
            continue;
        }
        let Ok(outbound) = TcpStream::connect_timeout(&shared.target, Duration::from_secs(1))
        else {
            continue;
        };
        let _ = inbound.set_nodelay(true);
        let _ = outbound.set_nodelay(true);
        let (Ok(inbound_copy), Ok(outbound_copy)) = (inbound.try_clone(), outbound.try_clone())
        else {
            continue;
        };
        {
            let mut state = shared.state.lock().expect("proxy state");
            if !state.open {
                continue;
            }
            for stream in [&inbound, &outbound] {
                if let Ok(copy) = stream.try_clone() {
                    state.streams.push(copy);
                }
            }
            // Forget streams that already ended, so the list stays small.
            state.streams.retain(|stream| stream.peer_addr().is_ok());
        }
        std::thread::spawn(move || pump(inbound, outbound_copy));
        std::thread::spawn(move || pump(outbound, inbound_copy));
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream) {
    let mut buffer = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(read) => {
                if to.write_all(&buffer[..read]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
