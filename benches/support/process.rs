//! Processes the load benchmarks start: the release service (`serve`, optionally pinned to
//! core 0 with one HTTP worker) and a bare actix-web server (the bench binary re-executed,
//! pinned to core 0, answering fixed bodies). Shared by `postbacks.rs` and `request_path.rs`
//! (each includes it with `#[path]`).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The admin token the benchmarks start the service with.
pub const ADMIN: &str = "bench-admin-token-0123456789";

/// Set (to a port) when the bench binary is re-executed as the bare server.
const BARE_PORT: &str = "HISSABACK_BENCH_BARE";
/// The bare server's routes: a JSON array of `[path, body]`.
const BARE_ROUTES: &str = "HISSABACK_BENCH_BARE_ROUTES";

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Moves this process (every thread) to core 1: the load generator's core.
pub fn pin_self_to_core1() {
    let _ = Command::new("taskset").args(["-a", "-p", "-c", "1", &std::process::id().to_string()]).stdout(Stdio::null()).status();
}

/// Kills the child when dropped.
pub struct Running(pub Child);

impl Running {
    /// Stops the child with SIGTERM (a graceful shutdown) and waits up to `grace` for it to
    /// exit; true when it exited successfully in time (it is killed otherwise).
    pub fn terminate(mut self, grace: Duration) -> bool {
        let pid = self.0.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().is_ok_and(|s| s.success());
        let deadline = Instant::now() + grace;
        while sent && Instant::now() < deadline {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `program` (with `args`), on core 0 when `pinned`.
fn on_core0(program: &std::path::Path, pinned: bool) -> Command {
    if pinned {
        let mut c = Command::new("taskset");
        c.args(["-c", "0"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

/// Starts the service (`serve`) on a fresh data dir with these environment overrides, on
/// core 0 with one HTTP worker when `pinned`, and waits for its port.
pub fn service(port: u16, data: &std::path::Path, env: &[(&str, String)], pinned: bool) -> Running {
    let mut cmd = on_core0(std::path::Path::new(env!("CARGO_BIN_EXE_hissaback")), pinned);
    cmd.arg("serve")
        .env("HISSABACK_LISTEN", format!("127.0.0.1:{port}"))
        .env("HISSABACK_DATA_DIR", data)
        .env("HISSABACK_ADMIN_TOKEN", ADMIN)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    if pinned {
        cmd.env("HISSABACK_SERVER__WORKERS", "1");
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = Running(cmd.spawn().expect("start the service"));
    wait_for_port(port);
    child
}

/// The bare ceiling: this bench binary re-executed on core 0 as a one-worker actix-web
/// server answering each `(path, body)` with that body (`content-type: application/json`).
/// Returns the child and its port.
pub fn spawn_bare(routes: &[(String, String)]) -> (Running, u16) {
    let port = free_port();
    let child = Running(
        on_core0(&std::env::current_exe().unwrap(), true)
            .env(BARE_PORT, port.to_string())
            .env(BARE_ROUTES, serde_json::to_string(routes).unwrap())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_port(port);
    (child, port)
}

/// Call first in `main`: when this process is the bare server of [`spawn_bare`], serves
/// until killed and never returns.
pub fn serve_bare_if_asked() {
    let Ok(port) = std::env::var(BARE_PORT) else { return };
    let port: u16 = port.parse().unwrap();
    let routes: Vec<(String, String)> = serde_json::from_str(&std::env::var(BARE_ROUTES).unwrap()).unwrap();
    actix_web::rt::System::new().block_on(async move {
        actix_web::HttpServer::new(move || {
            routes.iter().fold(actix_web::App::new(), |app, (path, body)| {
                let body = actix_web::web::Bytes::from(body.clone());
                app.route(
                    path,
                    actix_web::web::get().to(move || {
                        let body = body.clone();
                        async move { actix_web::HttpResponse::Ok().content_type("application/json").body(body) }
                    }),
                )
            })
        })
        .workers(1)
        .bind(("127.0.0.1", port))
        .unwrap()
        .run()
        .await
        .unwrap();
    });
    std::process::exit(0)
}
