package main

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/medic/couchwatch/haproxy/haproxytest"
)

// A node that answers /_up but fails half the real requests (through a real HAProxy
// 2.6 with CHT's retry-on) is singled out by HAProxy's own traffic: Degraded with that
// reason and drained within the budget, never put in maint; its peers stay ready.
func TestTrafficOutlierDrainsANodeFailingRealRequests(t *testing.T) {
	s := newStack(t, stackOpts{runtime: true})
	s.waitHTTP("/readyz", http.StatusOK)
	s.waitAll("ready", ready)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	wg.Go(func() { // ~100 requests/s through the frontend, bounded in count and time
		client := &http.Client{Timeout: 5 * time.Second}
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for range 3000 {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.hap.FrontendAddr()+"/medic", nil)
			req.SetBasicAuth(s.cluster.User(), s.cluster.Password())
			if resp, err := client.Do(req); err == nil {
				resp.Body.Close()
			}
		}
	})

	s.node(2).SetDataFailures(2)
	srv := s.wait("couchdb-2", "drained for its failing traffic", func(x haproxytest.Server) bool { return drain(x) || maint(x) })
	if maint(srv) {
		t.Fatalf("couchdb-2 put in maint (%+v): the traffic signal alone must never mark a node down", srv)
	}
	s.waitBody("/status.json", http.StatusOK, "haproxy traffic: ")
	_, body := s.get("/status.json")
	if !strings.Contains(body, `"degraded"`) {
		t.Errorf("status.json does not show the node degraded:\n%s", body)
	}
	for _, peer := range []string{"couchdb-1", "couchdb-3"} {
		if x := s.wait(peer, "ready", ready); x.Weight == 0 {
			t.Errorf("%s weight 0: peers must keep serving", peer)
		}
	}
}
