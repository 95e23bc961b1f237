package haproxy_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/medic/couchwatch/haproxy/haproxytest"
)

// What HAProxy's clients saw of each server, read from a real HAProxy 2.6 with CHT's
// backend (retries 5, retry-on all-retryable-errors, redispatch): a server that fails
// every other request with a 500 shows them as retries and redispatches, not as 5xx
// (measured on 2.6: a 500 that retry-on retries is not counted in hrsp_5xx); the healthy
// ones show none.
func TestTrafficFromRealHAProxy(t *testing.T) {
	var n atomic.Int64
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("{}")) }))
	t.Cleanup(ok.Close)
	ok2 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("{}")) }))
	t.Cleanup(ok2.Close)
	half := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if n.Add(1)%2 == 0 {
			http.Error(w, `{"error":"unknown_error"}`, http.StatusInternalServerError)
			return
		}
		_, _ = w.Write([]byte("{}"))
	}))
	t.Cleanup(half.Close)
	addr := func(s *httptest.Server) string { return strings.TrimPrefix(s.URL, "http://") }
	p := haproxytest.StartT(t, haproxytest.Options{Balance: "roundrobin", Servers: []haproxytest.ServerSpec{
		{Name: "n1", Addr: addr(ok)}, {Name: "n2", Addr: addr(half)}, {Name: "n3", Addr: addr(ok2)},
	}})
	rt := runtimeFor(t, p, false)
	ctx := context.Background()

	obs, err := rt.State(ctx, backend)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range obs.Servers {
		if !s.Traffic.HTTP || s.Traffic.Responses != 0 || s.Traffic.RespTimeMs != 0 {
			t.Fatalf("%s before any request: %+v, want HTTP with zero counters (rtime empty)", s.Name, s.Traffic)
		}
	}
	client := &http.Client{}
	for range 60 {
		resp, err := client.Get("http://" + p.FrontendAddr() + "/medic")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	obs, err = rt.State(ctx, backend)
	if err != nil {
		t.Fatal(err)
	}
	total := int64(0)
	for _, s := range obs.Servers {
		tr := s.Traffic
		total += tr.Responses
		switch s.Name {
		case "n2":
			if tr.Retries < 5 || tr.Redispatches < 1 || tr.Resp5xx != 0 {
				t.Errorf("n2 (fails every other request): %+v, want the 500s as retries, not as 5xx", tr)
			}
		default:
			if tr.Resp5xx != 0 || tr.RespErrors != 0 || tr.Retries != 0 || tr.Responses == 0 {
				t.Errorf("%s (healthy): %+v, want responses and no errors", s.Name, tr)
			}
		}
	}
	if total < 60 {
		t.Errorf("%d responses counted over the servers for 60 requests", total)
	}
}
