//! The daemon's sockets: the control socket (one JSON request and one response per
//! connection) and the Prometheus endpoint.
//!
//! No client can stall the daemon: each connection is read and answered on a thread
//! of its own, the whole request within [`REQUEST_DEADLINE`] (a client trickling a byte
//! now and then gets no more time), and only a complete, decoded request reaches the
//! daemon's thread, which owns the switch and handles one at a time. At most
//! [`MAX_CLIENTS`] connections are served at once; the next one is answered at once
//! with an error and closed. The daemon's thread never waits for a client, so a signal
//! is honoured within one pass of its loop.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use umacvlan::ctl::{self, Request, Response};

use crate::daemon::Daemon;

/// How long a client has to send its whole request.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(2);
/// How long a client has to take its response.
const WRITE_DEADLINE: Duration = Duration::from_secs(2);
/// Connections served at once, control and metrics together.
pub const MAX_CLIENTS: usize = 64;

/// What a connection asks of the daemon's thread.
enum Job {
    Control(Box<Request>),
    Metrics,
    Docker(crate::docker::Call),
    CaptureStart(Box<ctl::Capture>),
    CaptureStop {
        parent: String,
        id: u64,
        kernel_lost: u64,
    },
}

/// A job and where its answer goes.
struct Call {
    job: Job,
    reply: Sender<Answer>,
}

enum Answer {
    Control(Response),
    Metrics(Result<String, String>),
    Docker(Result<Value, String>),
    CaptureStarted(Result<(Value, Box<crate::daemon::CaptureRun>), String>),
    CaptureStopped(u64),
}

/// Both listeners, the connection threads' way to the daemon, and the count of live
/// connections.
pub struct Server {
    control: UnixListener,
    metrics: Option<TcpListener>,
    calls: Receiver<Call>,
    gate: Gate,
}

/// What a connection of any listener needs: a slot among [`MAX_CLIENTS`], and the way
/// to the daemon's thread.
#[derive(Clone)]
pub struct Gate {
    tx: Sender<Call>,
    clients: Arc<AtomicUsize>,
}

impl Gate {
    /// A new connection's slot, or `None` when [`MAX_CLIENTS`] are being served.
    pub fn admit(&self) -> Option<Client> {
        let n = self.clients.fetch_add(1, Ordering::AcqRel);
        if n >= MAX_CLIENTS {
            self.clients.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Client(self.clients.clone()))
    }

    /// Has the daemon's thread answer a Docker driver call (`None` if it stops first).
    pub fn docker(&self, call: crate::docker::Call) -> Option<Result<Value, String>> {
        match ask(&self.tx, Job::Docker(call))? {
            Answer::Docker(r) => Some(r),
            _ => None,
        }
    }
}

/// Counts a live connection; uncounts it when the connection ends.
pub struct Client(Arc<AtomicUsize>);

impl Drop for Client {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Server {
    /// Serves `control` and, if given, `metrics` (both non-blocking listeners).
    pub fn new(control: UnixListener, metrics: Option<TcpListener>) -> Server {
        let (tx, calls) = mpsc::channel();
        Server {
            control,
            metrics,
            calls,
            gate: Gate {
                tx,
                clients: Arc::new(AtomicUsize::new(0)),
            },
        }
    }

    /// The way for another listener's connections (the Docker driver's) to the
    /// daemon's thread, within the same [`MAX_CLIENTS`].
    pub fn gate(&self) -> Gate {
        self.gate.clone()
    }

    /// Accepts what is waiting, handles the requests that are complete, and waits at
    /// most `idle` for one when there was nothing to do.
    pub fn turn(&mut self, daemon: &mut Daemon, idle: Duration) {
        let mut busy = false;
        loop {
            match self.control.accept() {
                Ok((s, _)) => {
                    busy = true;
                    self.start_control(s);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    tracing::warn!("control socket: {e}");
                    break;
                }
            }
        }
        if let Some(m) = &self.metrics {
            while let Ok((s, _)) = m.accept() {
                busy = true;
                self.start_metrics(s);
            }
        }
        while let Ok(call) = self.calls.try_recv() {
            busy = true;
            answer(daemon, call);
        }
        if !busy {
            if let Ok(call) = self.calls.recv_timeout(idle) {
                answer(daemon, call);
            }
        }
    }

    /// Serves one connection on a thread of its own named `name`, if a slot is free
    /// (`refuse` answers it at once otherwise): `work` gets the stream and the way
    /// to the daemon's thread.
    fn start<S: Send + 'static>(
        &self,
        mut s: S,
        name: &str,
        refuse: impl FnOnce(&mut S),
        work: impl FnOnce(&mut S, &Sender<Call>) + Send + 'static,
    ) {
        let Some(client) = self.gate.admit() else {
            tracing::warn!("{name}: {MAX_CLIENTS} clients already, one refused");
            refuse(&mut s);
            return;
        };
        let tx = self.gate.tx.clone();
        let spawned = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let _client = client;
                work(&mut s, &tx);
            });
        if let Err(e) = spawned {
            tracing::warn!("{name}: cannot start a connection thread: {e}");
        }
    }

    fn start_control(&self, s: UnixStream) {
        let _ = s.set_nonblocking(false);
        let _ = s.set_write_timeout(Some(WRITE_DEADLINE));
        let busy = |s: &mut UnixStream| {
            let m = format!("the daemon is serving {MAX_CLIENTS} clients already; try again");
            write_line(s, &Response::err(m));
        };
        self.start(s, "umacvlan-ctl", busy, |s, tx| {
            let resp =
                match ctl::read_line_within(s, REQUEST_DEADLINE).and_then(|l| ctl::decode(&l)) {
                    Ok(Request::Capture(c)) => return stream_capture(s, tx, c),
                    Ok(req) => match ask(tx, Job::Control(Box::new(req))) {
                        Some(Answer::Control(r)) => r,
                        _ => Response::err("the daemon is shutting down"),
                    },
                    Err(e) => {
                        tracing::warn!("bad control message: {e}");
                        Response::err(e)
                    }
                };
            write_line(s, &resp);
        });
    }

    fn start_metrics(&self, s: TcpStream) {
        let _ = s.set_nonblocking(false);
        let _ = s.set_write_timeout(Some(WRITE_DEADLINE));
        let busy =
            |s: &mut TcpStream| write_http(s, "503 Service Unavailable", "too many clients\n");
        self.start(s, "umacvlan-metrics", busy, |s, tx| {
            let (status, body) = match read_request_line(s).as_deref() {
                Some(l) if l.starts_with("GET /metrics ") || l.starts_with("GET / ") => {
                    match ask(tx, Job::Metrics) {
                        Some(Answer::Metrics(Ok(b))) => ("200 OK", b),
                        Some(Answer::Metrics(Err(e))) => {
                            ("500 Internal Server Error", format!("{e}\n"))
                        }
                        _ => ("503 Service Unavailable", "shutting down\n".into()),
                    }
                }
                Some(_) => ("404 Not Found", "try GET /metrics\n".into()),
                None => (
                    "408 Request Timeout",
                    format!("request timed out after {} s\n", REQUEST_DEADLINE.as_secs()),
                ),
            };
            write_http(s, status, &body);
        });
    }
}

/// Sends `job` to the daemon's thread and waits for its answer (`None` if the daemon
/// stops first).
fn ask(tx: &Sender<Call>, job: Job) -> Option<Answer> {
    let (reply, answer) = mpsc::channel();
    tx.send(Call { job, reply }).ok()?;
    answer.recv().ok()
}

/// Handles one call on the daemon's thread.
fn answer(daemon: &mut Daemon, call: Call) {
    let a = match call.job {
        Job::Control(req) => {
            let what = format!("{req:?}");
            Answer::Control(match daemon.handle(*req) {
                Ok(v) => {
                    tracing::info!(request = %what, "done");
                    Response::ok(v)
                }
                Err(e) => {
                    tracing::warn!(request = %what, "refused: {e}");
                    Response::err(e)
                }
            })
        }
        Job::Metrics => Answer::Metrics(daemon.metrics().map_err(|e| e.to_string())),
        Job::CaptureStart(c) => {
            let what = format!("{c:?}");
            Answer::CaptureStarted(match daemon.capture_start(&c) {
                Ok((v, run)) => {
                    tracing::info!(request = %what, "capture started");
                    Ok((v, Box::new(run)))
                }
                Err(e) => {
                    tracing::warn!(request = %what, "refused: {e}");
                    Err(e.to_string())
                }
            })
        }
        Job::CaptureStop {
            parent,
            id,
            kernel_lost,
        } => Answer::CaptureStopped(daemon.capture_stop(&parent, id, kernel_lost)),
        Job::Docker(c) => {
            let r = crate::docker::answer(daemon, &c);
            match &r {
                Ok(_) => tracing::info!(call = %c.method, body = %c.body, "docker: done"),
                Err(e) => tracing::warn!(call = %c.method, body = %c.body, "docker: refused: {e}"),
            }
            Answer::Docker(r)
        }
    };
    let _ = call.reply.send(a);
}

/// Serves a capture: the response line, then each frame as a
/// [`ctl::CAPTURE_FRAME`] message, until its count, its time, its port's removal, or
/// the client hanging up; then [`ctl::CAPTURE_END`] with what it caught and lost.
/// The capture is stopped on the daemon's thread whatever happened.
fn stream_capture(s: &mut UnixStream, tx: &Sender<Call>, c: ctl::Capture) {
    use std::io::Read;
    let (info, run) = match ask(tx, Job::CaptureStart(Box::new(c))) {
        Some(Answer::CaptureStarted(Ok(r))) => r,
        Some(Answer::CaptureStarted(Err(e))) => return write_line(s, &Response::err(e)),
        _ => return write_line(s, &Response::err("the daemon is shutting down")),
    };
    write_line(s, &Response::ok(info));
    // Reads only to see the client go: it sends nothing more.
    let _ = s.set_read_timeout(Some(Duration::from_millis(1)));
    let mut caught = 0u64;
    let mut why = "the client closed the capture";
    loop {
        if run.count.is_some_and(|n| caught >= n) {
            why = "count reached";
            break;
        }
        if run.until.is_some_and(|t| std::time::Instant::now() >= t) {
            why = "time is up";
            break;
        }
        match run.capture.frames.recv_timeout(Duration::from_millis(100)) {
            Ok(f) => {
                let mut m = Vec::with_capacity(20 + f.data.len());
                m.push(ctl::CAPTURE_FRAME);
                m.push(u8::from(f.dir == umacvlan::switch::Direction::Out));
                m.push(u8::from(f.fast));
                m.push(0);
                m.extend_from_slice(&f.ts_ns.to_le_bytes());
                m.extend_from_slice(&f.len.to_le_bytes());
                m.extend_from_slice(&(f.data.len() as u32).to_le_bytes());
                m.extend_from_slice(&f.data);
                if s.write_all(&m).is_err() {
                    break;
                }
                caught += 1;
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                let mut b = [0u8; 1];
                if matches!(s.read(&mut b), Ok(0)) {
                    break;
                }
            }
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                why = "the port is gone";
                break;
            }
        }
    }
    let kernel = match ask(
        tx,
        Job::CaptureStop {
            parent: run.parent.clone(),
            id: run.capture.id,
            kernel_lost: run.kernel_lost,
        },
    ) {
        Some(Answer::CaptureStopped(n)) => n,
        _ => 0,
    };
    let end = serde_json::json!({
        "captured": caught, "lost": run.capture.lost(), "lost_in_kernel": kernel, "ended": why,
    });
    let mut m = vec![ctl::CAPTURE_END];
    m.extend_from_slice(&serde_json::to_vec(&end).unwrap_or_default());
    m.push(b'\n');
    let _ = s.write_all(&m);
}

fn write_line(s: &mut UnixStream, r: &Response) {
    let mut line = serde_json::to_vec(r).unwrap_or_default();
    line.push(b'\n');
    let _ = s.write_all(&line);
}

/// The HTTP request line, read within [`REQUEST_DEADLINE`]; `None` if it did not come.
fn read_request_line(s: &mut TcpStream) -> Option<String> {
    use std::io::Read;
    let deadline = std::time::Instant::now() + REQUEST_DEADLINE;
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.contains(&b'\n') && got.len() < 8192 {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() || s.set_read_timeout(Some(left)).is_err() {
            return None;
        }
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    Some(String::from_utf8_lossy(&got).into_owned())
}

fn write_http(s: &mut TcpStream, status: &str, body: &str) {
    let _ = write!(
        s,
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}
