package couchtest

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func TestPrometheusIsTheRecordedReply(t *testing.T) {
	c := NewClusterT(t, 1, Options{})
	n := c.Nodes()[0]
	recorded, err := os.ReadFile("../testdata/prometheus.txt")
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/_node/_local/_prometheus", "/_node/" + n.ErlangName() + "/_prometheus"} {
		r := do(t, http.MethodGet, n.URL()+path, basic)
		if r.status != http.StatusOK || !bytes.Equal(r.body, recorded) {
			t.Errorf("GET %s = %d, %d bytes; want 200 and the %d bytes of couch/testdata/prometheus.txt", path, r.status, len(r.body), len(recorded))
		}
		if ct := r.header.Get("Content-Type"); ct != "text/plain; version=2.0" {
			t.Errorf("GET %s Content-Type = %q, want CouchDB's text/plain; version=2.0", path, ct)
		}
	}
	if r := do(t, http.MethodGet, n.URL()+"/_node/_local/_prometheus", nil); r.status != http.StatusUnauthorized {
		t.Errorf("without auth: %d, want 401 (require_valid_user)", r.status)
	}
	// 3.4.3 ends the HELP line with a bare CR, not LF: "# HELP ...\r# TYPE ...\n".
	if !bytes.Contains(recorded, []byte("logged messages\r# TYPE couchdb_couch_log_requests_total counter\n")) {
		t.Error("the fixture lost 3.4.3's HELP/TYPE-on-one-line quirk")
	}
}

func TestAllDBs(t *testing.T) {
	c := NewClusterT(t, 2, Options{})
	n := c.Nodes()[1]
	var got []string
	r := do(t, http.MethodGet, n.URL()+"/_all_dbs", basic)
	if err := json.Unmarshal(r.body, &got); err != nil || r.status != http.StatusOK || !slices.Equal(got, DefaultDatabases) {
		t.Fatalf("GET /_all_dbs = %d %s (%v), want %v", r.status, r.body, err, DefaultDatabases)
	}
	r = do(t, http.MethodGet, n.URL()+"/_all_dbs?limit=2&skip=1", basic)
	if err := json.Unmarshal(r.body, &got); err != nil || !slices.Equal(got, DefaultDatabases[1:3]) {
		t.Fatalf("limit=2 skip=1: %s, want %v", r.body, DefaultDatabases[1:3])
	}
	if r := do(t, http.MethodGet, n.URL()+"/_all_dbs?limit=x", basic); r.status != http.StatusBadRequest {
		t.Errorf("limit=x: %d, want 400", r.status)
	}
	c.SetDatabases("zeta", "alpha")
	r = do(t, http.MethodGet, n.URL()+"/_all_dbs", basic)
	if err := json.Unmarshal(r.body, &got); err != nil || !slices.Equal(got, []string{"alpha", "zeta"}) {
		t.Fatalf("after SetDatabases: %s, want [alpha zeta] (sorted, like CouchDB)", r.body)
	}
	if r := do(t, http.MethodGet, n.URL()+"/_all_dbs", nil); r.status != http.StatusUnauthorized {
		t.Errorf("without auth: %d, want 401", r.status)
	}
}

func TestShards(t *testing.T) {
	c := NewClusterT(t, 3, Options{})
	get := func(db string) (int, map[string][]string) {
		t.Helper()
		r := do(t, http.MethodGet, c.Nodes()[0].URL()+"/"+db+"/_shards", basic)
		var reply struct {
			Shards map[string][]string `json:"shards"`
		}
		if r.status == http.StatusOK {
			if err := json.Unmarshal(r.body, &reply); err != nil {
				t.Fatalf("%s/_shards: %v: %s", db, err, r.body)
			}
		}
		return r.status, reply.Shards
	}
	t.Run("n=3 q=2: every range on every node", func(t *testing.T) {
		c.SetConfig("cluster", "n", "3") // the default is CHT's n=1 q=12
		c.SetConfig("cluster", "q", "2")
		st, m := get("medic")
		if st != http.StatusOK || len(m) != 2 || len(m["00000000-7fffffff"]) != 3 || len(m["80000000-ffffffff"]) != 3 {
			t.Fatalf("medic/_shards = %d %v", st, m)
		}
	})
	t.Run("CHT's n=1 q=12: each range on one node, every node holds some", func(t *testing.T) {
		c.SetConfig("cluster", "n", "1")
		c.SetConfig("cluster", "q", "12")
		holders := map[string]int{}
		for _, db := range DefaultDatabases {
			st, m := get(db)
			if st != http.StatusOK || len(m) != 12 {
				t.Fatalf("%s: %d, %d ranges, want 12", db, st, len(m))
			}
			var ranges []string
			for rng, nodes := range m {
				if len(nodes) != 1 {
					t.Fatalf("%s %s on %v, want one node", db, rng, nodes)
				}
				ranges = append(ranges, rng)
				holders[nodes[0]]++
			}
			slices.Sort(ranges)
			// Contiguous, covering the ring, cut like mem3.
			if ranges[0] != "00000000-15555554" || ranges[1] != "15555555-2aaaaaa9" || !strings.HasSuffix(ranges[11], "-ffffffff") {
				t.Fatalf("%s ranges %v", db, ranges)
			}
			for i := 1; i < len(ranges); i++ {
				prevEnd, _ := strconv.ParseUint(strings.Split(ranges[i-1], "-")[1], 16, 64)
				start, _ := strconv.ParseUint(strings.Split(ranges[i], "-")[0], 16, 64)
				if start != prevEnd+1 {
					t.Fatalf("%s: %s does not follow %s", db, ranges[i], ranges[i-1])
				}
			}
		}
		if len(holders) != 3 {
			t.Errorf("shards on %v, want all 3 nodes", holders)
		}
	})
	t.Run("unknown database", func(t *testing.T) {
		if st, _ := get("nope"); st != http.StatusNotFound {
			t.Errorf("nope/_shards = %d, want 404", st)
		}
	})
	t.Run("encoded name", func(t *testing.T) {
		c.SetDatabases("a/b")
		if st, m := get("a%2Fb"); st != http.StatusOK || len(m) != 12 {
			t.Errorf("a%%2Fb/_shards = %d %v", st, m)
		}
	})
}

func TestPutMaintenanceMode(t *testing.T) {
	c := NewClusterT(t, 1, Options{})
	n := c.Nodes()[0]
	put := func(body string, auth func(*http.Request)) reply {
		t.Helper()
		req, err := http.NewRequest(http.MethodPut, n.URL()+"/_node/_local/_config/couchdb/maintenance_mode", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if auth != nil {
			auth(req)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		return reply{resp.StatusCode, resp.Header, b.Bytes()}
	}
	up := func() string { return strings.TrimSpace(string(do(t, http.MethodGet, n.URL()+"/_up", basic).body)) }

	if r := put(`"nolb"`, basic); r.status != http.StatusOK || string(r.body) != "\"false\"\n" {
		t.Fatalf(`PUT "nolb" = %d %q, want 200 "false" (the old value)`, r.status, r.body)
	}
	if got := up(); got != `{"status":"nolb"}` || n.Status().Maintenance != "nolb" {
		t.Fatalf("/_up after nolb = %s", got)
	}
	if r := put(`"true"`, basic); string(r.body) != "\"nolb\"\n" {
		t.Fatalf(`PUT "true" = %q, want "nolb"`, r.body)
	}
	if got := up(); got != `{"status":"maintenance_mode"}` {
		t.Fatalf("/_up after true = %s", got)
	}
	if r := put(`"false"`, basic); r.status != http.StatusOK || string(r.body) != "\"true\"\n" {
		t.Fatalf(`PUT "false" = %d %q`, r.status, r.body)
	}
	if got := up(); got != `{"status":"ok","seeds":{}}` {
		t.Fatalf("/_up after false = %s", got)
	}
	if r := put(`nolb`, basic); r.status != http.StatusBadRequest {
		t.Errorf("PUT of a body that is not JSON: %d, want 400", r.status)
	}
	if r := put(`"nolb"`, nil); r.status != http.StatusUnauthorized || n.Status().Maintenance != "" {
		t.Errorf("PUT without auth: %d, maintenance %q; want 401 and no change", r.status, n.Status().Maintenance)
	}
}

// couchwatch drain goes through kivik, which gzips request bodies: CouchDB takes them.
func TestPutMaintenanceModeGzip(t *testing.T) {
	c := NewClusterT(t, 1, Options{})
	n := c.Nodes()[0]
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	_, _ = zw.Write([]byte(`"nolb"`))
	_ = zw.Close()
	req, _ := http.NewRequest(http.MethodPut, n.URL()+"/_node/_local/_config/couchdb/maintenance_mode", &b)
	req.Header.Set("Content-Encoding", "gzip")
	basic(req)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || n.Status().Maintenance != "nolb" {
		t.Errorf("gzipped PUT = %d, maintenance %q", resp.StatusCode, n.Status().Maintenance)
	}
}
