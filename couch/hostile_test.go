package couch_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/medic/couchwatch/couch"
)

// rawServer accepts connections and, for each, reads the request head and hands the
// connection to reply. It stops (and closes every connection) at cleanup.
func rawServer(t *testing.T, reply func(c net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]struct{}{}
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = struct{}{}
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for { // the request head
					line, err := br.ReadString('\n')
					if err != nil {
						return
					}
					if line == "\r\n" {
						break
					}
				}
				reply(c)
			})
		}
	})
	return ln.Addr().String()
}

// endless writes prefix, then chunk for ever (until the peer goes or 256 MiB).
func endless(prefix, chunk string) func(net.Conn) {
	return func(c net.Conn) {
		if _, err := c.Write([]byte(prefix)); err != nil {
			return
		}
		b := []byte(strings.Repeat(chunk, max(1, 16<<10/len(chunk))))
		for sent := 0; sent < 256<<20; sent += len(b) {
			if _, err := c.Write(b); err != nil {
				return
			}
		}
	}
}

func writes(s string) func(net.Conn) {
	return func(c net.Conn) { _, _ = c.Write([]byte(s)) }
}

var hostile = []struct {
	name  string
	reply func(net.Conn)
	want  couch.Reason
}{
	{"endless status line", endless("HTTP/1.1 200 ", "x"), couch.ReasonTooLarge},
	{"endless header line", endless("HTTP/1.1 200 OK\r\nX-A: ", "a"), couch.ReasonTooLarge},
	{"header flood", endless("HTTP/1.1 200 OK\r\n", "X-Flood: 0123456789abcdef\r\n"), couch.ReasonTooLarge},
	{"1xx flood", endless("", "HTTP/1.1 100 Continue\r\n\r\n"), couch.ReasonTooLarge},
	{"not HTTP", writes("SSH-2.0-OpenSSH_9.2\r\n"), couch.ReasonProtocol},
	{"TLS alert (http to a TLS port)", writes("\x15\x03\x01\x00\x02\x02\x46"), couch.ReasonProtocol},
	{"bad header", writes("HTTP/1.1 200 OK\r\nno colon here\r\n\r\n"), couch.ReasonProtocol},
	{"bad chunking", writes("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"), couch.ReasonProtocol},
	{"closed without a reply", writes(""), couch.ReasonRefused},
	{"redirect", writes("HTTP/1.1 302 Found\r\nLocation: https://login.example/?next=/_up\r\nContent-Length: 0\r\n\r\n"), couch.ReasonRedirect},
	{"body longer than announced cap", writes("HTTP/1.1 200 OK\r\nContent-Length: 99999999\r\n\r\n{"), couch.ReasonTooLarge},
}

// Every reply a node can send ends in a clear reason within the call's deadline.
func TestHostileReplies(t *testing.T) {
	for _, tc := range hostile {
		t.Run(tc.name, func(t *testing.T) {
			addr := rawServer(t, tc.reply)
			// A deadline far beyond any reply, even on a busy machine: a reason that came
			// from it shows as a call that lasted most of it.
			n := nodeFor(t, addr, couch.Options{Timeout: time.Minute})
			start := time.Now()
			_, err := n.Up(context.Background())
			checkErr(t, err, tc.want)
			if took := time.Since(start); took > 45*time.Second {
				t.Fatalf("took %v: the reason came from the deadline, not the reply", took)
			}
			t.Logf("%v", err)
		})
	}
	t.Run("https to a plain port", func(t *testing.T) {
		s := newUpServer(t, false, 0, nil)
		n := nodeFor(t, strings.Replace(s.URL, "http://", "https://", 1), couch.Options{})
		_, err := n.Up(context.Background())
		checkErr(t, err, couch.ReasonProtocol)
	})
	t.Run("http to a TLS port (Go server)", func(t *testing.T) {
		s := newUpServer(t, true, 0, nil)
		s.Config.ErrorLog = nil
		n := nodeFor(t, strings.Replace(s.URL, "https://", "http://", 1), couch.Options{})
		_, err := n.Up(context.Background())
		checkErr(t, err, couch.ReasonProtocol)
	})
	t.Run("self-signed certificate", func(t *testing.T) {
		s := newUpServer(t, true, 0, nil)
		n := nodeFor(t, s.URL, couch.Options{})
		_, err := n.Up(context.Background())
		checkErr(t, err, couch.ReasonTLS)
	})
	t.Run("certificate for another host", func(t *testing.T) {
		s := newUpServer(t, true, 0, nil)
		roots := tlsConfig(nil)
		roots.RootCAs = s.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
		roots.ServerName = "couchdb.other.example"
		n := nodeFor(t, s.URL, couch.Options{TLS: roots})
		_, err := n.Up(context.Background())
		checkErr(t, err, couch.ReasonTLS)
	})
	t.Run("unknown host", func(t *testing.T) {
		n := nodeFor(t, "couchdb-9.invalid:5984", couch.Options{})
		_, err := n.Up(context.Background())
		if r := couch.Classify(err); r != couch.ReasonDNS && r != couch.ReasonTimeout {
			t.Fatalf("reason %s (%v), want dns (or timeout where no resolver answers)", r, err)
		}
	})
	t.Run("redirect through kivik", func(t *testing.T) {
		addr := rawServer(t, writes("HTTP/1.1 301 Moved\r\nLocation: /elsewhere\r\nContent-Length: 0\r\n\r\n"))
		n := nodeFor(t, addr, couch.Options{})
		_, err := n.Membership(context.Background())
		checkErr(t, err, couch.ReasonRedirect)
	})
}

// Nodes that stream endless headers at full speed cost bounded memory and descriptors,
// each call ends with too_large, and the healthy nodes probed alongside answer every round. (Before
// the caps, one such node took couchwatch from 44 MB to 1.37 GB in 8 s.) Bounded: at
// most 60 rounds and 20 s.
func TestHostileNodesBoundedMemory(t *testing.T) {
	var nodes []*couch.Node
	for _, tc := range hostile[:4] {
		nodes = append(nodes, nodeFor(t, rawServer(t, tc.reply), couch.Options{Timeout: 5 * time.Second}))
	}
	c := startCluster(t, 2)
	healthy := []*couch.Node{newNode(t, c, 0, adminOpts()), newNode(t, c, 1, adminOpts())}
	for _, h := range healthy {
		t.Cleanup(h.Close)
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	baseFDs := openFDs(t)
	var peak, peakFDs atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tk := time.NewTicker(5 * time.Millisecond)
		defer tk.Stop()
		for {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			if fds := uint64(openFDs(t)); fds > peakFDs.Load() {
				peakFDs.Store(fds)
			}
			select {
			case <-stop:
				return
			case <-tk.C:
			}
		}
	}()
	deadline := time.Now().Add(20 * time.Second)
	rounds, healthyOK := 0, 0
	for ; rounds < 60 && time.Now().Before(deadline); rounds++ {
		var wg sync.WaitGroup
		errs := make([]error, len(nodes)+len(healthy))
		for i, n := range append(append([]*couch.Node{}, nodes...), healthy...) {
			wg.Go(func() { _, errs[i] = n.Up(context.Background()) })
		}
		wg.Wait()
		for i, err := range errs[:len(nodes)] {
			if couch.Classify(err) != couch.ReasonTooLarge {
				t.Fatalf("round %d, %s: %v, want too_large", rounds, hostile[i].name, err)
			}
		}
		for _, err := range errs[len(nodes):] {
			if err != nil {
				t.Fatalf("round %d: healthy node: %v", rounds, err)
			}
			healthyOK++
		}
	}
	close(stop)
	<-sampled
	grew := int64(peak.Load()) - int64(base)
	t.Logf("%d rounds, %d healthy probes ok; heap in use %.1f MiB at start, peak %.1f MiB", rounds, healthyOK,
		float64(base)/(1<<20), float64(peak.Load())/(1<<20))
	if rounds < 10 {
		t.Fatalf("only %d rounds in 20 s", rounds)
	}
	t.Logf("open descriptors: %d at start, peak %d", baseFDs, peakFDs.Load())
	if int(peakFDs.Load()) > baseFDs+64 {
		t.Fatalf("descriptors went from %d to %d: connections are not given back", baseFDs, peakFDs.Load())
	}
	if grew > 32<<20 {
		t.Fatalf("heap grew by %.1f MiB against endless headers, want < 32 MiB", float64(grew)/(1<<20))
	}
}

// A node that accepts the login but answers 401 to everything else (a proxy that
// strips the cookie, a node whose secret changes under it) must not be asked to hash the
// password on every call: after the fresh session is rejected, the next login waits.
func TestSessionRejectedAfterLoginBacksOff(t *testing.T) {
	c := startCluster(t, 1)
	sim := c.Nodes()[0]
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/_session" {
			req, _ := http.NewRequestWithContext(r.Context(), r.Method, sim.URL()+"/_session", r.Body)
			req.Header = r.Header.Clone()
			resp, err := http.DefaultTransport.RoundTrip(req)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
			defer resp.Body.Close()
			for k, v := range resp.Header {
				w.Header()[k] = v
			}
			w.WriteHeader(resp.StatusCode)
			_, _ = bufio.NewReader(resp.Body).WriteTo(w)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"error":"unauthorized","reason":"You are not authorized to access this db."}`))
	}))
	t.Cleanup(front.Close)
	n := nodeFor(t, front.URL, adminOpts())
	calls := map[string]func() error{
		"up":     func() error { _, err := n.Up(context.Background()); return err },
		"system": func() error { _, err := n.System(context.Background()); return err },
		"config": func() error { _, err := n.ConfigValue(context.Background(), "cluster", "n"); return err },
	}
	before := sim.Stats().Logins
	for i := range 30 { // 30 calls: ~2.4 logins a second at the old behaviour
		for name, call := range calls {
			err := call()
			checkErr(t, err, couch.ReasonAuth)
			if i == 29 {
				t.Logf("%s: %v", name, err)
			}
		}
	}
	if got := sim.Stats().Logins - before; got > 2 {
		t.Fatalf("%d logins for 90 calls against a node that rejects every session, want at most 2", got)
	}
}

// Nothing the login sends (the password) and no session cookie comes back in an error,
// however the server quotes the request: in a login reply, in a later error reply, in a
// malformed status line.
func TestErrorsNeverQuoteSecrets(t *testing.T) {
	const canary = `canary-Pw"4\u00e9é`
	echo := func(r *http.Request) string {
		var b strings.Builder // the body first: a cut after a few bytes must not save us
		body := make([]byte, 4096)
		k, _ := r.Body.Read(body)
		b.Write(body[:k])
		_ = r.Header.Write(&b)
		return b.String()
	}
	quote := func(s string) string { return strings.Trim(fmt.Sprintf("%q", s), `"`) }
	cases := map[string]http.HandlerFunc{
		"login reply echoes the body": func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprintf(w, `{"error":"unauthorized","reason":"%s"}`, quote(echo(r)))
		},
		"login reply echoes as error token": func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusInternalServerError)
			fmt.Fprintf(w, `{"error":"%s","reason":"x"}`, quote(echo(r)))
		},
		"later reply echoes the headers": func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/_session" {
				http.SetCookie(w, &http.Cookie{Name: "AuthSession", Value: "c00kie-canary-value"})
				_, _ = w.Write([]byte(`{"ok":true}`))
				return
			}
			w.WriteHeader(http.StatusInternalServerError)
			fmt.Fprintf(w, `{"error":"unknown_error","reason":"%s"}`, quote(echo(r)))
		},
		"garbage status line quoting the request": func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/_session" {
				http.SetCookie(w, &http.Cookie{Name: "AuthSession", Value: "c00kie-canary-value"})
				_, _ = w.Write([]byte(`{"ok":true}`))
				return
			}
			hj, _, _ := w.(http.Hijacker).Hijack()
			defer hj.Close()
			fmt.Fprintf(hj, "HTTP/1.1 %s\r\n\r\n", strings.ReplaceAll(echo(r), "\r\n", " "))
		},
	}
	for name, h := range cases {
		t.Run(name, func(t *testing.T) {
			s := httptest.NewServer(h)
			t.Cleanup(s.Close)
			n := nodeFor(t, s.URL, couch.Options{User: "medic", Password: canary, Timeout: 2 * time.Second})
			var errs []error
			for range 2 {
				_, err := n.Up(context.Background())
				errs = append(errs, err)
				_, err = n.System(context.Background())
				errs = append(errs, err)
				_, err = n.Membership(context.Background())
				errs = append(errs, err)
			}
			for _, err := range errs {
				if err == nil {
					t.Fatal("call succeeded against an echoing server")
				}
				for e := err; e != nil; e = errors.Unwrap(e) {
					for _, secret := range []string{"canary-Pw", "c00kie-canary"} {
						if s := e.Error(); strings.Contains(s, secret) {
							t.Fatalf("error text leaks %q: %s", secret, s)
						}
					}
				}
			}
			t.Logf("%v", errs[0])
		})
	}
}

// openFDs counts this process's open file descriptors.
func openFDs(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Error(err) // called from the sampling goroutine too: no Fatal
	}
	return len(ents)
}
