"""Self-check of the shared collector fixtures in conftest.py (they must record exactly what arrives)."""
import socket, ssl
def test_all(make_collector, tcp_collector, udp_collector, unix_collector, free_port, tls_cert):
    c = tcp_collector
    s = socket.create_connection(c.address); s.sendall(b"a\nb\nc"); s.close()
    assert c.wait_for(n_lines=2, timeout=3)
    assert c.lines() == [b"a", b"b"] and c.data() == b"a\nb\nc"
    port = c.port; c.close(); c.start(); assert c.port == port
    s = socket.create_connection(c.address); s.sendall(b"d\n"); s.close()
    assert c.wait_for(n_lines=3, timeout=3) and c.connections == 2
    u = udp_collector
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.sendto(b"x\n", u.address); s.sendto(b"y", u.address)
    assert u.wait_for(n_records=2, timeout=3) and u.records() == [b"x\n", b"y"]
    x = unix_collector
    s = socket.socket(socket.AF_UNIX); s.connect(x.path); s.sendall(b"q\n"); s.close()
    assert x.wait_for(n_lines=1, timeout=3)
    cert, key, ca = tls_cert
    t = make_collector("tls", cert=cert, key=key)
    ctx = ssl.create_default_context(cafile=ca)
    with ctx.wrap_socket(socket.create_connection(t.address), server_hostname="localhost") as s:
        s.sendall(b"secure\n")
    assert t.wait_for(n_lines=1, timeout=3) and t.lines() == [b"secure"]
    assert not t.wait_for(n_lines=5, timeout=0.2)
    assert free_port("udp") > 0
