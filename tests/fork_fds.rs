//! A fork child does not keep its parent's connection to the collector: the collector sees the
//! connection end when the parent closes it, while the child still runs (a half-open copy would
//! count against the collector's limits for as long as the child lives).

use std::io::Read;
use std::net::TcpListener;
use std::os::unix::net::UnixStream;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use rlog::{Config, Logger};

#[test]
fn a_fork_child_closes_the_parents_collector_connection() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let (eof_tx, eof_rx) = mpsc::channel();
    thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        let _ = eof_tx.send(got);
    });
    let lg =
        Logger::start(Config::parse(&format!("host = 127.0.0.1\nport = {port}")).unwrap()).unwrap();
    lg.log(b"before fork\n");
    assert_eq!(lg.flush(), 12);

    let (parent_end, child_end) = UnixStream::pair().unwrap();
    // SAFETY: the child only waits on its socket and then _exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        drop(parent_end);
        let mut child_end = child_end;
        let mut b = [0u8; 1];
        let _ = child_end.read(&mut b);
        // SAFETY: ends the child without running the harness's exit handlers.
        unsafe { libc::_exit(0) };
    }
    drop(child_end);
    // The parent lets go of its connection while the child lives on.
    assert!(lg.close(Duration::from_secs(2)));
    let got = eof_rx.recv_timeout(Duration::from_secs(10));
    // Let the child go, whatever happened.
    drop(parent_end.set_nonblocking(true));
    drop(parent_end);
    // SAFETY: reaps the child we forked.
    unsafe {
        let mut status = 0;
        libc::waitpid(pid, &mut status, 0);
    }
    let got = got.expect("the collector saw the connection end while the child still ran");
    assert_eq!(got, b"before fork\n");
}
