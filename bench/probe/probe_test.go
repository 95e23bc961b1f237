// Package probe benchmarks one probe's cost: couchwatch's path (net/http under its
// session, body cap and watched connection; encoding/json with its checks) against the
// bare standard library doing the same work, in the same run: what couchwatch's own
// layers cost on top.
//
//	go test -run XXX -bench . -benchmem ./bench/probe
//
// See bench/README.md. The tests only check that each pair computes the same answer.
package probe

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/medic/couchwatch/checks"
	"github.com/medic/couchwatch/couch"
	"github.com/medic/couchwatch/couch/couchtest"
)

func fixture(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := couch.Recorded(name)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// membership is a /_membership reply of an n-node cluster.
func membership(n int) []byte {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("couchdb%d@couchdb-%d.couchdb.cht.svc.cluster.local", i+1, i+1)
	}
	b, _ := json.Marshal(map[string][]string{"all_nodes": names, "cluster_nodes": names})
	return b
}

// The baselines: a bare encoding/json decode of the same fields, without couchwatch's
// checks (presence, ranges, histogram shapes).

func systemWithEncodingJSON(b []byte) (run int64, couchFileP99 int64, err error) {
	var doc struct {
		RunQueue      int64                      `json:"run_queue"`
		MessageQueues map[string]json.RawMessage `json:"message_queues"`
		Memory        map[string]int64           `json:"memory"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return 0, 0, err
	}
	var h struct {
		P99 int64 `json:"99"`
	}
	if raw, ok := doc.MessageQueues["couch_file"]; ok {
		_ = json.Unmarshal(raw, &h)
	}
	return doc.RunQueue, h.P99, nil
}

func membershipWithEncodingJSON(b []byte) ([]string, error) {
	var m struct {
		AllNodes     []string `json:"all_nodes"`
		ClusterNodes []string `json:"cluster_nodes"`
	}
	err := json.Unmarshal(b, &m)
	return m.AllNodes, err
}

func TestSameAnswers(t *testing.T) {
	for _, name := range []string{"system_idle.json", "system_under_load.json", "system_under_load_node2.json"} {
		b := fixture(t, name)
		s, err := couch.ParseSystem(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		run, p99, err := systemWithEncodingJSON(b)
		if err != nil || run != s.RunQueue || p99 != s.MessageQueues["couch_file_p99"] {
			t.Fatalf("%s: baseline run_queue %d p99 %d (%v), couchwatch %d %d", name, run, p99, err, s.RunQueue, s.MessageQueues["couch_file_p99"])
		}
	}
	b := membership(300)
	m, err := couch.ParseMembership(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	all, err := membershipWithEncodingJSON(b)
	if err != nil || strings.Join(all, ",") != strings.Join(m.AllNodes, ",") || len(all) != 300 {
		t.Fatalf("membership differs: %d vs %d names (%v)", len(all), len(m.AllNodes), err)
	}
}

func BenchmarkParseSystem(b *testing.B) {
	body := fixture(b, "system_under_load.json")
	b.Run("couchwatch", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			if _, err := couch.ParseSystem(bytes.NewReader(body)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding_json", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			if _, _, err := systemWithEncodingJSON(body); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkParseMembership300(b *testing.B) {
	body := membership(300)
	b.Run("couchwatch", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			if _, err := couch.ParseMembership(bytes.NewReader(body)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding_json", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			if _, err := membershipWithEncodingJSON(body); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkUpProbe is one authenticated /_up probe against a simulated node (which runs
// in the same process: its share of the time is the same in both cases).
func BenchmarkUpProbe(b *testing.B) {
	c := couchtest.NewClusterT(b, 1, couchtest.Options{})
	sim := c.Nodes()[0]
	b.Run("couchwatch", func(b *testing.B) {
		targets, err := couch.ParseServers(sim.URL())
		if err != nil {
			b.Fatal(err)
		}
		n, err := couch.NewNode(targets[0], couch.Options{User: c.User(), Password: c.Password(), Timeout: 5 * time.Second})
		if err != nil {
			b.Fatal(err)
		}
		defer n.Close()
		for b.Loop() {
			if _, err := n.Up(context.Background()); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("net_http", func(b *testing.B) {
		cookie := login(b, sim.URL(), c.User(), c.Password())
		client := &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 1}}
		defer client.CloseIdleConnections()
		for b.Loop() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, sim.URL()+"/_up", nil)
			req.Header.Set("Accept", "application/json")
			req.Header.Set("Cookie", "AuthSession="+cookie)
			resp, err := client.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			cancel()
			if err != nil {
				b.Fatal(err)
			}
			if _, err := couch.ParseUp(resp.StatusCode, bytes.NewReader(body)); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func login(tb testing.TB, base, user, password string) string {
	tb.Helper()
	resp, err := http.PostForm(base+"/_session", url.Values{"name": {user}, "password": {password}})
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	for _, c := range resp.Cookies() {
		if c.Name == "AuthSession" {
			return c.Value
		}
	}
	tb.Fatalf("login: %s, no cookie", resp.Status)
	return ""
}

// BenchmarkScrape is one Prometheus scrape of the checks metrics (text exposition),
// at 300 nodes against the 3-node baseline.
func BenchmarkScrape(b *testing.B) {
	for _, n := range []int{3, 300} {
		b.Run(fmt.Sprintf("nodes=%d", n), func(b *testing.B) {
			var nodes []*couch.Node
			for i := range n {
				u := &url.URL{Scheme: "http", Host: fmt.Sprintf("couchdb-%d.couchdb.cht.svc.cluster.local:5984", i)}
				node, err := couch.NewNode(couch.Target{URL: u}, couch.Options{})
				if err != nil {
					b.Fatal(err)
				}
				nodes = append(nodes, node)
			}
			reg := prometheus.NewRegistry()
			m, err := checks.NewMetrics(reg)
			if err != nil {
				b.Fatal(err)
			}
			checks.NewRunner(checks.Config{Rise: 1, Fall: 1}, nodes, slog.New(slog.DiscardHandler), m, nil)
			h := promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
			req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
			var w countingWriter
			for b.Loop() {
				w = countingWriter{header: http.Header{}}
				h.ServeHTTP(&w, req)
				if w.status != http.StatusOK {
					b.Fatal(w.status)
				}
			}
			b.ReportMetric(float64(w.n), "bytes/scrape")
		})
	}
}

// countingWriter is a ResponseWriter that counts the body and keeps none of it, as a
// socket would (a recorder's growing buffer would dominate the allocations).
type countingWriter struct {
	header http.Header
	status int
	n      int
}

func (w *countingWriter) Header() http.Header { return w.header }

func (w *countingWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	w.n += len(p)
	return len(p), nil
}
