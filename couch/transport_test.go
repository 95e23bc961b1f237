package couch_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/medic/couchwatch/couch"
)

// upServer answers /_up like CouchDB without auth and counts new connections.
type upServer struct {
	*httptest.Server
	conns    atomic.Int64
	requests atomic.Int64
}

func newUpServer(t *testing.T, tlsOn bool, idleTimeout time.Duration, handler http.HandlerFunc) *upServer {
	t.Helper()
	s := &upServer{}
	if handler == nil {
		handler = func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"status":"ok","seeds":{}}` + "\n"))
		}
	}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		handler(w, r)
	}))
	s.Config.IdleTimeout = idleTimeout
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.conns.Add(1)
		}
	}
	if tlsOn {
		s.StartTLS()
	} else {
		s.Start()
	}
	t.Cleanup(s.Close)
	return s
}

func nodeFor(t *testing.T, rawURL string, opt couch.Options) *couch.Node {
	t.Helper()
	targets, err := couch.ParseServers(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	if opt.Timeout == 0 {
		opt.Timeout = 2 * time.Second
	}
	n, err := couch.NewNode(targets[0], opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close)
	return n
}

func TestWireKeepAlive(t *testing.T) {
	s := newUpServer(t, false, 0, nil)
	n := nodeFor(t, s.URL, couch.Options{})
	for range 20 {
		if up, err := n.Up(context.Background()); err != nil || up.Status != couch.StatusOK {
			t.Fatalf("Up = %+v, %v", up, err)
		}
	}
	if got := s.conns.Load(); got != 1 {
		t.Fatalf("%d connections for 20 probes, want 1", got)
	}
}

// A node that closes an idle keep-alive connection is not a failed probe: the call is
// sent again on a new connection.
func TestWireRetriesAConnectionClosedWhileIdle(t *testing.T) {
	s := newUpServer(t, false, 20*time.Millisecond, nil)
	n := nodeFor(t, s.URL, couch.Options{})
	for i := range 3 {
		if _, err := n.Up(context.Background()); err != nil {
			t.Fatalf("probe %d: %v", i, err)
		}
		time.Sleep(100 * time.Millisecond) // the server closes the connection meanwhile
	}
	if got := s.conns.Load(); got != 3 {
		t.Fatalf("%d connections, want 3 (one per probe after each idle close)", got)
	}
	if got := s.requests.Load(); got != 3 {
		t.Fatalf("%d requests, want 3", got)
	}
}

func TestWireConnectionClose(t *testing.T) {
	s := newUpServer(t, false, 0, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Connection", "close")
		_, _ = w.Write([]byte(`{"status":"ok"}`))
	})
	n := nodeFor(t, s.URL, couch.Options{})
	for range 3 {
		if _, err := n.Up(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if got := s.conns.Load(); got != 3 {
		t.Fatalf("%d connections, want 3: a reply with Connection: close is not reused", got)
	}
}

func TestWireChunkedReply(t *testing.T) {
	s := newUpServer(t, false, 0, func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"status":`))
		w.(http.Flusher).Flush() // no Content-Length: chunked
		_, _ = w.Write([]byte(`"nolb"}`))
	})
	n := nodeFor(t, s.URL, couch.Options{})
	for range 2 {
		up, err := n.Up(context.Background())
		if err != nil || up.Status != couch.StatusNoLB || up.HTTPStatus != 404 {
			t.Fatalf("Up = %+v, %v", up, err)
		}
	}
	if got := s.conns.Load(); got != 1 {
		t.Fatalf("%d connections, want 1", got)
	}
}

func TestWireTLS(t *testing.T) {
	s := newUpServer(t, true, 0, nil)
	roots := x509.NewCertPool()
	roots.AddCert(s.Certificate())

	untrusted := nodeFor(t, s.URL, couch.Options{})
	_, err := untrusted.Up(context.Background())
	checkErr(t, err, couch.ReasonTLS) // unknown authority

	n := nodeFor(t, s.URL, couch.Options{TLS: tlsConfig(roots)})
	for range 3 {
		if _, err := n.Up(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if n.Watch(context.Background(), 50*time.Millisecond) {
		t.Fatal("Watch = true on a quiet TLS connection")
	}
	if _, err := n.Up(context.Background()); err != nil {
		t.Fatalf("Up after a watch on TLS: %v", err)
	}
	done := make(chan bool, 1)
	go func() { done <- n.Watch(context.Background(), 10*time.Second) }()
	time.Sleep(50 * time.Millisecond)
	s.CloseClientConnections()
	select {
	case closed := <-done:
		if !closed {
			t.Fatal("Watch = false after the server closed the TLS connection")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Watch missed the close of a TLS connection")
	}
	if got := s.conns.Load(); got != 2 { // the untrusted attempt and n's one connection
		t.Fatalf("%d connections, want 2", got)
	}
}

func tlsConfig(roots *x509.CertPool) *tls.Config {
	return &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
}

// CouchDB re-issues the session cookie part-way through its life; the next calls must
// carry the new one, without a new login.
func TestWireKeepsAReissuedCookie(t *testing.T) {
	var logins atomic.Int64
	var seen []string
	var mu sync.Mutex
	s := newUpServer(t, false, 0, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/_session" {
			logins.Add(1)
			http.SetCookie(w, &http.Cookie{Name: "AuthSession", Value: "first", Path: "/"})
			_, _ = w.Write([]byte(`{"ok":true}`))
			return
		}
		ck, err := r.Cookie("AuthSession")
		if err != nil {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		mu.Lock()
		seen = append(seen, ck.Value)
		mu.Unlock()
		if ck.Value == "first" {
			http.SetCookie(w, &http.Cookie{Name: "AuthSession", Value: "second", Path: "/"})
		}
		_, _ = w.Write([]byte(`{"status":"ok"}`))
	})
	n := nodeFor(t, s.URL, couch.Options{User: "medic", Password: "pw"})
	for range 3 {
		if _, err := n.Up(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if got := strings.Join(seen, ","); got != "first,second,second" || logins.Load() != 1 {
		t.Fatalf("cookies sent %s with %d logins, want first,second,second with 1", got, logins.Load())
	}
}

// UpFresh is a second opinion on a connection of its own: a new one every call, closed
// after it, leaving the watched probe connection alone.
func TestUpFreshUsesANewConnection(t *testing.T) {
	s := newUpServer(t, false, 0, nil)
	n := nodeFor(t, s.URL, couch.Options{})
	if _, err := n.Up(context.Background()); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if up, err := n.UpFresh(context.Background()); err != nil || up.Status != couch.StatusOK {
			t.Fatalf("UpFresh = %+v, %v", up, err)
		}
	}
	if _, err := n.Up(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := s.conns.Load(); got != 4 {
		t.Fatalf("%d connections, want 4: one kept for Up, one per UpFresh", got)
	}
	if n.Watch(context.Background(), 50*time.Millisecond) {
		t.Fatal("the fresh connections' closes were reported as the watched connection's")
	}
	s.Close()
	_, err := n.UpFresh(context.Background())
	checkErr(t, err, couch.ReasonRefused)
}
