//! One connection against a raw upstream on real loopback sockets (the
//! upstream runs on threads of its own, so it can act while this test's
//! runtime is blocked and has not looked at the socket).

use std::time::{Duration, Instant};

use http_body_util::Full;

use super::super::tests::{get, idle, text, Raw, OK};
use super::*;

async fn connect(raw: &Raw) -> Conn {
    Conn::new(Io::Plain(TcpStream::connect(raw.addr).await.unwrap()))
}

fn empty_home() -> Home {
    Arc::new(Mutex::new(None))
}

fn ok<T>(r: Result<T, ExchangeError>) -> T {
    match r {
        Ok(t) => t,
        Err(ExchangeError::Failed(e)) => panic!("failed: {e}"),
        Err(ExchangeError::Unsent(_, e)) => panic!("unsent: {e}"),
    }
}

async fn data(body: &mut UpstreamBody) -> Option<Bytes> {
    let frame = body.frame().await?;
    Some(frame.unwrap().into_data().unwrap())
}

/// Send a GET, read the whole body; the connection, if it went home.
async fn round(mut conn: Conn, path: &str) -> (String, Option<Conn>) {
    let (head, whole) = ok(conn.exchange(get(path).await).await);
    let home = empty_home();
    let body = conn.into_body(&head, whole, &home, &idle(Duration::from_secs(5)));
    let body = text(body).await.unwrap();
    let back = home.lock().unwrap().take();
    (body, back)
}

#[tokio::test]
async fn an_answer_before_the_body_is_sent_is_read_and_the_connection_is_not_kept() {
    let up = Raw::start(|mut p| {
        p.head();
        // Answers at once, reads nothing of the body.
        p.write(b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 4\r\n\r\nbig!");
        p.hold();
    });
    let mut conn = connect(&up).await;
    // More than the socket buffers hold, so the upload cannot finish.
    let size = 32 << 20;
    let head = format!("POST /up HTTP/1.1\r\nhost: cms\r\ncontent-length: {size}\r\n\r\n");
    let body = Either::Right(Full::new(Bytes::from(vec![b'x'; size])));
    let req = Request::new(
        Method::POST,
        head.into_bytes(),
        body,
        RequestFraming::Length(size as u64),
    )
    .await;
    let started = Instant::now();
    let exchange = tokio::time::timeout(Duration::from_secs(2), conn.exchange(req));
    let (head, whole) = ok(exchange
        .await
        .expect("the answer came before the upload ended"));
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(head.status, 413);
    assert!(!whole, "the body was not all sent");
    assert!(head.keep_alive, "the upstream would keep it");
    let home = empty_home();
    let body = conn.into_body(&head, whole, &home, &idle(Duration::from_secs(5)));
    assert_eq!(text(body).await.unwrap(), "big!");
    assert!(
        home.lock().unwrap().is_none(),
        "half a request went out: the connection is not used again"
    );
}

#[tokio::test]
async fn a_connection_goes_home_only_after_a_response_framed_exactly_with_nothing_past_it() {
    let up = Raw::start(|mut p| {
        while let Some(head) = p.head() {
            let path = head.split(' ').nth(1).unwrap_or("").to_owned();
            match path.as_str() {
                "/length" => p.write(OK),
                "/chunked" => {
                    p.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n");
                    std::thread::sleep(Duration::from_millis(20));
                    p.write(b"0\r\n\r\n");
                }
                "/extra" => {
                    p.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokHTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nevil!")
                }
                "/close" => p.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"),
                "/until-close" => {
                    p.write(b"HTTP/1.1 200 OK\r\n\r\nok");
                    return;
                }
                "/cl-and-te" => p.write(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
                ),
                _ => return,
            }
        }
    });
    for (path, kept) in [
        ("/length", true),
        ("/chunked", true),
        ("/extra", false),
        ("/close", false),
        ("/until-close", false),
        ("/cl-and-te", false),
    ] {
        let (body, back) = round(connect(&up).await, path).await;
        assert_eq!(body, "ok", "{path}");
        assert_eq!(back.is_some(), kept, "{path}");
    }
}

#[tokio::test]
async fn a_slot_keeps_the_connection_it_holds() {
    let up = Raw::start(|mut p| p.hold());
    let home = empty_home();
    let first = connect(&up).await;
    let first_port = first.tcp().local_addr().unwrap().port();
    first.go_home(true, &home);
    connect(&up).await.go_home(true, &home);
    let kept = home.lock().unwrap().take().expect("kept");
    assert_eq!(kept.tcp().local_addr().unwrap().port(), first_port);
    connect(&up).await.go_home(false, &home);
    assert!(home.lock().unwrap().is_none(), "not to be reused");
}

#[tokio::test]
async fn an_idle_connection_is_fit_until_the_upstream_closes_it_or_says_something() {
    let up = Raw::start(|mut p| {
        let Some(head) = p.head() else { return };
        p.write(OK);
        std::thread::sleep(Duration::from_millis(30));
        match head.split(' ').nth(1).unwrap_or("") {
            "/fin" => {}
            "/reset" => p.reset(),
            "/unasked" => {
                p.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nevil!");
                p.hold();
            }
            _ => p.hold(),
        }
    });
    for (path, fit) in [
        ("/quiet", true),
        ("/fin", false),
        ("/reset", false),
        ("/unasked", false),
    ] {
        let (body, back) = round(connect(&up).await, path).await;
        assert_eq!(body, "ok");
        let mut conn = back.expect("framed exactly: it went home");
        // The runtime does not run while this thread sleeps: whatever
        // arrives meanwhile is news to the socket, not to the runtime's
        // record of what the socket said last.
        std::thread::sleep(Duration::from_millis(150));
        assert_eq!(conn.is_fit().await, fit, "{path}");
    }
    // Bytes read past a response already make it unfit.
    let mut conn = connect(&up).await;
    conn.buf.extend_from_slice(b"H");
    assert!(!conn.is_fit().await);
}

#[tokio::test]
async fn a_request_on_a_connection_the_upstream_reset_comes_back_unsent_and_goes_out_once() {
    let up = Raw::start(|mut p| {
        if p.head().is_some() {
            p.write(OK);
            std::thread::sleep(Duration::from_millis(30));
            p.reset();
        }
    });
    let (body, back) = round(connect(&up).await, "/one").await;
    assert_eq!(body, "ok");
    let mut conn = back.expect("went home");
    tokio::time::sleep(Duration::from_millis(150)).await;
    // As if the reset had come between the check at hand-over and the
    // write: the exchange itself says nothing went out.
    let unsent = match conn.exchange(get("/two").await).await {
        Err(ExchangeError::Unsent(req, _)) => req,
        Err(ExchangeError::Failed(e)) => panic!("failed, not unsent: {e}"),
        Ok(_) => panic!("a reset connection answered"),
    };
    let mut fresh = connect(&up).await;
    let (head, _) = ok(fresh.exchange(unsent).await);
    assert_eq!(head.status, 200);
    assert_eq!(up.heads(), ["GET /one HTTP/1.1", "GET /two HTTP/1.1"]);
    assert_eq!(up.accepted(), 2);
}

#[tokio::test]
async fn a_body_that_stays_silent_past_the_idle_timeout_fails_and_is_counted() {
    let up = Raw::start(|mut p| {
        let Some(head) = p.head() else { return };
        p.write(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\nabc");
        if head.starts_with("GET /slow-reader ") {
            for (wait, piece) in [(100, &b"def"[..]), (500, b"ghi")] {
                std::thread::sleep(Duration::from_millis(wait));
                p.write(piece);
            }
        }
        p.hold();
    });
    let limit = idle(Duration::from_millis(300));
    // The upstream is silent for 500 ms, 400 of them while the client
    // does not ask for more: only the time it is asked counts.
    let mut conn = connect(&up).await;
    let (head, whole) = ok(conn.exchange(get("/slow-reader").await).await);
    let mut body = conn.into_body(&head, whole, &empty_home(), &limit);
    assert_eq!(data(&mut body).await.unwrap(), "abc");
    assert_eq!(data(&mut body).await.unwrap(), "def");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(data(&mut body).await.unwrap(), "ghi");
    assert_eq!(data(&mut body).await, None);
    assert_eq!(limit.expired.get(), 0);
    // Three bytes, then nothing.
    let mut conn = connect(&up).await;
    let (head, whole) = ok(conn.exchange(get("/stall").await).await);
    let body = conn.into_body(&head, whole, &empty_home(), &limit);
    let started = Instant::now();
    let err = text(body).await.unwrap_err();
    assert!(matches!(err, BodyError::Idle(_)), "{err}");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(2),
        "{waited:?}"
    );
    assert_eq!(limit.expired.get(), 1);
}
