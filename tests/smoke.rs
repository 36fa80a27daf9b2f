mod common;
use common::Server;

#[test]
fn harness_starts_and_answers() {
    let s = Server::start(&[]);
    let r = s.get("/healthz");
    assert_eq!(r.status, 200);
    assert_eq!(r.body_text(), "ok\n");
}
