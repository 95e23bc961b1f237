package checks

import (
	"bufio"
	"context"
	"log/slog"
	"net"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/medic/couchwatch/couch"
	"github.com/medic/couchwatch/couch/couchtest"
)

// headerFlood is a node that answers every request with an endless header block.
func headerFlood(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				br := bufio.NewReader(c)
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						return
					}
					if line == "\r\n" {
						break
					}
				}
				chunk := []byte(strings.Repeat("X-Flood: 0123456789abcdef\r\n", 512))
				_, _ = c.Write([]byte("HTTP/1.1 200 OK\r\n"))
				for sent := 0; sent < 64<<20; sent += len(chunk) {
					if _, err := c.Write(chunk); err != nil {
						return
					}
				}
			})
		}
	})
	return ln.Addr().String()
}

// A node flooding its headers is down with too_large while the runner keeps probing the
// healthy nodes (they stay up) and the heap stays bounded. Bounded: 3 s of running.
func TestRunnerHeaderFloodNode(t *testing.T) {
	cl := couchtest.NewClusterT(t, 2, couchtest.Options{NetTickTime: time.Second})
	var nodes []*couch.Node
	for _, n := range cl.Nodes() {
		u, _ := url.Parse(n.URL())
		node, err := couch.NewNode(couch.Target{Name: n.Addr(), URL: u}, couch.Options{User: cl.User(), Password: cl.Password()})
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, node)
	}
	flood, err := couch.NewNode(couch.Target{Name: "flood", URL: &url.URL{Scheme: "http", Host: headerFlood(t)}},
		couch.Options{User: cl.User(), Password: cl.Password()})
	if err != nil {
		t.Fatal(err)
	}
	nodes = append(nodes, flood)
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	r := NewRunner(testConfig(), nodes, slog.New(slog.DiscardHandler), mustMetrics(t, prometheus.NewRegistry()), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	done := make(chan struct{})
	go func() { _ = r.Run(ctx); close(done) }()
	var peak uint64
	for ctx.Err() == nil {
		runtime.ReadMemStats(&ms)
		peak = max(peak, ms.HeapInuse)
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Millisecond):
		}
	}
	<-done
	s := r.Snapshot()
	for _, st := range s[:2] {
		if st.Verdict != Up {
			t.Errorf("healthy %s: %s (%s), want up", st.Node, st.Verdict, st.Reason)
		}
		if time.Since(st.LastProbe) > 10*time.Second { // stalled, not slow: loose for busy machines
			t.Errorf("healthy %s last probed %v ago: probing stalled", st.Node, time.Since(st.LastProbe))
		}
	}
	if st := s[2]; st.Verdict != Down || st.Reason != string(couch.ReasonTooLarge) || !strings.Contains(st.LastError, "headers exceeded") {
		t.Errorf("flooding node: %s (%s, %q), want down too_large", st.Verdict, st.Reason, st.LastError)
	}
	t.Logf("heap in use %.1f MiB at start, peak %.1f MiB", float64(base)/(1<<20), float64(peak)/(1<<20))
	if peak > base+32<<20 {
		t.Errorf("heap grew from %.1f to %.1f MiB", float64(base)/(1<<20), float64(peak)/(1<<20))
	}
}
